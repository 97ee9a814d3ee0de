"""A task's database rows as typed records (domain/rows.py maps them)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Row

from domain.rows import columns, from_row
from domain.runs.rows import RunRow


@dataclass(frozen=True)
class TaskRow:
    """A tasks row: one opening of a human step (task or approval) of a run."""

    id: uuid.UUID
    org_id: uuid.UUID
    run_id: uuid.UUID
    step_key: str
    iteration: int
    kind: str  # "task" | "approval"
    title: str
    roles: list[str]
    spec: dict[str, Any]  # the step as the pinned plan has it (form, checklist, meaning, reviews…)
    status: str
    opened_at: dt.datetime
    due_at: dt.datetime | None
    escalation_level: int
    escalated_at: dt.datetime | None
    claimed_by: uuid.UUID | None
    claimed_by_display: str | None
    claimed_at: dt.datetime | None
    closed_at: dt.datetime | None
    closed_by: str | None
    closed_by_display: str | None


TASK_COLUMNS = columns(TaskRow, "t")  # of `tasks t`

# A task with its run, in one query: what the gates, the compliance hook and the inbox read.
TASK_WITH_RUN = (f"SELECT {TASK_COLUMNS}, {columns(RunRow, 'r', prefix='r_')} FROM tasks t"
                 " JOIN runs r ON r.id = t.run_id")


def task_with_run(row: Row[Any]) -> tuple[TaskRow, RunRow]:
    """A row of TASK_WITH_RUN as the task and its run."""
    return from_row(TaskRow, row), from_row(RunRow, row, prefix="r_")


@dataclass(frozen=True)
class TaskPlace:
    """Where a task is: its run (whose workflow takes its actions) and whether either still takes work."""

    id: uuid.UUID
    run_id: uuid.UUID
    kind: str
    status: str
    run_status: str
