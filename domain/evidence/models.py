"""Shapes of evidence over the API."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

TargetType = Literal["task", "checklist_item", "sample", "batch"]
TARGET_TYPES: tuple[TargetType, ...] = ("task", "checklist_item", "sample", "batch")
TARGETS_DOC = ("what the file is evidence of: `task` (a step of a run: its completion), `checklist_item` (an item "
               "of a task's checklist: `target_id` the task, `checklist_item` the item's key), `sample`, `batch`")


class EvidenceLinkRead(BaseModel):
    """One thing a file is evidence of."""

    id: uuid.UUID
    target_type: str = Field(description="task, checklist_item, sample or batch")
    target_id: str = Field(description="the task, sample or batch id (a checklist item's task)")
    detail: str | None = Field(description="a checklist item's key; for a form field's reference, `values.<key>`")
    linked_at: dt.datetime
    linked_by: str = Field(description="who linked it (user or API key id)")


class EvidenceRead(BaseModel):
    """An uploaded file: what its bytes are (SHA-256, size, type by content), who uploaded it, and its links."""

    id: uuid.UUID
    sha256: str = Field(description="SHA-256 of the bytes, hex: the download's ETag, and what the audit log names")
    size_bytes: int
    content_type: str = Field(description="the type of the bytes, read from the content")
    filename: str
    uploaded_at: dt.datetime
    uploaded_by: str
    uploaded_by_display: str
    links: list[EvidenceLinkRead]
    content_url: str = Field(description="where to download the bytes")


@dataclass(frozen=True)
class LinkTarget:
    """What an upload (or a completion) links a file to, checked to exist in the organization."""

    type: TargetType
    id: str
    detail: str | None = None


@dataclass(frozen=True)
class EvidenceFilter:
    target_type: TargetType | None = None
    target_id: str | None = None
    uploaded_by: str | None = None
    sha256: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
