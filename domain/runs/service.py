"""Runs of approved protocol versions: launch, read, controls, the end of a run, history.

The run workflow (workflows/run.py) decides what happens when; these functions are what its
activities and the API write and read, each in the caller's one transaction with its audit entry.
Approvals have their own home (domain/approvals/), tasks theirs (domain/tasks/).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit, pagination
from domain.audit import service as audit_service
from domain.audit.rows import AUDIT_ROW_COLUMNS, AuditRow
from domain.canonical import format_ts, parse_ts
from domain.errors import Conflict, Invalid, NotFound
from domain.protocols.plan import ExecutionPlan
from domain.roles import SYSTEM_ACTOR, Caller
from domain.rows import from_row
from domain.runs import records
from domain.runs.messages import ENDED, ControlRun, FinishRun, RunRef, Waiting
from domain.runs.models import RunDetail, RunLaunch, RunRead, TimelineEntry, subject_filter
from domain.runs.rows import RUN_COLUMNS, RunRow, VersionRow, run_row
from domain.samples import refs
from domain.samples import steps as material
from domain.tasks import lifecycle

# ---------------------------------------------------------------- launch and read


def _approved_version(session: Session, data: RunLaunch) -> VersionRow:
    sql = ("SELECT v.id, v.version, v.status, v.plan, p.key, p.title FROM protocol_versions v"
           " JOIN protocols p ON p.id = v.protocol_id WHERE v.org_id = current_org()")
    if data.protocol_version_id is not None:
        row = session.execute(text(sql + " AND v.id = :id"), {"id": data.protocol_version_id}).first()
        name = f"protocol version {data.protocol_version_id}"
    elif data.protocol_version is not None:
        row = session.execute(text(sql + " AND p.key = :k AND v.version = :v"),
                              {"k": data.protocol_key, "v": data.protocol_version}).first()
        name = f"protocol '{data.protocol_key}' version {data.protocol_version}"
    else:
        row = session.execute(text(sql + " AND p.key = :k AND v.status = 'approved' ORDER BY v.version DESC LIMIT 1"),
                              {"k": data.protocol_key}).first()
        name = f"approved version of protocol '{data.protocol_key}'"
    if row is None:
        raise NotFound(f"no {name}")
    if row.status != "approved" or row.plan is None:
        raise Conflict(f"{name} is {row.status}: only approved versions can run")
    return from_row(VersionRow, row)


def run_id_for(org_id: uuid.UUID, request_id: str) -> uuid.UUID:
    """A launch retried with the same request id names the same run (and the same workflow)."""
    return uuid.uuid5(org_id, f"launch:{request_id}")


def launch(session: Session, caller: Caller, data: RunLaunch) -> tuple[RunRead, ExecutionPlan, bool]:
    """Record a new run of an approved version (status running, revision 1): the run, its plan, and whether it
    was created now (False: this request id launched it before)."""
    request_id = caller.context.request_id or str(uuid.uuid4())
    run_id = run_id_for(caller.org_id, request_id)
    existing = session.execute(text("SELECT protocol_version_id FROM runs WHERE id = :r"), {"r": run_id}).first()
    if existing is not None:
        plan_row = session.execute(text("SELECT plan FROM protocol_versions WHERE id = :v"),
                                   {"v": existing.protocol_version_id}).one()
        return get(session, run_id), ExecutionPlan.model_validate(plan_row.plan), False
    version = _approved_version(session, data)
    plan = ExecutionPlan.model_validate(version.plan)
    codes, problems = refs.check_subjects(session, [(x.type, x.id) for x in data.subjects])
    if problems:
        raise Invalid("the run's subjects cannot be used: nothing was launched", reasons=problems)
    data = data.model_copy(update={"subjects": [x.model_copy(update={"id": c}) for x, c in zip(
        data.subjects, codes, strict=True)]})
    at = records.now()
    row = from_row(RunRow, session.execute(
        text("INSERT INTO runs (id, org_id, protocol_version_id, protocol_key, protocol_version, protocol_title,"
             " status, subjects, parameters, time_scale, launched_by, launched_by_display, launched_at, updated_at,"
             " revision, request_id) VALUES (:id, :o, :v, :k, :n, :title, 'running', CAST(:subj AS jsonb),"
             f" CAST(:par AS jsonb), :scale, :by, :byd, :at, :at, 1, :rq) RETURNING {RUN_COLUMNS}"),
        {"id": run_id, "o": caller.org_id, "v": version.id, "k": version.key, "n": version.version,
         "title": version.title, "subj": json.dumps([s.model_dump() for s in data.subjects]),
         "par": json.dumps(records.jsonable(data.parameters)), "scale": data.time_scale, "by": caller.actor.id,
         "byd": caller.actor.display, "at": at, "rq": request_id},
    ).one())
    run = read(row)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="launch", entity_type="run",
                 entity_id=run_id, after=run.model_dump(mode="json"), context=caller.context,
                 reason=(f"training/demo run: every due time, escalation and timer × {data.time_scale}"
                         if data.time_scale != 1 else None), occurred_at=at)
    records.outbox(session, caller.org_id, "run", records.run_payload(row))
    records.step_event(session, ref(row), key="run_started", event="run_started", step_key="", step_kind="run",
                       actor=caller.actor, occurred_at=at,
                       detail={"time_scale": data.time_scale, "subjects": [s.model_dump() for s in data.subjects],
                               "parameters": data.parameters, "protocol_content_hash": plan.content_hash})
    return run, plan, True


def launch_failed(session: Session, caller: Caller, run_id: uuid.UUID, why: str) -> None:
    """The workflow could not be started: the run ends as failed, with the reason on record."""
    before, after = records.set_run_status(session, run_id, "failed", why)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="fail", entity_type="run",
                 entity_id=run_id, before={"status": before.status}, after={"status": "failed"}, reason=why,
                 severity=audit.Severity.warning, context=caller.context)


def ref(run: RunRow | RunRead) -> RunRef:
    return RunRef(org_id=str(run.org_id), run_id=str(run.id), protocol_key=run.protocol_key,
                  protocol_version=run.protocol_version)


def read(row: RunRow) -> RunRead:
    return RunRead.model_validate(row, from_attributes=True)


def get(session: Session, run_id: uuid.UUID | str) -> RunRead:
    return read(run_row(session, run_id))


def detail(session: Session, run_id: uuid.UUID) -> RunDetail:
    run = get(session, run_id)
    events = session.execute(
        text("SELECT id, step_key, step_kind, event, iteration, actor_display, occurred_at, detail FROM step_events"
             " WHERE run_id = :r ORDER BY occurred_at, id"), {"r": run_id},
    ).all()
    steps = [{"event_id": str(e.id), "step_key": e.step_key, "step_kind": e.step_kind, "event": e.event,
              "iteration": e.iteration, "actor": e.actor_display, "occurred_at": format_ts(e.occurred_at),
              "detail": e.detail} for e in events]
    return RunDetail(**run.model_dump(), open_tasks=lifecycle.open_briefs(session, run_id),
                     waiting_for=waiting_for(session, run), steps=steps)


def waiting_for(session: Session, run: RunRead) -> list[Waiting]:
    """What the run waits for, as its records tell: a hold, open tasks (until due), timers running (until they
    fire). Nothing once it has ended."""
    return waiting_for_runs(session, [run])[run.id]


# Timers started and not fired yet, of the runs named: one statement for a page of runs.
_RUNNING_TIMERS = text(
    "SELECT s.run_id, s.step_key, s.iteration, s.detail->>'fires_at' AS fires_at, s.detail->>'title' AS title"
    " FROM step_events s"
    " WHERE s.run_id = ANY(:r) AND s.event = 'timer_started' AND NOT EXISTS (SELECT 1 FROM step_events f"
    " WHERE f.run_id = s.run_id AND f.event = 'timer_fired' AND f.step_key = s.step_key"
    " AND f.iteration = s.iteration) ORDER BY s.run_id, s.occurred_at")


def waiting_for_runs(session: Session, runs: Sequence[RunRead]) -> dict[uuid.UUID, list[Waiting]]:
    """`waiting_for` of a page of runs, set at a time: two statements however many runs (the runs board)."""
    out: dict[uuid.UUID, list[Waiting]] = {r.id: [] for r in runs}
    live = [r for r in runs if r.status not in ENDED]
    if not live:
        return out
    ids = [r.id for r in live]
    briefs = lifecycle.open_briefs_of(session, ids)
    timers: dict[uuid.UUID, list[Any]] = {}
    for t in session.execute(_RUNNING_TIMERS, {"r": ids}).all():
        timers.setdefault(t.run_id, []).append(t)
    for run in live:
        waiting = [Waiting(kind="hold", reason=run.status_reason)] if run.status == "on_hold" else []
        waiting += [Waiting(kind=t.kind, step_key=t.step_key, title=t.title, task_id=t.task_id,
                            iteration=t.iteration, until=t.due_at) for t in briefs.get(run.id, [])]
        waiting += [Waiting(kind="timer", step_key=t.step_key, title=t.title or "", iteration=t.iteration,
                            until=parse_ts(t.fires_at) if t.fires_at else None) for t in timers.get(run.id, [])]
        out[run.id] = waiting
    return out


def subjects_of(session: Session, run_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, str]]]:
    """The subjects of these runs as stored (`{"type", "id"}`), in one statement (the inbox's subject column)."""
    rows = session.execute(text("SELECT id, subjects FROM runs WHERE org_id = current_org() AND id = ANY(:r)"),
                           {"r": list(set(run_ids))}).all()
    return {r.id: list(r.subjects or []) for r in rows}


def list_runs(session: Session, *, status: str | None = None, protocol_key: str | None = None,
              subject: str | None = None, q: str | None = None, cursor: str | None = None,
              limit: int = 100) -> list[RunRead]:
    """Runs newest first; `q` matches words of the protocol, subjects and launcher; `cursor` continues below the
    last run of the page before (see `page_cursor`)."""
    where: list[str] = ["org_id = current_org()"]
    params: dict[str, object] = {"lim": limit}
    if status:
        where.append("status = :s")
        params["s"] = status
    if protocol_key:
        where.append("protocol_key = :k")
        params["k"] = protocol_key
    if subject:
        condition, subject_params = subject_filter(subject, "subjects")
        where.append(condition)
        params.update(subject_params)
    words = pagination.search_query(q)
    if words:
        where.append("search @@ to_tsquery('simple', :q)")
        params["q"] = words
    condition, cursor_params = pagination.after(cursor, "launched_at", "id")
    where.append(condition)
    params.update(cursor_params)
    rows = session.execute(text(f"SELECT {RUN_COLUMNS} FROM runs WHERE {' AND '.join(where)}"
                                " ORDER BY launched_at DESC, id DESC LIMIT :lim"), params).all()
    return [read(from_row(RunRow, r)) for r in rows]


def page_cursor(page: list[RunRead], limit: int) -> str | None:
    """The cursor of the page after `page` (a full page of `list_runs`), or None on the last page."""
    return pagination.next_cursor(page, limit, at="launched_at")


# ---------------------------------------------------------------- controls (the workflow's activities)

_CONTROL = {"hold": ("on_hold", "held"), "resume": ("running", "resumed"), "cancel": ("cancelled", "cancelled")}


def control(session: Session, msg: ControlRun) -> str:
    """Apply hold, resume or cancel to the runs row, once (a retried activity finds it applied)."""
    c = msg.control
    status, event = _CONTROL[c.action]
    current = run_row(session, msg.run.run_id)
    actor = c.actor.actor()
    key = f"{event}:{c.request.request_id or uuid.uuid4()}"
    if current.status == status or current.status in ENDED:
        return current.status
    before, after = records.set_run_status(session, msg.run.run_id, status, c.reason)
    records.step_event(session, msg.run, key=key, event=event, step_key="", step_kind="run", actor=actor,
                       detail={"reason": c.reason, "request_id": c.request.request_id})
    audit.record(session, org_id=msg.run.org_id, actor=actor, action=c.action, entity_type="run",
                 entity_id=msg.run.run_id, before={"status": before.status}, after={"status": after.status},
                 reason=c.reason, context=c.request)
    if c.action == "cancel":
        lifecycle.close_open(session, msg.run, actor=actor, reason=c.reason)
    return status


def finish(session: Session, msg: FinishRun) -> str:
    """The run reached its end (completed, or rejected at an approval that ends it)."""
    current = run_row(session, msg.run.run_id)
    if current.status in ENDED:
        return current.status
    before, after = records.set_run_status(session, msg.run.run_id, msg.status, msg.reason)
    lifecycle.close_open(session, msg.run, actor=SYSTEM_ACTOR, reason=msg.reason or f"run {msg.status}")
    # A completed run has used up the material its steps had in use (`uses`); a rejected one leaves it in use.
    used = material.finish(session, msg.run, SYSTEM_ACTOR) if msg.status == "completed" else []
    records.step_event(session, msg.run, key=f"run_{msg.status}", event=f"run_{msg.status}", step_key="",
                       step_kind="run", actor=SYSTEM_ACTOR,
                       detail={"reason": msg.reason, **({"consumed": used} if used else {})})
    audit.record(session, org_id=msg.run.org_id, actor=SYSTEM_ACTOR, action=f"run_{msg.status}", entity_type="run",
                 entity_id=msg.run.run_id, before={"status": before.status}, after={"status": after.status},
                 reason=msg.reason)
    return msg.status


# ---------------------------------------------------------------- history


def history(session: Session, run_id: uuid.UUID, temporal_events: list[dict[str, Any]] | None
            ) -> tuple[RunRead, list[TimelineEntry]]:
    """The run's audit entries (run, its tasks, their signatures, refused calls on its URLs) merged with
    Temporal's events (when still kept) into one timeline, oldest first."""
    row = run_row(session, run_id)
    run = read(row)
    audit_service.seal(session, str(row.org_id), wait=True)  # read what was written, even behind another sealer
    steps = {str(r.id): _step_name(r.title, r.step_key, r.iteration) for r in session.execute(
        text("SELECT id, title, step_key, iteration FROM tasks WHERE run_id = :r"), {"r": run_id})}
    task_ids = list(steps)
    signed = {str(r.id): r.entity_id for r in session.execute(
        text("SELECT id, entity_id FROM signatures WHERE entity_type = 'task' AND entity_id = ANY(:t)"),
        {"t": task_ids})}
    sig_ids = list(signed)
    rows = session.execute(
        text(f"SELECT {AUDIT_ROW_COLUMNS} FROM audit_log WHERE org_id = current_org() AND ("
             " (entity_type = 'run' AND entity_id = :r) OR (entity_type = 'task' AND entity_id = ANY(:t))"
             " OR (entity_type = 'signature' AND entity_id = ANY(:s))"
             " OR (entity_type = 'endpoint' AND (entity_id LIKE :url OR entity_id LIKE ANY(:turls))))"
             " ORDER BY seq"),
        {"r": str(run_id), "t": task_ids, "s": sig_ids, "url": f"% /api/v1/runs/{run_id}%",
         "turls": [f"% /api/v1/tasks/{t}%" for t in task_ids]},
    ).all()
    timeline = []
    for r in rows:
        e = audit_service.entry_view(from_row(AuditRow, r))
        what = {"run": "the run", "task": steps.get(e["entity_id"], "a task"),
                "signature": f"a signature on {steps.get(signed.get(e['entity_id'], ''), 'a step')}"
                }.get(e["entity_type"], f"{e['entity_type']} {e['entity_id']}")
        summary = f"{e['actor']['display']}: {e['action']} {what}" + (f" — {e['reason']}" if e["reason"] else "")
        timeline.append(TimelineEntry(at=e["occurred_at"], source="audit", kind=e["action"], summary=summary,
                                      detail=e))
    for ev in temporal_events or []:
        timeline.append(TimelineEntry(at=ev["at"], source="temporal", kind=ev["type"], summary=ev["summary"],
                                      detail=ev))
    timeline.sort(key=lambda t: (t.at, 0 if t.source == "audit" else 1))
    return run, timeline


def _step_name(title: str, step_key: str, iteration: int) -> str:
    """A step as a timeline line names it: its title, its key, and the round when it came back."""
    return f"step “{title}” ({step_key}{f', round {iteration}' if iteration > 1 else ''})"


def temporal_summary(event_type: str, attrs: dict[str, Any]) -> str:
    """One line per Temporal event for people reading the timeline."""
    name = attrs.get("name") or attrs.get("markerName") or attrs.get("activityType", {}).get("name")
    if event_type.startswith("WORKFLOW_EXECUTION_UPDATE"):
        meta = attrs.get("acceptedRequest", {}).get("meta", {}) or attrs.get("meta", {})
        name = attrs.get("acceptedRequest", {}).get("input", {}).get("name") or meta.get("updateId")
    if event_type.startswith("TIMER"):
        name = attrs.get("startToFireTimeout") or attrs.get("timerId")
    label = event_type.replace("EVENT_TYPE_", "").lower()
    return f"temporal: {label}" + (f" ({name})" if name else "")
