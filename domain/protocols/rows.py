"""Protocols' database rows as typed records (domain/rows.py maps them)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class ProtocolRow:
    """A protocol, with the name of the person who created it."""

    id: uuid.UUID
    key: str
    title: str
    created_by: uuid.UUID | None
    created_by_name: str | None
    created_at: dt.datetime


PROTOCOL_SELECT = ("SELECT p.id, p.key, p.title, p.created_by, u.display_name AS created_by_name, p.created_at"
                   " FROM protocols p LEFT JOIN users u ON u.id = p.created_by WHERE p.org_id = current_org()")


@dataclass(frozen=True)
class ProtocolVersionRow:
    """A protocol version with its protocol's key, its author's name and its approval signature (when signed)."""

    id: uuid.UUID
    protocol_id: uuid.UUID
    protocol_key: str
    version: int
    status: str
    definition: dict[str, object]  # the document as authored
    content_hash: str
    plan: dict[str, object] | None  # the compiled ExecutionPlan, from submission on
    author_id: uuid.UUID | None
    author_name: str | None
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    approved_at: dt.datetime | None
    retired_at: dt.datetime | None
    approval_signature_id: uuid.UUID | None
    # the approval signature's, all None until approved
    signer_id: uuid.UUID | None
    signer_name: str | None
    meaning: str | None
    signed_at: dt.datetime | None
    signed_hash: str | None
    signature_reason: str | None
