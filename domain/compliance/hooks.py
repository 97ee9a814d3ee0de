"""The compliance surface's hooks into protocol runs, called by domain/tasks (the completion gates, the inbox,
opening a task): the checklist items the surface adds to a step, and the gates the surface and the people's
qualifications put on a completion."""

from __future__ import annotations

from sqlalchemy.orm import Session

from domain.compliance import checklists, qualifications
from domain.compliance.authorizations import hold_of
from domain.protocols.plan import ChecklistItem, TaskNode
from domain.runs.rows import RunRow


def extra_checklist_items(session: Session, run: RunRow, step: TaskNode) -> list[ChecklistItem]:
    """Checklist items beyond the step's own for this run: the compliance items whose scope matches its surface."""
    return checklists.extra_checklist_items(session, run, step)


def completion_gates(session: Session, run: RunRow, step: TaskNode, user_id: str | None) -> tuple[list[str], list[str]]:
    """(forbidden, conflicts) the compliance engine adds: a qualification the step requires that the person lacks
    (forbidden, naming it), the run on authorization hold (conflict, naming what it waits for)."""
    forbidden = qualifications.missing(session, step, user_id)
    conflicts = []
    held = hold_of(session, run.id)
    if held:
        conflicts.append(f"run: on authorization hold ({'; '.join(held)}); it resumes once granted")
    return forbidden, conflicts


def task_opened(session: Session, run: RunRow, task_id: str, step: TaskNode) -> None:
    """A task opened: the compliance items its scope attaches, each on record by the system."""
    checklists.sync_task(session, run, task_id, step, "task opened")
