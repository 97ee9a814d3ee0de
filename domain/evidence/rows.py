"""Evidence's database rows as typed records (domain/rows.py maps them)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class EvidenceRow:
    """An evidence_files row: one upload (the bytes are in the object store under the org's prefix and sha256)."""

    id: uuid.UUID
    org_id: uuid.UUID
    sha256: str
    size_bytes: int
    content_type: str
    filename: str
    uploaded_at: dt.datetime
    uploaded_by: str
    uploaded_by_display: str
    request_id: str | None


@dataclass(frozen=True)
class LinkRow:
    """An evidence_links row: what one file is evidence of."""

    id: uuid.UUID
    evidence_id: uuid.UUID
    target_type: str
    target_id: str
    detail: str | None
    linked_at: dt.datetime
    linked_by: str
