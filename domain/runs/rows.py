"""The run's database rows as typed records (domain/rows.py maps them), and reading the run's."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.errors import NotFound
from domain.rows import columns, from_row


@dataclass(frozen=True)
class RunRow:
    """A runs row: one revision of the run's status (the lake keeps each)."""

    id: uuid.UUID
    org_id: uuid.UUID
    protocol_version_id: uuid.UUID
    protocol_key: str
    protocol_version: int
    protocol_title: str
    status: str
    status_reason: str | None
    subjects: list[dict[str, str]]  # [{"type": "sample" | "batch", "id": …}]
    parameters: dict[str, object]  # free-form, as launched
    time_scale: float
    launched_by: str
    launched_by_display: str
    launched_at: dt.datetime
    updated_at: dt.datetime
    ended_at: dt.datetime | None
    revision: int


RUN_COLUMNS = columns(RunRow)


def run_row(session: Session, run_id: uuid.UUID | str) -> RunRow:
    """The run as it is now; NotFound when the org has no such run."""
    row = session.execute(text(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = :r"), {"r": str(run_id)}).first()
    if row is None:
        raise NotFound(f"no run {run_id}")
    return from_row(RunRow, row)


@dataclass(frozen=True)
class VersionRow:
    """A protocol version a run may be launched from, with its protocol's key and title."""

    id: uuid.UUID
    version: int
    status: str
    plan: dict[str, object] | None  # the compiled ExecutionPlan, once approved
    key: str
    title: str
