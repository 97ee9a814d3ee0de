"""Reports' database rows as typed records (domain/rows.py maps them)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DefinitionRow:
    id: uuid.UUID
    org_id: uuid.UUID
    key: str
    version: int
    kind: str
    source: str
    title: str
    description: str | None
    sql: str
    parameters: list[dict[str, Any]]
    layout: dict[str, Any]
    chart: dict[str, Any] | None
    shared_roles: list[str]
    created_by: str
    created_by_display: str
    created_at: dt.datetime
    archived_at: dt.datetime | None


@dataclass(frozen=True)
class ReportRow:
    id: uuid.UUID
    org_id: uuid.UUID
    definition_id: uuid.UUID
    title: str
    parameters: dict[str, Any]
    status: str
    author_id: str
    author_display: str
    created_at: dt.datetime
    updated_at: dt.datetime
    execution_id: uuid.UUID | None
    submitted_at: dt.datetime | None
    finalized_at: dt.datetime | None
    finalized_by: str | None
    signature_id: uuid.UUID | None
    content_hash: str | None
    pdf_sha256: str | None
    pdf_key: str | None
    revision: int


@dataclass(frozen=True)
class ExecutionRow:
    id: uuid.UUID
    org_id: uuid.UUID
    definition_id: uuid.UUID
    report_id: uuid.UUID | None
    purpose: str
    parameters: dict[str, Any]
    table_versions: dict[str, int]
    row_count: int
    duration_ms: float
    result_sha256: str
    result_key: str
    executed_by: str
    executed_by_display: str
    executed_at: dt.datetime
