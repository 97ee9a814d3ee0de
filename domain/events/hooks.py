"""Where the rest of the platform raises compliance events and alerts: an escalation (every level is an alert; the
last level raises a deviation), a sample marked contaminated (a contamination event). Each is called in the
transaction of the change that causes it, and raises once per cause."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.alerts.models import Addressees, AlertKind
from domain.alerts.service import raise_alert
from domain.events import service as events
from domain.events.models import EventKind, EventSeverity, EventSource
from domain.roles import RequestContext
from domain.runs.messages import Escalate
from domain.samples.rows import SampleRow


def on_escalation(session: Session, msg: Escalate) -> uuid.UUID | None:
    """An escalation level fired (domain/tasks/service.py `escalate`): an alert to the level's roles; at the step's
    last level, a deviation linked to the run and the step. The event's id when one was raised."""
    raise_alert(session, msg.run.org_id, AlertKind.escalation, ("task", msg.task_id),
                Addressees(roles=tuple(msg.notify_roles)),
                title=f"{msg.title} is overdue (escalation level {msg.level})",
                body=f"Run {msg.run.run_id} ({msg.run.protocol_key} v{msg.run.protocol_version}), "
                     f"step '{msg.step_key}', was due at {msg.due_at.isoformat()}.",
                severity="warning" if msg.level == 0 else "critical",
                dedupe_key=f"escalation:{msg.task_id}:{msg.level}", due_at=msg.due_at)
    spec = session.execute(text("SELECT spec FROM tasks WHERE id = :t"), {"t": msg.task_id}).scalar()
    levels = len((spec or {}).get("escalation") or [])
    if msg.level < levels or levels == 0:
        return None  # not the last level (a step without escalation levels has only its due time: no event)
    return events.raise_system(
        session, msg.run.org_id, kind=EventKind.deviation, severity=EventSeverity.medium,
        title=f"'{msg.title}' still open at its last escalation level",
        description=f"Step '{msg.step_key}' of run {msg.run.run_id} "
                    f"({msg.run.protocol_key} v{msg.run.protocol_version}) was due at {msg.due_at.isoformat()} and is "
                    f"still open after every escalation level "
                    f"({msg.level}); roles notified last: {', '.join(msg.notify_roles)}.",
        source=EventSource.escalation, source_key=f"escalation:{msg.task_id}:{msg.level}",
        links={"runs": [msg.run.run_id], "steps": [msg.task_id]})


def on_sample_status(session: Session, row: SampleRow, reason: str, context: RequestContext | None = None
                     ) -> uuid.UUID | None:
    """A sample's status changed: marked contaminated, it raises a contamination event linked to the sample (and
    to the run and step that made it, if any)."""
    if row.status != "contaminated":
        return None
    links: dict[str, list[uuid.UUID | str]] = {"samples": [row.id]}
    if row.created_in_run is not None:
        links["runs"] = [row.created_in_run]
    return events.raise_system(
        session, row.org_id, kind=EventKind.contamination, severity=EventSeverity.high,
        title=f"Sample {row.code} marked contaminated", description=f"{row.code} ({row.name}): {reason}",
        source=EventSource.contamination, source_key=f"contamination:{row.id}:{row.revision}", links=links,
        context=context)
