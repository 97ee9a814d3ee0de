"""The run's records for the lake: step events, run status revisions, form submissions, each with its
outbox row in the caller's transaction.

Outbox payloads are a contract with the lake sink (topics `step_event`, `run`, `form_submission`, and
`form_published` from domain/protocols/service.py): keep
their keys and types exactly. Step events carry ids derived from the run and an idempotency key, so an
activity that runs twice writes one event and one outbox row.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from domain.canonical import format_ts
from domain.protocols.plan import ExecutionPlan, FormSpec, SequenceNode, StepNode, TaskNode
from domain.roles import Actor
from domain.rows import from_row
from domain.runs.messages import ENDED, RunRef
from domain.runs.rows import RUN_COLUMNS, RunRow

_OUTBOX = text("INSERT INTO outbox (org_id, topic, payload) VALUES (:o, :t, CAST(:p AS jsonb))")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def jsonable(value: object) -> object:
    """JSON types as they are (numbers stay numbers); timestamps in the audit log's format, ids as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return format_ts(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value


def outbox(session: Session, org_id: str | uuid.UUID, topic: str, payload: Mapping[str, object]) -> None:
    session.execute(_OUTBOX, {"o": str(org_id), "t": topic, "p": json.dumps(jsonable(payload))})


def event_id(run_id: str | uuid.UUID, key: str) -> uuid.UUID:
    return uuid.uuid5(uuid.UUID(str(run_id)), f"event:{key}")


_STEP_EVENT = text(
    "WITH e AS (INSERT INTO step_events (id, org_id, run_id, task_id, step_key, step_kind, event, iteration,"
    " actor_type, actor_id, actor_display, occurred_at, detail) VALUES (:id, :o, :r, :t, :sk, :kind, :e, :i, :at_,"
    " :ai, :ad, :ts, CAST(:d AS jsonb)) ON CONFLICT (id) DO NOTHING RETURNING org_id)"
    " INSERT INTO outbox (org_id, topic, payload) SELECT org_id, 'step_event', CAST(:p AS jsonb) FROM e"
)


def step_event(
    session: Session,
    run: RunRef,
    *,
    key: str,
    event: str,
    step_key: str,
    step_kind: str,
    iteration: int = 0,
    actor: Actor,
    detail: Mapping[str, object] | None = None,
    task_id: str | uuid.UUID | None = None,
    occurred_at: dt.datetime | None = None,
) -> bool:
    """Record one step event and its outbox row (one statement); False, and nothing written, when `key` was
    recorded before."""
    eid = event_id(run.run_id, key)
    at = occurred_at or now()
    body = jsonable(detail or {})
    payload = {
        "event_id": str(eid), "org_id": str(run.org_id), "run_id": str(run.run_id),
        "protocol_key": run.protocol_key, "protocol_version": int(run.protocol_version),
        "step_key": step_key, "step_kind": step_kind, "event": event, "iteration": int(iteration),
        "actor_type": actor.type, "actor_id": actor.id, "actor_display": actor.display,
        "occurred_at": format_ts(at), "detail": body,
    }
    result = session.execute(_STEP_EVENT, {
        "id": eid, "o": run.org_id, "r": run.run_id, "t": str(task_id) if task_id else None, "sk": step_key,
        "kind": step_kind, "e": event, "i": iteration, "at_": actor.type, "ai": actor.id, "ad": actor.display,
        "ts": at, "d": json.dumps(body), "p": json.dumps(payload)})
    assert isinstance(result, CursorResult)  # a plain statement's result: it counts the rows written
    return bool(result.rowcount)  # the outbox row exists iff the event was new


def run_payload(row: RunRow) -> dict[str, object]:
    """The `run` outbox payload of a runs row (one per revision)."""
    return {
        "run_id": str(row.id), "org_id": str(row.org_id), "protocol_key": row.protocol_key,
        "protocol_version": int(row.protocol_version), "status": row.status, "launched_by": row.launched_by,
        "launched_at": format_ts(row.launched_at), "updated_at": format_ts(row.updated_at),
        "ended_at": format_ts(row.ended_at) if row.ended_at else None,
        "subjects": [{"type": s["type"], "id": s["id"]} for s in row.subjects],
        "parameters": row.parameters, "time_scale": float(row.time_scale), "revision": int(row.revision),
    }


def set_run_status(session: Session, run_id: str | uuid.UUID, status: str, reason: str | None
                   ) -> tuple[RunRow, RunRow]:
    """Move the run to `status` (a new revision, in the outbox too); the row before and after."""
    before = session.execute(text(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = :r FOR UPDATE"), {"r": str(run_id)}).one()
    after = from_row(RunRow, session.execute(
        text(f"UPDATE runs SET status = :s, status_reason = :why, revision = revision + 1, updated_at = :t,"
             f" ended_at = CASE WHEN :ended THEN :t ELSE NULL END WHERE id = :r RETURNING {RUN_COLUMNS}"),
        {"s": status, "why": reason, "t": now(), "ended": status in ENDED, "r": str(run_id)},
    ).one())
    outbox(session, after.org_id, "run", run_payload(after))
    return from_row(RunRow, before), after


_FORM_SUBMISSION = text(
    "WITH f AS (INSERT INTO form_submissions (id, org_id, run_id, task_id, step_key, form_key, iteration,"
    " submitted_by, submitted_by_display, submitted_at, fields, field_values, checklist, evidence, request_id)"
    " VALUES (:id, :o, :r, :t, :sk, :fk, :i, :by, :byd, :at, CAST(:f AS jsonb), CAST(:v AS jsonb),"
    " CAST(:c AS jsonb), CAST(:e AS jsonb), :rq) RETURNING org_id)"
    " INSERT INTO outbox (org_id, topic, payload) SELECT org_id, 'form_submission', CAST(:p AS jsonb) FROM f"
)


def form_submission(
    session: Session,
    run: RunRef,
    *,
    task_id: str,
    step: TaskNode,
    iteration: int,
    actor: Actor,
    values: Mapping[str, object],
    checklist: list[str],
    evidence: list[str],
    request_id: str | None,
    at: dt.datetime,
) -> str | None:
    """Store the form of a completed task (none when the step has no form) and its outbox row; the submission id."""
    if step.form is None:
        return None
    sid = uuid.uuid5(uuid.UUID(task_id), "submission")
    fields = form_fields(step.form)
    payload = {
        "submission_id": str(sid), "org_id": str(run.org_id), "run_id": str(run.run_id),
        "protocol_key": run.protocol_key, "protocol_version": int(run.protocol_version), "step_key": step.key,
        "form_key": step.form.key, "iteration": int(iteration), "submitted_by": actor.id,
        "submitted_by_display": actor.display, "submitted_at": format_ts(at), "fields": fields, "values": values,
    }
    session.execute(_FORM_SUBMISSION, {
        "id": sid, "o": run.org_id, "r": run.run_id, "t": task_id, "sk": step.key, "fk": step.form.key,
        "i": iteration, "by": actor.id, "byd": actor.display, "at": at, "f": json.dumps(fields),
        "v": json.dumps(values), "c": json.dumps(checklist), "e": json.dumps(evidence), "rq": request_id,
        "p": json.dumps(jsonable(payload))})
    return str(sid)


def form_fields(form: FormSpec) -> list[dict[str, object]]:
    """A form's field definitions as the lake types its columns from them."""
    return [{"key": f.key, "label": f.label, "type": f.type, "unit": f.unit, "required": f.required}
            for f in form.fields]


def forms_of(plan: ExecutionPlan) -> list[tuple[str, FormSpec]]:
    """Every (step key, form) of a plan, in document order."""
    found: list[tuple[str, FormSpec]] = []

    def walk(node: StepNode | SequenceNode) -> None:
        if isinstance(node, SequenceNode):
            for step in node.steps:
                walk(step)
        elif isinstance(node, TaskNode) and node.form is not None:
            found.append((node.key, node.form))
        for child in (getattr(node, "body", None), *getattr(node, "branches", ())):
            if child is not None:
                walk(child)

    walk(plan.root)
    return found


def form_published(session: Session, org_id: str | uuid.UUID, plan: ExecutionPlan) -> None:
    """An approved version's forms, for the lake: each form table exists, typed and empty, from the moment the
    version can run (an analyst's query names it before the first submission)."""
    for step_key, form in forms_of(plan):
        outbox(session, org_id, "form_published", {
            "org_id": str(org_id), "protocol_key": plan.protocol_key, "protocol_version": plan.version,
            "step_key": step_key, "form_key": form.key, "fields": form_fields(form)})
