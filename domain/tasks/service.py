"""Tasks of runs: opening them, the inbox, claiming, completion with its gates, escalation.

Completion is one transaction: the gates read the database (role allowed for the step, every checklist
item confirmed — the step's own and the compliance surface's —, the run not on hold, the task open and
not claimed by someone else, the form values valid); then the form submission, the step event, the audit
entry, their outbox rows and the request's answer are written together. A refusal writes only its audit
entry and answers every reason at once. A retried request (same request id) gets the first answer back.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from types import SimpleNamespace
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit, compliance
from domain.audit import Severity
from domain.errors import Conflict, Forbidden, NotFound
from domain.notifications import Notification, Notifier
from domain.protocols.forms import normalize_values, validate_submission
from domain.protocols.plan import ChecklistItem, TaskNode
from domain.roles import SYSTEM_ACTOR, Actor, Caller, RequestContext
from domain.runs import records
from domain.runs.messages import ActorRef, CompleteTask, Escalate, OpenStep, Outcome, RequestInfo, RunRef, TaskBrief
from domain.runs.models import subject_filter
from domain.tasks.models import TaskFilter, TaskRead

TASK_COLUMNS = """t.id, t.run_id, t.step_key, t.iteration, t.kind, t.title, t.roles, t.spec, t.status, t.opened_at,
  t.due_at, t.escalation_level, t.claimed_by, t.claimed_by_display, t.closed_at, t.closed_by_display,
  r.protocol_key, r.protocol_version"""


def actor_of(ref: ActorRef) -> Actor:
    return Actor(type=ref.type, id=ref.id, display=ref.display)


def context_of(info: RequestInfo) -> RequestContext:
    return RequestContext(request_id=info.request_id, client_address=info.client_address, user_agent=info.user_agent,
                          api_key_id=info.api_key_id)


def task_id_for(run_id: str, step_key: str, iteration: int) -> str:
    """Tasks have ids the workflow can derive (and a retried activity reuses)."""
    return str(uuid.uuid5(uuid.UUID(run_id), f"task:{step_key}:{iteration}"))


# ---------------------------------------------------------------- the workflow's side


def open_task(session: Session, msg: OpenStep) -> TaskBrief:
    """Record an opened task or approval for the inbox, once (its step event and audit entry with it)."""
    step = msg.step
    spec = step.model_dump(mode="json", exclude={"when"})
    brief = TaskBrief(task_id=msg.task_id, step_key=step.key, kind=step.kind, title=step.title,
                      iteration=msg.iteration, due_at=msg.due_at)
    # Serialized with controls (they lock the run row): a run cancelled meanwhile opens nothing more.
    run_status = session.execute(text("SELECT status FROM runs WHERE id = :r FOR SHARE"), {"r": msg.run.run_id}).one()
    if run_status.status not in ("running", "on_hold"):
        return brief
    inserted = session.execute(
        text("INSERT INTO tasks (id, org_id, run_id, step_key, iteration, kind, title, roles, spec, status, opened_at,"
             " due_at) VALUES (:id, :o, :r, :sk, :i, :k, :title, :roles, CAST(:spec AS jsonb), 'open', :at, :due)"
             " ON CONFLICT (id) DO NOTHING RETURNING id"),
        {"id": msg.task_id, "o": msg.run.org_id, "r": msg.run.run_id, "sk": step.key, "i": msg.iteration,
         "k": step.kind, "title": step.title, "roles": list(step.roles), "spec": json.dumps(spec),
         "at": msg.opened_at, "due": msg.due_at},
    ).first()
    if inserted is None:
        return brief
    detail = {"task_id": msg.task_id, "title": step.title, "roles": list(step.roles), "due_at": msg.due_at}
    records.step_event(session, msg.run, key=f"opened:{msg.task_id}", event="opened", step_key=step.key,
                       step_kind=step.kind, iteration=msg.iteration, actor=SYSTEM_ACTOR, detail=detail,
                       task_id=msg.task_id)
    audit.record(session, org_id=msg.run.org_id, actor=SYSTEM_ACTOR, action="open", entity_type="task",
                 entity_id=msg.task_id, after={"status": "open", "run_id": msg.run.run_id, "step_key": step.key,
                                               "kind": step.kind, "iteration": msg.iteration,
                                               "roles": list(step.roles), "due_at": msg.due_at})
    return brief


def _locked_task(session: Session, task_id: str) -> Any:
    """The task, locked, with what the gates need of its run."""
    return session.execute(
        text("SELECT t.*, r.status AS run_status, r.status_reason AS run_status_reason, r.subjects, r.parameters,"
             " r.protocol_key, r.protocol_version, r.time_scale FROM tasks t JOIN runs r ON r.id = t.run_id"
             " WHERE t.id = :t FOR UPDATE OF t"),
        {"t": task_id},
    ).first()


def _run_of(task: Any) -> SimpleNamespace:
    """The run as the compliance hook sees it, from a task row joined with its run."""
    return SimpleNamespace(id=task.run_id, org_id=task.org_id, status=task.run_status, subjects=task.subjects,
                           parameters=task.parameters, protocol_key=task.protocol_key,
                           protocol_version=task.protocol_version, time_scale=task.time_scale)


class RequestReused(Exception):
    """The request id already answered a request about another task: the completion rolls back."""


def prior_answer(session: Session, request_id: str | None) -> tuple[str, Outcome] | None:
    """The first answer given to this request id in the org, with the task it was about."""
    if not request_id:
        return None
    row = session.execute(
        text("SELECT task_id, result FROM task_requests WHERE org_id = current_org() AND request_id = :q"),
        {"q": request_id},
    ).first()
    return (str(row.task_id), Outcome.model_validate(row.result)) if row else None


def remember_answer(session: Session, run: RunRef, outcome: Outcome, request_id: str | None) -> bool:
    """Keep the first answer to this request id; False when the id had answered before."""
    if not request_id:
        return True
    row = session.execute(
        text("INSERT INTO task_requests (org_id, request_id, task_id, run_id, result) VALUES (:o, :q, :t, :r,"
             " CAST(:res AS jsonb)) ON CONFLICT DO NOTHING RETURNING request_id"),
        {"o": run.org_id, "q": request_id, "t": outcome.task_id, "r": run.run_id, "res": outcome.model_dump_json()},
    ).first()
    return row is not None


def common_gates(task: Any, actor: ActorRef) -> tuple[list[str], list[str]]:
    """Reasons the actor may not act on this task now: (forbidden, conflicting)."""
    forbidden: list[str] = []
    conflicts: list[str] = []
    if task.status != "open":
        conflicts.append(f"task: already {task.status}")
    if actor.role not in task.roles:
        allowed = ", ".join(task.roles)
        forbidden.append(f"role: {actor.role} may not perform step '{task.step_key}' (allowed: {allowed})")
    if task.claimed_by is not None and str(task.claimed_by) != actor.user_id:
        conflicts.append(f"claim: the task is claimed by {task.claimed_by_display}; they must release it first")
    if task.run_status == "on_hold":
        conflicts.append(f"run: on hold ({task.run_status_reason}); a lab manager must resume it before work goes on")
    elif task.run_status != "running":
        conflicts.append(f"run: {task.run_status}; it takes no more work")
    return forbidden, conflicts


def refusal(
    session: Session, run: RunRef, task: Any, *, step_key: str, iteration: int, actor: ActorRef, request: RequestInfo,
    forbidden: list[str], conflicts: list[str], invalid: list[str], doing: str,
) -> Outcome:
    """Answer every reason at once (403 before 409 before 422) and put the attempt on record."""
    status = 403 if forbidden else 409 if conflicts else 422
    reasons = forbidden + conflicts + invalid
    message = f"{doing} refused: " + "; ".join(reasons)
    audit.record(session, org_id=run.org_id, actor=actor_of(actor), action="refuse", entity_type="task",
                 entity_id=str(task.id) if task else "-", after={"doing": doing, "status": status, "reasons": reasons},
                 reason=message[:2000], severity=Severity.warning, context=context_of(request))
    return Outcome(ok=False, status=status, message=message, reasons=reasons, task_id=str(task.id) if task else "",
                   run_id=run.run_id, step_key=step_key, iteration=iteration, result="refused", actor_id=actor.id)


def checklist_for(session: Session, task_run: Any, step: TaskNode) -> list[ChecklistItem]:
    return [*step.checklist, *compliance.extra_checklist_items(session, task_run, step)]


def complete(session: Session, msg: CompleteTask) -> Outcome:
    """Gates, then every record of the completion in this one transaction (see the module doc).
    Raises RequestReused when the request id answered another task (the caller refuses it in a new transaction)."""
    c, run = msg.completion, msg.run
    task = _locked_task(session, c.task_id)
    if task is None:
        raise NotFound(f"no task {c.task_id}")
    if task.status != "open":
        prior = prior_answer(session, c.request.request_id)
        if prior is not None and prior[0] == c.task_id:
            return prior[1]  # this very request completed it: the first answer again
    forbidden, conflicts = common_gates(task, c.actor)
    step = msg.step.model_copy(update={"checklist": checklist_for(session, _run_of(task), msg.step)})
    invalid = [str(p) for p in validate_submission(step, c.values, c.checklist)]
    if forbidden or conflicts or invalid:
        return refusal(session, run, task, step_key=step.key, iteration=msg.iteration, actor=c.actor,
                       request=c.request, forbidden=forbidden, conflicts=conflicts, invalid=invalid,
                       doing="completion")
    actor = actor_of(c.actor)
    values = normalize_values(step, c.values)
    confirmed = [item.key for item in step.checklist]
    at = records.now()
    submission_id = records.form_submission(
        session, run, task_id=c.task_id, step=step, iteration=msg.iteration, actor=actor, values=values,
        checklist=confirmed, evidence=c.evidence, request_id=c.request.request_id, at=at)
    session.execute(
        text("UPDATE tasks SET status = 'completed', closed_at = :at, closed_by = :by, closed_by_display = :byd"
             " WHERE id = :t"),
        {"at": at, "by": actor.id, "byd": actor.display, "t": c.task_id},
    )
    detail = {"task_id": c.task_id, "submission_id": submission_id, "checklist": confirmed, "evidence": c.evidence,
              "request_id": c.request.request_id}
    records.step_event(session, run, key=f"completed:{c.task_id}", event="completed", step_key=step.key,
                       step_kind="task", iteration=msg.iteration, actor=actor, detail=detail, task_id=c.task_id,
                       occurred_at=at)
    audit.record(session, org_id=run.org_id, actor=actor, action="complete", entity_type="task", entity_id=c.task_id,
                 before={"status": "open"},
                 after={"status": "completed", "run_id": run.run_id, "step_key": step.key, "iteration": msg.iteration,
                        "submission_id": submission_id, "values": values, "checklist": confirmed,
                        "evidence": c.evidence},
                 context=context_of(c.request), occurred_at=at)
    outcome = Outcome(ok=True, task_id=c.task_id, run_id=run.run_id, step_key=step.key, iteration=msg.iteration,
                      result="completed", submission_id=submission_id, closed_at=at, values=values,
                      actor_id=c.actor.id)
    if not remember_answer(session, run, outcome, c.request.request_id):
        raise RequestReused(c.request.request_id)
    for opening in msg.open_next:
        open_task(session, opening)
    return outcome


def refuse_reused(session: Session, msg: CompleteTask) -> Outcome:
    c = msg.completion
    task = _locked_task(session, c.task_id)
    return refusal(session, msg.run, task, step_key=msg.step.key, iteration=msg.iteration, actor=c.actor,
                   request=c.request, forbidden=[], invalid=[],
                   conflicts=[f"request: id {c.request.request_id} already answered a request about another task"],
                   doing="completion")


def escalate(session: Session, msg: Escalate, notifier: Notifier) -> bool:
    """An overdue task or approval: raise the alert (audit entry by the system, step event), notify the
    roles of this level, once. False when this level had fired before."""
    first = records.step_event(
        session, msg.run, key=f"escalated:{msg.task_id}:{msg.level}", event="escalated", step_key=msg.step_key,
        step_kind=msg.step_kind, iteration=msg.iteration, actor=SYSTEM_ACTOR, task_id=msg.task_id,
        detail={"task_id": msg.task_id, "level": msg.level, "notify_roles": msg.notify_roles, "due_at": msg.due_at,
                "fired_at": msg.fired_at})
    if not first:
        return False
    session.execute(
        text("UPDATE tasks SET escalation_level = greatest(escalation_level, :l), escalated_at = :at WHERE id = :t"),
        {"l": msg.level, "at": records.now(), "t": msg.task_id},
    )
    overdue_for = msg.fired_at - msg.due_at
    what = "is due now" if msg.level == 0 else f"is overdue by {_human(overdue_for)}"
    subject = f"{msg.title} {what}"
    audit.record(session, org_id=msg.run.org_id, actor=SYSTEM_ACTOR, action="escalate", entity_type="task",
                 entity_id=msg.task_id, severity=Severity.notice if msg.level == 0 else Severity.warning,
                 reason=f"{subject}; notified: {', '.join(msg.notify_roles)}",
                 after={"run_id": msg.run.run_id, "step_key": msg.step_key, "iteration": msg.iteration,
                        "level": msg.level, "notify_roles": msg.notify_roles, "due_at": msg.due_at})
    for role in msg.notify_roles:
        notifier.notify(session, Notification(
            id=uuid.uuid5(uuid.UUID(msg.task_id), f"escalation:{msg.level}:{role}"), org_id=msg.run.org_id,
            recipient_role=role, run_id=msg.run.run_id, task_id=msg.task_id, subject=subject,
            body=f"Run {msg.run.run_id} ({msg.run.protocol_key} v{msg.run.protocol_version}): step '{msg.step_key}' "
                 f"was due at {msg.due_at.isoformat()} and is still open (escalation level {msg.level})."))
    return True


def _human(delta: dt.timedelta) -> str:
    s = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}".replace(".0 ", " ")
    return f"{s} s"


def close_open(session: Session, run: RunRef, *, actor: Actor, reason: str) -> list[str]:
    """Cancel whatever the run still has open (it was cancelled or ended); the ids closed."""
    rows = session.execute(
        text("UPDATE tasks SET status = 'cancelled', closed_at = :at, closed_by = :by, closed_by_display = :byd"
             " WHERE run_id = :r AND status = 'open' RETURNING id, step_key, kind, iteration"),
        {"at": records.now(), "by": actor.id, "byd": actor.display, "r": run.run_id},
    ).all()
    for r in rows:
        records.step_event(session, run, key=f"cancelled:{r.id}", event="cancelled", step_key=r.step_key,
                           step_kind=r.kind, iteration=r.iteration, actor=actor, task_id=r.id,
                           detail={"task_id": str(r.id), "reason": reason})
    return [str(r.id) for r in rows]


def open_briefs(session: Session, run_id: str | uuid.UUID) -> list[TaskBrief]:
    rows = session.execute(
        text("SELECT id, step_key, kind, title, iteration, due_at FROM tasks WHERE run_id = :r AND status = 'open'"
             " ORDER BY opened_at, step_key"), {"r": str(run_id)},
    ).all()
    return [TaskBrief(task_id=str(r.id), step_key=r.step_key, kind=r.kind, title=r.title, iteration=r.iteration,
                      due_at=r.due_at) for r in rows]


# ---------------------------------------------------------------- the inbox


def _read(session: Session, row: Any, now: dt.datetime) -> TaskRead:
    spec = row.spec
    checklist = [{"key": i["key"], "text": i["text"]} for i in spec.get("checklist", [])]
    if row.kind == "task" and row.status == "open":
        run_row = session.execute(text(f"SELECT {records.RUN_COLUMNS} FROM runs WHERE id = :r"),
                                  {"r": row.run_id}).one()
        extra = compliance.extra_checklist_items(session, run_row, TaskNode.model_validate(spec))
        checklist += [{"key": i.key, "text": i.text} for i in extra]
    return TaskRead(
        id=row.id, run_id=row.run_id, protocol_key=row.protocol_key, protocol_version=row.protocol_version,
        step_key=row.step_key, iteration=row.iteration, kind=row.kind, title=row.title,
        instructions=spec.get("instructions", ""), roles=list(row.roles), form=spec.get("form"), checklist=checklist,
        meaning=spec.get("meaning"), status=row.status, opened_at=row.opened_at, due_at=row.due_at,
        overdue=row.status == "open" and row.due_at is not None and row.due_at < now,
        escalation_level=row.escalation_level, claimed_by=row.claimed_by, claimed_by_display=row.claimed_by_display,
        closed_at=row.closed_at, closed_by_display=row.closed_by_display,
    )


def inbox(session: Session, caller: Caller, f: TaskFilter, *, limit: int = 200) -> list[TaskRead]:
    """Tasks of the caller's organization, most urgent first (overdue, then by due time, then oldest)."""
    where = ["t.org_id = current_org()"]
    params: dict[str, Any] = {"lim": limit}
    if f.status:
        where.append("t.status = :status")
        params["status"] = f.status
    if f.mine:
        where.append("t.claimed_by = :me")
        params["me"] = caller.user_id
    if f.my_roles:
        where.append(":role = ANY(t.roles)")
        params["role"] = caller.role.value
    if f.overdue:
        where.append("t.status = 'open' AND t.due_at < now()")
    if f.run_id:
        where.append("t.run_id = :run")
        params["run"] = f.run_id
    if f.subject:
        condition, subject_params = subject_filter(f.subject, "r.subjects")  # the runs' GIN index (jsonb_path_ops)
        where.append(condition)
        params.update(subject_params)
    rows = session.execute(
        text(f"SELECT {TASK_COLUMNS} FROM tasks t JOIN runs r ON r.id = t.run_id WHERE {' AND '.join(where)}"
             " ORDER BY t.due_at NULLS LAST, t.opened_at LIMIT :lim"), params,
    ).all()
    now = records.now()
    return [_read(session, r, now) for r in rows]


def get(session: Session, task_id: uuid.UUID) -> TaskRead:
    row = session.execute(
        text(f"SELECT {TASK_COLUMNS} FROM tasks t JOIN runs r ON r.id = t.run_id WHERE t.id = :t"), {"t": task_id},
    ).first()
    if row is None:
        raise NotFound(f"no task {task_id}")
    return _read(session, row, records.now())


def locate(session: Session, task_id: uuid.UUID) -> Any:
    """The task's run and kind, for the API to address the run's workflow; NotFound (audited) otherwise."""
    row = session.execute(
        text("SELECT t.id, t.run_id, t.kind, t.status, r.status AS run_status FROM tasks t"
             " JOIN runs r ON r.id = t.run_id WHERE t.id = :t"), {"t": task_id},
    ).first()
    if row is None:
        raise NotFound(f"no task {task_id}")
    return row


def claim(session: Session, caller: Caller, task_id: uuid.UUID) -> TaskRead:
    """Take an open task for yourself (others see who has it); the role must be allowed for the step."""
    row = session.execute(text("SELECT * FROM tasks WHERE id = :t FOR UPDATE"), {"t": task_id}).first()
    if row is None:
        raise NotFound(f"no task {task_id}")
    if caller.role.value not in row.roles:
        raise Forbidden(f"your role ({caller.role}) may not perform step '{row.step_key}' "
                        f"(allowed: {', '.join(row.roles)})")
    if caller.user_id is None:
        raise Forbidden("only a person can claim a task")
    if row.status != "open":
        raise Conflict(f"the task is {row.status}")
    if row.claimed_by is not None and row.claimed_by != caller.user_id:
        raise Conflict(f"the task is claimed by {row.claimed_by_display}")
    if row.claimed_by == caller.user_id:
        return get(session, task_id)
    session.execute(
        text("UPDATE tasks SET claimed_by = :u, claimed_by_display = :d, claimed_at = now() WHERE id = :t"),
        {"u": caller.user_id, "d": caller.actor.display, "t": task_id},
    )
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="claim", entity_type="task",
                 entity_id=task_id, before={"claimed_by": None}, after={"claimed_by": str(caller.user_id)},
                 context=caller.context)
    return get(session, task_id)


def release(session: Session, caller: Caller, task_id: uuid.UUID) -> TaskRead:
    """Give a claimed task back to the pool: by the person holding it, or a lab manager (runs.control)."""
    from domain.roles import Permission

    row = session.execute(text("SELECT * FROM tasks WHERE id = :t FOR UPDATE"), {"t": task_id}).first()
    if row is None:
        raise NotFound(f"no task {task_id}")
    if row.claimed_by is None:
        return get(session, task_id)
    if row.claimed_by != caller.user_id and not caller.can(Permission.runs_control):
        raise Forbidden(f"the task is claimed by {row.claimed_by_display}; only they or a lab manager can release it")
    session.execute(text("UPDATE tasks SET claimed_by = NULL, claimed_by_display = NULL, claimed_at = NULL"
                         " WHERE id = :t"), {"t": task_id})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="release", entity_type="task",
                 entity_id=task_id, before={"claimed_by": str(row.claimed_by)}, after={"claimed_by": None},
                 context=caller.context)
    return get(session, task_id)
