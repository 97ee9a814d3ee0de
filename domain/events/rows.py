"""The compliance events' database rows as typed records (domain/rows.py maps them)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from domain.rows import columns


@dataclass(frozen=True)
class EventRow:
    id: uuid.UUID
    org_id: uuid.UUID
    code: str
    kind: str
    severity: str
    title: str
    description: str
    status: str
    source: str
    source_key: str | None
    reporter_type: str
    reporter_id: str
    reporter_display: str
    root_cause: str | None
    effective: bool | None
    effectiveness_note: str | None
    closed_at: dt.datetime | None
    closed_by: str | None
    closed_by_display: str | None
    signature_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime
    revision: int


@dataclass(frozen=True)
class ActionRow:
    id: uuid.UUID
    org_id: uuid.UUID
    event_id: uuid.UUID
    kind: str
    description: str
    owner_id: uuid.UUID
    owner_display: str
    due_at: dt.datetime
    status: str
    done_at: dt.datetime | None
    done_by: str | None
    done_note: str | None
    escalation_level: int
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    revision: int


EVENT_COLUMNS = columns(EventRow)
ACTION_COLUMNS = columns(ActionRow)
