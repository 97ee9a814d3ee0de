"""The samples' and batches' database rows as typed records (domain/rows.py maps them)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from pydantic import ConfigDict

from domain.rows import columns
from domain.samples.models import BatchRead, SampleRead


class SampleRow(SampleRead):
    """A samples row: one revision of the sample (the lake keeps each), as the API shows it and its organization."""

    model_config = ConfigDict(frozen=True)

    org_id: uuid.UUID


class BatchRow(BatchRead):
    """A batches row: one revision of the batch and its record, as the API shows it and its organization."""

    model_config = ConfigDict(frozen=True)

    org_id: uuid.UUID


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
