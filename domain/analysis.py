"""The analyst's questions to the lake, in the platform's words: a table's columns with their labels and units,
a query's answer, why a query was refused, and the one audit entry every query leaves (over Flight SQL or from
the web pages alike).

The lake (lake/query.py) answers them; the web pages receive that service from the API app (`LakeQueries`), so
they import nothing above the domain.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import pyarrow as pa
from sqlalchemy.orm import Session

from domain.audit.recorder import Severity, record
from domain.errors import Invalid
from domain.roles import Actor, RequestContext

QueryOutcome = Literal["ok", "error", "refused", "denied", "unauthenticated"]


@dataclass(frozen=True)
class LakeColumn:
    name: str
    type: str  # SQL (DuckDB) type name
    label: str | None  # the column's comment: a form field's label, or what a platform column holds
    unit: str | None


@dataclass(frozen=True)
class LakeTable:
    name: str
    description: str | None
    columns: tuple[LakeColumn, ...]


@dataclass(frozen=True)
class QueryAnswer:
    """A query's rows, at most the number asked for (`truncated` when there were more)."""

    table: pa.Table
    truncated: bool
    tables: tuple[str, ...]  # the lake tables the query read
    duration_ms: float


class QueryFailed(Invalid):
    """The query did not run to its end: refused by the sandbox (`refused`), or failed (`error`: bad SQL, an unknown
    table, a time limit); the message says why, in the engine's words."""

    def __init__(self, message: str, outcome: QueryOutcome, tables: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.tables = tuple(tables)


class LakeQueries(Protocol):
    """One organization's lake tables as a role may read them, and its SQL over them, in the same sandbox as
    Flight SQL (lake/query.py)."""

    def tables(self, org_id: uuid.UUID, role: str) -> list[LakeTable]: ...

    def run(self, org_id: uuid.UUID, role: str, sql: str, max_rows: int) -> QueryAnswer: ...


def record_query(session: Session, *, org_id: uuid.UUID | str, actor: Actor, sql: str, outcome: QueryOutcome,
                 rows: int, duration_ms: float, tables: Sequence[str], reason: str | None,
                 context: RequestContext | None) -> None:
    """A lake query on record: action `execute` (`deny` when the role may not query) on entity `lake_query`, the
    SQL's hash as its id, the SQL, its outcome, rows and duration."""
    denied = outcome in ("denied", "refused")
    record(session, org_id=org_id, actor=actor, action="deny" if outcome == "denied" else "execute",
           entity_type="lake_query", entity_id=hashlib.sha256(sql.encode()).hexdigest()[:16],
           after={"sql": sql[:10000], "outcome": outcome, "rows": rows, "duration_ms": round(duration_ms, 3),
                  "tables": list(tables)},
           reason=reason, severity=Severity.warning if denied else Severity.info, context=context)
