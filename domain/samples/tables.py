"""What samples and batches share, written once: reading a record by id or by its code, writing a revision (and its
outbox row), archiving and restoring with an audit entry. Each takes the record's `Table`: `SAMPLES`
(domain/samples/service.py) or `BATCHES` (domain/samples/batches.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.errors import NotFound
from domain.roles import Caller
from domain.rows import from_row
from domain.runs import records
from domain.samples.rows import BatchRow, SampleRow

R = TypeVar("R", SampleRow, BatchRow)


@dataclass(frozen=True)
class Table(Generic[R]):
    kind: Literal["sample", "batch"]  # the audit trail's entity type and the outbox topic
    name: str  # the database table
    row: type[R]
    columns: str  # its SELECT list (domain/rows.py `columns`)
    payload: Callable[[R], dict[str, object]]  # the outbox payload of one revision


def row_of(session: Session, table: Table[R], ident: uuid.UUID | str, *, lock: bool = False) -> R:
    """The record as it is now (by id); NotFound when the organization has none (row-level security)."""
    row = session.execute(text(f"SELECT {table.columns} FROM {table.name} WHERE id = :i"
                               + (" FOR UPDATE" if lock else "")), {"i": str(ident)}).first()
    if row is None:
        raise NotFound(f"no {table.kind} {ident}")
    return from_row(table.row, row)


def find(session: Session, table: Table[R], ref: str) -> R | None:
    """The record named by its id or its code (`S-000123`, `B-000007`), or None."""
    try:
        ident: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        ident = None
    where = "id = :v" if ident else "code = :v AND org_id = current_org()"
    row = session.execute(text(f"SELECT {table.columns} FROM {table.name} WHERE {where}"),
                          {"v": str(ident) if ident else ref}).first()
    return from_row(table.row, row) if row else None


def revise(session: Session, table: Table[R], ident: uuid.UUID, sets: str, params: dict[str, object]) -> R:
    """A new revision: `sets` applied, `revision` + 1, `updated_at` now; its outbox row."""
    row = from_row(table.row, session.execute(
        text(f"UPDATE {table.name} SET {sets}, revision = revision + 1, updated_at = :now WHERE id = :i"
             f" RETURNING {table.columns}"), {**params, "now": records.now(), "i": ident}).one())
    records.outbox(session, row.org_id, table.kind, table.payload(row))
    return row


def set_archived(session: Session, caller: Caller, table: Table[R], ident: uuid.UUID, reason: str, *,
                 restore: bool) -> R:
    """Archive (out of lists and work, never deleted) or restore the record, audited with the reason; a record
    already so is answered as it is."""
    before = row_of(session, table, ident, lock=True)
    if (before.archived_at is None) == restore:
        return before
    row = revise(session, table, ident, "archived_at = CASE WHEN :r THEN NULL ELSE :now END", {"r": restore})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="restore" if restore else "archive",
                 entity_type=table.kind, entity_id=ident, before={"archived_at": records.jsonable(before.archived_at)},
                 after={"archived_at": records.jsonable(row.archived_at)}, reason=reason, context=caller.context)
    return row
