"""Tasks of runs: the inbox, claiming, completion with its gates, escalation (opening and closing them with the
run: domain/tasks/lifecycle.py; what completions share with approval decisions: domain/tasks/actions.py).

Completion is one transaction: the gates read the database (role allowed for the step, every checklist
item confirmed — the step's own and the compliance surface's —, the run not on hold, the task open and
not claimed by someone else, the form values valid); then the form submission, the step event, the audit
entry, their outbox rows and the request's answer are written together. A refusal writes only its audit
entry and answers every reason at once. A retried request (same request id) gets the first answer back.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit, compliance, pagination
from domain.audit import Severity
from domain.errors import Conflict, Forbidden, NotFound
from domain.evidence import service as evidence
from domain.notifications import Notification, Notifier
from domain.protocols.forms import normalize_values, validate_submission
from domain.protocols.plan import ChecklistItem, TaskNode
from domain.roles import SYSTEM_ACTOR, Caller, Permission
from domain.rows import from_row
from domain.runs import records
from domain.runs.messages import CompleteTask, Escalate, Outcome
from domain.runs.models import subject_filter
from domain.runs.rows import RunRow
from domain.samples import refs
from domain.samples import steps as material
from domain.tasks import lifecycle
from domain.tasks.actions import common_gates, prior_answer, refusal, remember_answer
from domain.tasks.models import TaskFilter, TaskRead
from domain.tasks.rows import TASK_COLUMNS, TASK_WITH_RUN, TaskPlace, TaskRow, task_with_run

# ---------------------------------------------------------------- the workflow's side (completion, escalation)


def _locked_task(session: Session, task_id: str) -> tuple[TaskRow, RunRow] | None:
    """The task, locked, with its run (what the gates and the compliance hook read)."""
    row = session.execute(text(f"{TASK_WITH_RUN} WHERE t.id = :t FOR UPDATE OF t"), {"t": task_id}).first()
    return task_with_run(row) if row else None


class RequestReused(Exception):
    """The request id already answered a request about another task: the completion rolls back."""


def checklist_for(session: Session, run: RunRow, step: TaskNode) -> list[ChecklistItem]:
    return [*step.checklist, *compliance.extra_checklist_items(session, run, step)]


def complete(session: Session, msg: CompleteTask) -> Outcome:
    """Gates, then every record of the completion in this one transaction (see the module doc).
    Raises RequestReused when the request id answered another task (the caller refuses it in a new transaction)."""
    c, run = msg.completion, msg.run
    found = _locked_task(session, c.task_id)
    if found is None:
        raise NotFound(f"no task {c.task_id}")
    task, run_row = found
    if task.status != "open":
        prior = prior_answer(session, c.request.request_id)
        if prior is not None and prior[0] == c.task_id:
            return prior[1]  # this very request completed it: the first answer again
    forbidden, conflicts = common_gates(task, run_row, c.actor)
    more_forbidden, more_conflicts = compliance.completion_gates(session, run_row, msg.step, c.actor.user_id)
    forbidden += more_forbidden
    conflicts += [why for why in more_conflicts if not why.startswith("run:") or not any(
        x.startswith("run:") for x in conflicts)]
    step = msg.step.model_copy(update={"checklist": checklist_for(session, run_row, msg.step)})
    invalid = [str(p) for p in validate_submission(step, c.values, c.checklist)]
    named = {why.split(":")[0] for why in invalid}
    # the material the form names exists in the organization and may still be used
    invalid += [why for why in refs.form_problems(session, step, c.values) if why.split(":")[0] not in named]
    if not invalid:
        invalid += material.problems(step, normalize_values(step, c.values))
    # Evidence ids must name files of this organization; their links are written below, with the completion.
    evidence_refs, misplaced = evidence.completion_refs(c.task_id, step, c.values, c.evidence, c.checklist_evidence)
    files, unknown = evidence.known(session, evidence_refs)
    invalid += misplaced + unknown
    if forbidden or conflicts or invalid:
        return refusal(session, run, task, step_key=step.key, iteration=msg.iteration, actor=c.actor,
                       request=c.request, forbidden=forbidden, conflicts=conflicts, invalid=invalid,
                       doing="completion")
    actor = c.actor.actor()
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
    made = material.apply(session, run, task_id=c.task_id, step=step, values=values, actor=actor)  # same transaction
    hashes = evidence.link_refs(session, run.org_id, evidence_refs, files, actor, at)
    detail = {"task_id": c.task_id, "submission_id": submission_id, "checklist": confirmed, "evidence": c.evidence,
              "request_id": c.request.request_id, **{k: v for k, v in made.items() if v}}
    records.step_event(session, run, key=f"completed:{c.task_id}", event="completed", step_key=step.key,
                       step_kind="task", iteration=msg.iteration, actor=actor, detail=detail, task_id=c.task_id,
                       occurred_at=at)
    audit.record(session, org_id=run.org_id, actor=actor, action="complete", entity_type="task", entity_id=c.task_id,
                 before={"status": "open"},
                 after={"status": "completed", "run_id": run.run_id, "step_key": step.key, "iteration": msg.iteration,
                        "submission_id": submission_id, "values": values, "checklist": confirmed,
                        "evidence": c.evidence, "evidence_sha256": hashes},
                 context=c.request, occurred_at=at)
    required = [k for k in confirmed if k.startswith(compliance.PREFIX)]
    if required:
        audit.record(session, org_id=run.org_id, actor=SYSTEM_ACTOR, action="compliance_gate_passed",
                     entity_type="task", entity_id=c.task_id, after={"confirmed": required, "by": actor.display},
                     reason="every compliance checklist item the surface requires was confirmed", occurred_at=at)
    outcome = Outcome(ok=True, task_id=c.task_id, run_id=run.run_id, step_key=step.key, iteration=msg.iteration,
                      result="completed", submission_id=submission_id, closed_at=at, values=values,
                      actor_id=c.actor.id)
    if not remember_answer(session, run, outcome, c.request.request_id):
        raise RequestReused(c.request.request_id)
    for opening in msg.open_next:
        lifecycle.open_task(session, opening)
    return outcome


def refuse_reused(session: Session, msg: CompleteTask) -> Outcome:
    c = msg.completion
    found = _locked_task(session, c.task_id)
    return refusal(session, msg.run, found[0] if found else None, step_key=msg.step.key, iteration=msg.iteration,
                   actor=c.actor, request=c.request, forbidden=[], invalid=[],
                   conflicts=[f"request: id {c.request.request_id} already answered a request about another task"],
                   doing="completion")


def escalate(session: Session, msg: Escalate, notifier: Notifier) -> bool:
    """An overdue task or approval: raise the alert (audit entry by the system, step event), notify the
    roles of this level, once. False when this level had fired before."""
    first = records.step_event(
        session, msg.run, key=f"escalated:{msg.task_id}:{msg.level}", event="escalated", step_key=msg.step_key,
        step_kind=msg.step_kind, iteration=msg.iteration, actor=SYSTEM_ACTOR, task_id=msg.task_id,
        detail={"task_id": msg.task_id, "level": msg.level, "notify_roles": msg.notify_roles, "due_at": msg.due_at,
                "scheduled_at": msg.scheduled_at, "fired_at": msg.fired_at})
    if not first:
        return False
    session.execute(
        text("UPDATE tasks SET escalation_level = greatest(escalation_level, :l), escalated_at = :at WHERE id = :t"),
        {"l": msg.level, "at": records.now(), "t": msg.task_id},
    )
    overdue_for = (msg.scheduled_at or msg.fired_at) - msg.due_at  # the level's own delay, not the pick-up delay
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


# ---------------------------------------------------------------- the inbox


def _read(session: Session, task: TaskRow, run: RunRow, now: dt.datetime) -> TaskRead:
    spec = task.spec
    checklist = [{"key": i["key"], "text": i["text"]} for i in spec.get("checklist", [])]
    if task.kind == "task" and task.status == "open":
        extra = compliance.extra_checklist_items(session, run, TaskNode.model_validate(spec))
        checklist += [{"key": i.key, "text": i.text} for i in extra]
    return TaskRead(
        id=task.id, run_id=task.run_id, protocol_key=run.protocol_key, protocol_version=run.protocol_version,
        step_key=task.step_key, iteration=task.iteration, kind=task.kind, title=task.title,
        instructions=spec.get("instructions", ""), roles=list(task.roles), form=spec.get("form"), checklist=checklist,
        meaning=spec.get("meaning"), status=task.status, opened_at=task.opened_at, due_at=task.due_at,
        overdue=task.status == "open" and task.due_at is not None and task.due_at < now,
        escalation_level=task.escalation_level, claimed_by=task.claimed_by,
        claimed_by_display=task.claimed_by_display, closed_at=task.closed_at, closed_by_display=task.closed_by_display,
    )


def inbox(session: Session, caller: Caller, f: TaskFilter, *, q: str | None = None, cursor: str | None = None,
          limit: int = 200) -> list[TaskRead]:
    """Tasks of the caller's organization, most urgent first (by due time, undated last, then oldest opened);
    `q` matches words of the title, step, claimant and the run's protocol and subjects; `cursor` continues after
    the last task of the page before (see `page_cursor`)."""
    where = ["t.org_id = current_org()"]
    params: dict[str, object] = {"lim": limit}
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
    words = pagination.search_query(q)
    if words:
        where.append("(t.search @@ to_tsquery('simple', :q) OR r.search @@ to_tsquery('simple', :q))")
        params["q"] = words
    if cursor is not None:
        where.append(_AFTER_DATED if (after := _decode(cursor))[0] is not None else _AFTER_UNDATED)
        params.update(cursor_due=after[0], cursor_opened=after[1], cursor_id=after[2])
    rows = session.execute(
        text(f"{TASK_WITH_RUN} WHERE {' AND '.join(where)} ORDER BY t.due_at NULLS LAST, t.opened_at, t.id"
             " LIMIT :lim"),
        params,
    ).all()
    now = records.now()
    return [_read(session, *task_with_run(r), now) for r in rows]


# Keyset continuation in (due_at NULLS LAST, opened_at, id) order: after a dated task come later-dated ones,
# then every undated one; after an undated one, only undated ones.
_AFTER_DATED = ("(t.due_at > :cursor_due OR t.due_at IS NULL"
                " OR (t.due_at = :cursor_due AND (t.opened_at, t.id) > (:cursor_opened, :cursor_id)))")
_AFTER_UNDATED = "(t.due_at IS NULL AND (t.opened_at, t.id) > (:cursor_opened, :cursor_id))"


def _decode(cursor: str) -> list[pagination.Value]:
    return pagination.decode_values(cursor, [dt.datetime, dt.datetime, uuid.UUID], nullable=frozenset({0}))


def page_cursor(page: list[TaskRead], limit: int) -> str | None:
    """The cursor of the page after `page` (a full page of `inbox`), or None on the last page."""
    if len(page) < limit or not page:
        return None
    last = page[-1]
    return pagination.encode_values([last.due_at, last.opened_at, last.id])


def get(session: Session, task_id: uuid.UUID) -> TaskRead:
    row = session.execute(text(f"{TASK_WITH_RUN} WHERE t.id = :t"), {"t": task_id}).first()
    if row is None:
        raise NotFound(f"no task {task_id}")
    return _read(session, *task_with_run(row), records.now())


def locate(session: Session, task_id: uuid.UUID) -> TaskPlace:
    """The task's run and kind, for the API to address the run's workflow; NotFound (audited) otherwise."""
    row = session.execute(
        text("SELECT t.id, t.run_id, t.kind, t.status, r.status AS run_status FROM tasks t"
             " JOIN runs r ON r.id = t.run_id WHERE t.id = :t"), {"t": task_id},
    ).first()
    if row is None:
        raise NotFound(f"no task {task_id}")
    return from_row(TaskPlace, row)


def _task_for_update(session: Session, task_id: uuid.UUID) -> TaskRow:
    row = session.execute(text(f"SELECT {TASK_COLUMNS} FROM tasks t WHERE id = :t FOR UPDATE"), {"t": task_id}).first()
    if row is None:
        raise NotFound(f"no task {task_id}")
    return from_row(TaskRow, row)


def claim(session: Session, caller: Caller, task_id: uuid.UUID) -> TaskRead:
    """Take an open task for yourself (others see who has it); the role must be allowed for the step."""
    row = _task_for_update(session, task_id)
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
    row = _task_for_update(session, task_id)
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
