"""A run's tasks as the run opens and closes them: opening a task or approval (the workflow's activity), the
ones open now, closing them when the run ends. Each with its step event (and audit entry) in the caller's
transaction; used by runs, tasks and approvals alike."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit, compliance
from domain.protocols.plan import TaskNode
from domain.roles import SYSTEM_ACTOR, Actor
from domain.runs import records
from domain.runs.messages import ENDED, OpenStep, RunRef, TaskBrief
from domain.runs.rows import run_row


def open_task(session: Session, msg: OpenStep) -> TaskBrief:
    """Record an opened task or approval for the inbox, once (its step event and audit entry with it)."""
    step = msg.step
    spec = step.model_dump(mode="json", exclude={"when"})
    brief = TaskBrief(task_id=msg.task_id, step_key=step.key, kind=step.kind, title=step.title,
                      iteration=msg.iteration, due_at=msg.due_at)
    # Serialized with controls (they lock the run row): a run cancelled meanwhile opens nothing more.
    run_status = session.execute(text("SELECT status FROM runs WHERE id = :r FOR SHARE"), {"r": msg.run.run_id}).one()
    if run_status.status in ENDED:
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
    if isinstance(step, TaskNode):
        compliance.task_opened(session, run_row(session, msg.run.run_id), msg.task_id, step)
    return brief


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


def open_briefs_of(session: Session, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[TaskBrief]]:
    """`open_briefs` of many runs in one query (a page of the runs board), by run id."""
    rows = session.execute(
        text("SELECT run_id, id, step_key, kind, title, iteration, due_at FROM tasks"
             " WHERE run_id = ANY(:r) AND status = 'open' ORDER BY run_id, opened_at, step_key"), {"r": run_ids},
    ).all()
    out: dict[uuid.UUID, list[TaskBrief]] = {}
    for r in rows:
        out.setdefault(r.run_id, []).append(TaskBrief(task_id=str(r.id), step_key=r.step_key, kind=r.kind,
                                                      title=r.title, iteration=r.iteration, due_at=r.due_at))
    return out


def open_briefs(session: Session, run_id: str | uuid.UUID) -> list[TaskBrief]:
    rows = session.execute(
        text("SELECT id, step_key, kind, title, iteration, due_at FROM tasks WHERE run_id = :r AND status = 'open'"
             " ORDER BY opened_at, step_key"), {"r": str(run_id)},
    ).all()
    return [TaskBrief(task_id=str(r.id), step_key=r.step_key, kind=r.kind, title=r.title, iteration=r.iteration,
                      due_at=r.due_at) for r in rows]
