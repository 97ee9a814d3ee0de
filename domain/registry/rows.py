"""Registry records as typed rows (domain/rows.py maps them)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from domain.rows import columns


@dataclass(frozen=True)
class ItemRow:
    """A registry_items row as it is now (one revision of the record)."""

    id: uuid.UUID
    org_id: uuid.UUID
    kind: str
    code: str
    name: str
    parent_id: uuid.UUID | None
    status: str
    attributes: dict[str, object]
    archived_at: dt.datetime | None
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    revision: int


ITEM_COLUMNS = columns(ItemRow)
