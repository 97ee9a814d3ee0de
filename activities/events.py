"""The I/O of the compliance event workflow and of the compliance watch (workflows/event.py), one activity per
record; each a short transaction in the event's organization. Refusals (domain errors) are final and come back to
the API as its own 4xx (activities/runs.py `refusal`); anything else is retried.

`start_event` starts an event's workflow (workflow id `event-<id>`) and is idempotent: the API calls it after a
person raises an event and before each transition, the watch for events the system raised.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from typing import TypeVar

import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.runs import refusal
from core.db import TenantSessions
from core.mail import MailSender
from domain.alerts import service as alerts
from domain.errors import DomainError, Invalid
from domain.events import service as events
from domain.events.messages import (
    CapaEscalation,
    EventInput,
    EventRef,
    EventState,
    EventStep,
    WatchInput,
    workflow_id,
)
from workflows.event import ComplianceEvent
from workflows.event_records import EventRecords

log = structlog.get_logger("flasktrack.activities.events")
T = TypeVar("T")


async def start_event(client: Client, task_queue: str, org_id: str, event_id: str, *,
                      rpc_timeout: dt.timedelta = dt.timedelta(seconds=5)) -> None:
    """Start the event's workflow unless it runs or ran already."""
    try:
        await client.start_workflow(
            ComplianceEvent.run, EventInput(event=EventRef(org_id=org_id, event_id=event_id)),
            id=workflow_id(event_id), task_queue=task_queue, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, rpc_timeout=rpc_timeout)
    except WorkflowAlreadyStartedError:
        pass


def _guarded(work: Callable[[], T]) -> T:
    try:
        return work()
    except DomainError as exc:
        if exc.status >= 500:
            raise
        raise refusal(exc) from exc
    except sa_exc.DataError as exc:
        why = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
        raise refusal(Invalid(f"a value cannot be stored: {why}", reasons=[why])) from exc


class EventActivities(EventRecords):
    def __init__(self, sessions: TenantSessions, *, client: Client | None = None, task_queue: str = "",
                 mail: MailSender | None = None, horizon_days: int = 30) -> None:
        self.sessions = sessions
        self.client = client
        self.task_queue = task_queue
        self.mail = mail
        self.horizon_days = horizon_days

    def all(self) -> list[Callable[..., object]]:
        return [self.load, self.transition, self.escalate, self.scan]

    @activity.defn(name="event_load")
    def load(self, msg: EventRef) -> EventState:
        def work() -> EventState:
            with self.sessions.begin(msg.org_id) as s:
                events.mark_started(s, msg.event_id)
                return events.state(s, msg.event_id)
        return _guarded(work)

    @activity.defn(name="event_transition")
    def transition(self, msg: EventStep) -> EventState:
        def work() -> EventState:
            with self.sessions.begin(msg.event.org_id) as s:
                return events.apply(s, msg)
        return _guarded(work)

    @activity.defn(name="capa_escalate")
    def escalate(self, msg: CapaEscalation) -> bool:
        def work() -> bool:
            with self.sessions.begin(msg.event.org_id) as s:
                return events.escalate_action(s, msg)
        return _guarded(work)

    # ---------------------------------------------------------------- the watch

    def _orgs(self) -> list[str]:
        with self.sessions.begin(None) as s:
            return [str(r[0]) for r in s.execute(text("SELECT org_id FROM audit_log_orgs()"))]

    def scan_org(self, org_id: str) -> tuple[int, list[uuid.UUID]]:
        """One organization's round: alerts raised, emails sent; the events whose workflow is still to start."""
        with self.sessions.begin(org_id) as s:
            raised = len(alerts.scan_expiring(s, org_id, horizon_days=self.horizon_days))
            raised += len(events.scan_overdue(s, org_id))
            pending = events.unstarted(s)
        if self.mail is not None:
            with self.sessions.begin(org_id) as s:
                alerts.deliver(s, self.mail)
        return raised, pending

    async def scan_all(self) -> int:
        raised = 0
        for org in await asyncio.to_thread(self._orgs):
            n, pending = await asyncio.to_thread(self.scan_org, org)
            raised += n
            if self.client is not None:
                for event_id in pending:
                    await start_event(self.client, self.task_queue, org, str(event_id))
        return raised

    @activity.defn(name="compliance_scan")
    async def scan(self, msg: WatchInput) -> int:
        return await self.scan_all()
