"""The samples' and batches' database rows as typed records (domain/rows.py maps them)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from domain.rows import columns


@dataclass(frozen=True)
class SampleRow:
    """A samples row: one revision of the sample (the lake keeps each)."""

    id: uuid.UUID
    org_id: uuid.UUID
    code: str
    sample_type: str
    name: str
    status: str
    status_reason: str | None
    location_id: uuid.UUID | None
    owner_id: uuid.UUID | None
    owner_display: str | None
    batch_id: uuid.UUID | None
    attributes: dict[str, Any]
    created_in_run: uuid.UUID | None
    created_in_step: str | None
    archived_at: dt.datetime | None
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    revision: int


@dataclass(frozen=True)
class BatchRow:
    """A batches row: one revision of the batch and its record."""

    id: uuid.UUID
    org_id: uuid.UUID
    code: str
    batch_type: str
    name: str
    status: str
    record: dict[str, Any]
    created_in_run: uuid.UUID | None
    created_in_step: str | None
    archived_at: dt.datetime | None
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    revision: int


@dataclass(frozen=True)
class MovementRow:
    """A sample_movements row: one move or hand-over (append-only)."""

    id: uuid.UUID
    org_id: uuid.UUID
    sample_id: uuid.UUID
    from_location_id: uuid.UUID | None
    to_location_id: uuid.UUID | None
    from_holder_id: uuid.UUID | None
    to_holder_id: uuid.UUID | None
    to_holder_display: str | None
    moved_at: dt.datetime
    moved_by: str
    moved_by_display: str
    reason: str | None
    run_id: uuid.UUID | None
    step_key: str | None


SAMPLE_COLUMNS = columns(SampleRow)
BATCH_COLUMNS = columns(BatchRow)
MOVEMENT_COLUMNS = columns(MovementRow, "m")
