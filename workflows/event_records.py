"""The records a compliance event's workflow and the compliance watch make, as the workflows see them: one
activity each, its name on the wire, its argument and its answer. activities/events.py writes them.

The names are part of every recorded history: never rename one.
"""

from __future__ import annotations

from temporalio import activity

from domain.events.messages import CapaEscalation, EventRef, EventState, EventStep, WatchInput


class EventRecords:
    """What the event workflow and the watch ask activities to do; subclasses implement every method."""

    @activity.defn(name="event_load")
    def load(self, msg: EventRef) -> EventState:
        """The event as it stands (a workflow started late, e.g. for an event the system raised)."""
        raise NotImplementedError

    @activity.defn(name="event_transition")
    def transition(self, msg: EventStep) -> EventState:
        """A person's transition, checked and recorded; or refused."""
        raise NotImplementedError

    @activity.defn(name="capa_escalate")
    def escalate(self, msg: CapaEscalation) -> bool:
        """One escalation level of a late CAPA action: its alert and audit entry."""
        raise NotImplementedError

    @activity.defn(name="compliance_scan")
    async def scan(self, msg: WatchInput) -> int:
        """One round of the watch: expiry and overdue alerts, alert emails, workflows for events the system
        raised; how many alerts were raised."""
        raise NotImplementedError
