"""Runs of approved protocol versions: launch, read, controls, approvals, the end of a run, history.

The run workflow (workflows/run.py) decides what happens when; these functions are what its
activities and the API write and read, each in the caller's one transaction with its audit entry.

Approvals are electronic signatures bound to the hash of the records they review (21 CFR 11.70):
the task steps the approval covers (`ApprovalNode.reviews`), their latest completion in this run with
the values submitted. Nobody approves work they performed in the run (segregation of duties).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit, signatures
from domain.audit import service as audit_service
from domain.canonical import canonical_bytes, format_ts, parse_ts
from domain.errors import Conflict, Forbidden, Invalid, NotFound
from domain.protocols.plan import ApprovalNode, ExecutionPlan
from domain.roles import SYSTEM_ACTOR, Caller
from domain.runs import records
from domain.runs.messages import (
    ENDED,
    ActorRef,
    ControlRun,
    DecideApproval,
    Decision,
    FinishRun,
    Outcome,
    RequestInfo,
    RunRef,
    Waiting,
)
from domain.runs.models import RunDetail, RunLaunch, RunRead, TimelineEntry, subject_filter
from domain.tasks import service as tasks

# ---------------------------------------------------------------- launch and read


def _approved_version(session: Session, data: RunLaunch) -> Any:
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
    return row


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
    at = records.now()
    row = session.execute(
        text("INSERT INTO runs (id, org_id, protocol_version_id, protocol_key, protocol_version, protocol_title,"
             " status, subjects, parameters, time_scale, launched_by, launched_by_display, launched_at, updated_at,"
             " revision, request_id) VALUES (:id, :o, :v, :k, :n, :title, 'running', CAST(:subj AS jsonb),"
             f" CAST(:par AS jsonb), :scale, :by, :byd, :at, :at, 1, :rq) RETURNING {records.RUN_COLUMNS}"),
        {"id": run_id, "o": caller.org_id, "v": version.id, "k": version.key, "n": version.version,
         "title": version.title, "subj": json.dumps([s.model_dump() for s in data.subjects]),
         "par": json.dumps(records.jsonable(data.parameters)), "scale": data.time_scale, "by": caller.actor.id,
         "byd": caller.actor.display, "at": at, "rq": request_id},
    ).one()
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


def ref(row: Any) -> RunRef:
    return RunRef(org_id=str(row.org_id), run_id=str(row.id), protocol_key=row.protocol_key,
                  protocol_version=row.protocol_version)


def read(row: Any) -> RunRead:
    return RunRead.model_validate({k: getattr(row, k) for k in RunRead.model_fields})


def _row(session: Session, run_id: uuid.UUID | str) -> Any:
    row = session.execute(text(f"SELECT {records.RUN_COLUMNS} FROM runs WHERE id = :r"), {"r": str(run_id)}).first()
    if row is None:
        raise NotFound(f"no run {run_id}")
    return row


def get(session: Session, run_id: uuid.UUID | str) -> RunRead:
    return read(_row(session, run_id))


def detail(session: Session, run_id: uuid.UUID) -> RunDetail:
    run = get(session, run_id)
    events = session.execute(
        text("SELECT id, step_key, step_kind, event, iteration, actor_display, occurred_at, detail FROM step_events"
             " WHERE run_id = :r ORDER BY occurred_at, id"), {"r": run_id},
    ).all()
    steps = [{"event_id": str(e.id), "step_key": e.step_key, "step_kind": e.step_kind, "event": e.event,
              "iteration": e.iteration, "actor": e.actor_display, "occurred_at": format_ts(e.occurred_at),
              "detail": e.detail} for e in events]
    return RunDetail(**run.model_dump(), open_tasks=tasks.open_briefs(session, run_id),
                     waiting_for=waiting_for(session, run), steps=steps)


def waiting_for(session: Session, run: RunRead) -> list[Waiting]:
    """What the run waits for, as its records tell: a hold, open tasks (until due), timers running (until they
    fire). Nothing once it has ended."""
    if run.status in ENDED:
        return []
    waiting = [Waiting(kind="hold", reason=run.status_reason)] if run.status == "on_hold" else []
    waiting += [Waiting(kind=t.kind, step_key=t.step_key, title=t.title, task_id=t.task_id, iteration=t.iteration,
                        until=t.due_at) for t in tasks.open_briefs(session, run.id)]
    timers = session.execute(
        text("SELECT s.step_key, s.iteration, s.detail->>'fires_at' AS fires_at, s.detail->>'title' AS title"
             " FROM step_events s"
             " WHERE s.run_id = :r AND s.event = 'timer_started' AND NOT EXISTS (SELECT 1 FROM step_events f"
             " WHERE f.run_id = s.run_id AND f.event = 'timer_fired' AND f.step_key = s.step_key"
             " AND f.iteration = s.iteration) ORDER BY s.occurred_at"), {"r": run.id},
    ).all()
    waiting += [Waiting(kind="timer", step_key=t.step_key, title=t.title or "", iteration=t.iteration,
                        until=parse_ts(t.fires_at) if t.fires_at else None) for t in timers]
    return waiting


def list_runs(session: Session, *, status: str | None = None, protocol_key: str | None = None,
              subject: str | None = None, limit: int = 100) -> list[RunRead]:
    where: list[str] = ["org_id = current_org()"]
    params: dict[str, Any] = {"lim": limit}
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
    rows = session.execute(text(f"SELECT {records.RUN_COLUMNS} FROM runs WHERE {' AND '.join(where)}"
                                " ORDER BY launched_at DESC LIMIT :lim"), params).all()
    return [read(r) for r in rows]


# ---------------------------------------------------------------- controls (the workflow's activities)

_CONTROL = {"hold": ("on_hold", "held"), "resume": ("running", "resumed"), "cancel": ("cancelled", "cancelled")}


def control(session: Session, msg: ControlRun) -> str:
    """Apply hold, resume or cancel to the runs row, once (a retried activity finds it applied)."""
    c = msg.control
    status, event = _CONTROL[c.action]
    current = _row(session, msg.run.run_id)
    actor = tasks.actor_of(c.actor)
    key = f"{event}:{c.request.request_id or uuid.uuid4()}"
    if current.status == status or current.status in ENDED:
        return str(current.status)
    before, after = records.set_run_status(session, msg.run.run_id, status, c.reason)
    records.step_event(session, msg.run, key=key, event=event, step_key="", step_kind="run", actor=actor,
                       detail={"reason": c.reason, "request_id": c.request.request_id})
    audit.record(session, org_id=msg.run.org_id, actor=actor, action=c.action, entity_type="run",
                 entity_id=msg.run.run_id, before={"status": before.status}, after={"status": after.status},
                 reason=c.reason, context=tasks.context_of(c.request))
    if c.action == "cancel":
        tasks.close_open(session, msg.run, actor=actor, reason=c.reason)
    return status


def finish(session: Session, msg: FinishRun) -> str:
    """The run reached its end (completed, or rejected at an approval that ends it)."""
    current = _row(session, msg.run.run_id)
    if current.status in ENDED:
        return str(current.status)
    before, after = records.set_run_status(session, msg.run.run_id, msg.status, msg.reason)
    tasks.close_open(session, msg.run, actor=SYSTEM_ACTOR, reason=msg.reason or f"run {msg.status}")
    records.step_event(session, msg.run, key=f"run_{msg.status}", event=f"run_{msg.status}", step_key="",
                       step_kind="run", actor=SYSTEM_ACTOR, detail={"reason": msg.reason})
    audit.record(session, org_id=msg.run.org_id, actor=SYSTEM_ACTOR, action=f"run_{msg.status}", entity_type="run",
                 entity_id=msg.run.run_id, before={"status": before.status}, after={"status": after.status},
                 reason=msg.reason)
    return msg.status


# ---------------------------------------------------------------- approvals


def reviewed_records(session: Session, run_id: str, reviews: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """The records an approval signs: the latest completion of each reviewed step in the run, with its values;
    and their SHA-256 over canonical JSON (what the signature's content_hash binds)."""
    rows = session.execute(
        text("SELECT DISTINCT ON (t.step_key) t.id, t.step_key, t.iteration, t.closed_by, t.closed_at,"
             " f.id AS submission_id, f.field_values, f.checklist, f.evidence FROM tasks t"
             " LEFT JOIN form_submissions f ON f.task_id = t.id"
             " WHERE t.run_id = :r AND t.step_key = ANY(:keys) AND t.status = 'completed'"
             " ORDER BY t.step_key, t.iteration DESC"),
        {"r": run_id, "keys": reviews},
    ).all()
    recs = [{"task_id": str(r.id), "step_key": r.step_key, "iteration": r.iteration, "performed_by": r.closed_by,
             "completed_at": format_ts(r.closed_at), "submission_id": str(r.submission_id) if r.submission_id else None,
             "values": r.field_values, "checklist": r.checklist, "evidence": r.evidence} for r in rows]
    content = {"run_id": run_id, "records": recs}
    return hashlib.sha256(canonical_bytes(content)).hexdigest(), recs


def performed_by(session: Session, run_id: str, reviews: list[str], actor_id: str) -> list[str]:
    """Reviewed steps this actor performed in the run (any iteration)."""
    rows = session.execute(
        text("SELECT DISTINCT step_key FROM tasks WHERE run_id = :r AND step_key = ANY(:keys) AND closed_by = :a"
             " AND status = 'completed' ORDER BY step_key"),
        {"r": run_id, "keys": reviews, "a": actor_id},
    ).all()
    return [r.step_key for r in rows]


def approval_task(session: Session, run_id: uuid.UUID, task_id: uuid.UUID | None) -> Any:
    """The approval the request is about: the given one, or the run's only open approval."""
    _row(session, run_id)
    sql = "SELECT * FROM tasks WHERE run_id = :r AND kind = 'approval'"
    if task_id is not None:
        row = session.execute(text(sql + " AND id = :t"), {"r": run_id, "t": task_id}).first()
        if row is None:
            raise NotFound(f"run {run_id} has no approval {task_id}")
        return row
    rows = session.execute(text(sql + " AND status = 'open' ORDER BY opened_at"), {"r": run_id}).all()
    if len(rows) != 1:
        raise Conflict(f"the run has {len(rows)} open approvals: name one with task_id" if rows
                       else "the run has no open approval")
    return rows[0]


def approval_gates(session: Session, task: Any, actor: ActorRef, decision: str, reason: str | None
                   ) -> tuple[list[str], list[str], list[str]]:
    """Every reason this person may not decide this approval now: (forbidden, conflicts, invalid)."""
    run = _row(session, task.run_id)
    task_view = _TaskView(task, run)
    forbidden, conflicts = tasks.common_gates(task_view, actor)
    mine = performed_by(session, str(task.run_id), list(task.spec.get("reviews", [])), actor.id)
    if mine:
        forbidden.append(f"segregation of duties: you performed {', '.join(mine)} in this run, which this approval "
                         "reviews; someone else must sign")
    invalid = [] if decision == "approve" or (reason and reason.strip()) else ["reason: required when rejecting"]
    return forbidden, conflicts, invalid


class _TaskView:
    """A tasks row seen with its run's status, as the common gates read it."""

    def __init__(self, task: Any, run: Any) -> None:
        self._task = task
        self.run_status = run.status
        self.run_status_reason = run.status_reason

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


def check_approval(session: Session, caller: Caller, task: Any, decision: str, reason: str | None) -> str:
    """The API's gate before asking for the signature: raise with every reason; else the content hash to sign."""
    forbidden, conflicts, invalid = approval_gates(session, task, actor_ref(caller), decision, reason)
    reasons = forbidden + conflicts + invalid
    if forbidden:
        raise Forbidden("approval refused: " + "; ".join(reasons), reasons=reasons)
    if conflicts:
        raise Conflict("approval refused: " + "; ".join(reasons), reasons=reasons)
    if invalid:
        raise Invalid("approval refused: " + "; ".join(reasons), reasons=reasons)
    content_hash, _ = reviewed_records(session, str(task.run_id), list(task.spec.get("reviews", [])))
    return content_hash


def signed_hash(session: Session, signature_id: str) -> str:
    row = session.execute(text("SELECT content_hash FROM signatures WHERE id = :s"), {"s": signature_id}).one()
    return str(row.content_hash)


def actor_ref(caller: Caller) -> ActorRef:
    return ActorRef(type=caller.actor.type, id=caller.actor.id, display=caller.actor.display,
                    user_id=str(caller.user_id) if caller.user_id else None, role=caller.role.value)


def request_info(caller: Caller) -> RequestInfo:
    c = caller.context
    return RequestInfo(request_id=c.request_id, client_address=c.client_address, user_agent=c.user_agent,
                       api_key_id=c.api_key_id)


def _verified_signature(d: Decision) -> signatures.Signature | None:
    if d.meaning is None or d.signer_name is None or d.signed_at is None or d.actor.user_id is None:
        return None
    return signatures.Signature(
        id=uuid.UUID(d.signature_id), signer_id=uuid.UUID(d.actor.user_id), signer_name=d.signer_name,
        meaning=signatures.Meaning(d.meaning), reason=d.reason, entity_type="task", entity_id=d.task_id,
        content_hash=d.content_hash, signed_at=d.signed_at)


def decide(session: Session, msg: DecideApproval) -> Outcome:
    """Record an approval decision (the workflow's activity): gates again, the signature bound to the reviewed
    records as they are now, then the signature, the task, step event, audit entry and outbox row together: a
    refused decision records no signature."""
    d, run, step = msg.decision, msg.run, msg.step
    prior = tasks.prior_answer(session, d.request.request_id)
    if prior is not None and prior[0] == d.task_id:
        return prior[1]
    task = session.execute(text("SELECT * FROM tasks WHERE id = :t FOR UPDATE"), {"t": d.task_id}).first()
    if task is None:
        raise NotFound(f"no task {d.task_id}")
    forbidden, conflicts, invalid = approval_gates(session, task, d.actor, d.decision, d.reason)
    content_hash, _ = reviewed_records(session, run.run_id, list(step.reviews))
    new_signature = _verified_signature(d)
    if new_signature is not None:  # verified by the API: recorded below with the decision, or not at all
        signed_by, meaning, signed_hash = str(new_signature.signer_id), new_signature.meaning.value, d.content_hash
    else:  # a decision sent before signatures travelled with it (replayed histories): its row was written then
        row = session.execute(
            text("SELECT signer_id, meaning, content_hash FROM signatures WHERE id = :s AND entity_type = 'task'"
                 " AND entity_id = :t"), {"s": d.signature_id, "t": d.task_id},
        ).first()
        signed_by, meaning, signed_hash = (str(row.signer_id), row.meaning, row.content_hash) if row else ("", "", "")
    if not signed_by or signed_by != d.actor.user_id:
        forbidden.append("signature: no signature by you on this approval")
    elif signed_hash != content_hash or d.content_hash != content_hash:
        conflicts.append("signature: the reviewed records changed since you signed; review and sign again")
    if forbidden or conflicts or invalid:
        return tasks.refusal(session, run, task, step_key=step.key, iteration=msg.iteration, actor=d.actor,
                             request=d.request, forbidden=forbidden, conflicts=conflicts, invalid=invalid,
                             doing="approval")
    actor = tasks.actor_of(d.actor)
    if new_signature is not None:
        signatures.record(session, new_signature, org_id=run.org_id, actor=actor, context=tasks.context_of(d.request))
    status: Literal["approved", "rejected"] = "approved" if d.decision == "approve" else "rejected"
    at = records.now()
    session.execute(
        text("UPDATE tasks SET status = :s, closed_at = :at, closed_by = :by, closed_by_display = :byd WHERE id = :t"),
        {"s": status, "at": at, "by": actor.id, "byd": actor.display, "t": d.task_id},
    )
    detail = {"task_id": d.task_id, "signature_id": d.signature_id, "meaning": meaning,
              "content_hash": content_hash, "reason": d.reason, "reviews": list(step.reviews),
              "on_reject": step.on_reject.model_dump() if status == "rejected" else None}
    records.step_event(session, run, key=f"{status}:{d.task_id}", event=status, step_key=step.key,
                       step_kind="approval", iteration=msg.iteration, actor=actor, detail=detail, task_id=d.task_id,
                       occurred_at=at)
    audit.record(session, org_id=run.org_id, actor=actor, action="approve" if status == "approved" else "reject",
                 entity_type="task", entity_id=d.task_id, before={"status": "open"},
                 after={"status": status, **detail}, reason=d.reason, context=tasks.context_of(d.request),
                 occurred_at=at)
    outcome = Outcome(ok=True, task_id=d.task_id, run_id=run.run_id, step_key=step.key, iteration=msg.iteration,
                      result=status, signature_id=d.signature_id, closed_at=at, actor_id=d.actor.id)
    tasks.remember_answer(session, run, outcome, d.request.request_id)
    for opening in msg.open_next:
        tasks.open_task(session, opening)
    return outcome


def approval_node(task: Any) -> ApprovalNode:
    return ApprovalNode.model_validate(task.spec)


# ---------------------------------------------------------------- history


def history(session: Session, run_id: uuid.UUID, temporal_events: list[dict[str, Any]] | None
            ) -> tuple[RunRead, list[TimelineEntry]]:
    """The run's audit entries (run, its tasks, their signatures, refused calls on its URLs) merged with
    Temporal's events (when still kept) into one timeline, oldest first."""
    row = _row(session, run_id)
    run = read(row)
    audit_service.seal(session, str(row.org_id), wait=True)  # read what was written, even behind another sealer
    task_ids = [str(r.id) for r in session.execute(text("SELECT id FROM tasks WHERE run_id = :r"), {"r": run_id})]
    sig_ids = [str(r.id) for r in session.execute(
        text("SELECT id FROM signatures WHERE entity_type = 'task' AND entity_id = ANY(:t)"), {"t": task_ids})]
    rows = session.execute(
        text("SELECT seq, body, chain_hash FROM audit_log WHERE org_id = current_org() AND ("
             " (entity_type = 'run' AND entity_id = :r) OR (entity_type = 'task' AND entity_id = ANY(:t))"
             " OR (entity_type = 'signature' AND entity_id = ANY(:s))"
             " OR (entity_type = 'endpoint' AND (entity_id LIKE :url OR entity_id LIKE ANY(:turls))))"
             " ORDER BY seq"),
        {"r": str(run_id), "t": task_ids, "s": sig_ids, "url": f"% /api/v1/runs/{run_id}%",
         "turls": [f"% /api/v1/tasks/{t}%" for t in task_ids]},
    ).all()
    timeline = []
    for r in rows:
        e = audit_service.entry_view(r)
        who = e["actor"]["display"]
        summary = f"{who}: {e['action']} {e['entity_type']}" + (f" — {e['reason']}" if e["reason"] else "")
        timeline.append(TimelineEntry(at=e["occurred_at"], source="audit", kind=e["action"], summary=summary,
                                      detail=e))
    for ev in temporal_events or []:
        timeline.append(TimelineEntry(at=ev["at"], source="temporal", kind=ev["type"], summary=ev["summary"],
                                      detail=ev))
    timeline.sort(key=lambda t: (t.at, 0 if t.source == "audit" else 1))
    return run, timeline


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
