"""What a report execution needs from the lake (lake/reports.py implements it): the org's tables, a query checked
by the sandbox, and rows read at pinned Delta versions."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from domain.analysis import LakeTable, QueryAnswer


@dataclass(frozen=True)
class LakeResult:
    """Every row of one execution, and the Delta version of every table it read."""

    table: pa.Table
    versions: dict[str, int]  # base table → Delta version
    tables: tuple[str, ...]  # the names the SQL used
    duration_ms: float


class ReportLake(Protocol):
    def tables(self, org_id: uuid.UUID, role: str) -> list[LakeTable]: ...

    def run(self, org_id: uuid.UUID, role: str, sql: str, max_rows: int) -> QueryAnswer: ...

    def check(self, org_id: uuid.UUID, role: str, sql: str) -> tuple[str, ...]: ...

    def execute(self, org_id: uuid.UUID, role: str, sql: str, *, pinned: Mapping[str, int] | None = None,
                max_rows: int) -> LakeResult: ...
