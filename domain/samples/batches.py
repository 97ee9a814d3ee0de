"""Batches: samples made together (a media batch, a transformation batch), with their own life (open → released or
rejected → closed) and a batch record. Same rules as samples: revisions, audit with before/after and the reason,
optimistic concurrency, archived never deleted. Releasing, rejecting and closing are decisions (samples.manage),
written into the batch record with who decided, when and why.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.codes import next_code
from domain.errors import Conflict, Forbidden, Invalid
from domain.pagination import Page, after, next_cursor, search_query
from domain.roles import Caller, Permission
from domain.rows import from_row
from domain.runs import records
from domain.samples import service as samples
from domain.samples import tables
from domain.samples.models import (
    BATCH_DECISIONS,
    BATCH_TRANSITIONS,
    ArchiveChange,
    BatchCreate,
    BatchDetail,
    BatchRead,
    BatchStatusChange,
    BatchUpdate,
)
from domain.samples.rows import BATCH_COLUMNS, SAMPLE_COLUMNS, BatchRow, SampleRow


def read(row: BatchRow) -> BatchRead:
    """What the API shows of a row: all of it but the organization."""
    return BatchRead.model_construct(**row.model_dump(exclude={"org_id"}))


def payload(row: BatchRow) -> dict[str, object]:
    """The `batch` outbox payload (one per revision)."""
    return {"batch_id": row.id, "org_id": row.org_id, "code": row.code, "batch_type": row.batch_type,
            "name": row.name, "status": row.status, "record": row.record, "created_in_run": row.created_in_run,
            "created_in_step": row.created_in_step, "archived_at": row.archived_at, "created_at": row.created_at,
            "created_by": row.created_by, "updated_at": row.updated_at, "revision": row.revision}


def _view(row: BatchRow) -> dict[str, Any]:
    return read(row).model_dump(mode="json", exclude={"created_at", "created_by", "updated_at"})


BATCHES = tables.Table("batch", "batches", BatchRow, BATCH_COLUMNS, payload)


def row_of(session: Session, batch_id: uuid.UUID | str, *, lock: bool = False) -> BatchRow:
    return tables.row_of(session, BATCHES, batch_id, lock=lock)


def find(session: Session, ref: str) -> BatchRow | None:
    """The batch named by its id or its code (`B-000007`), or None."""
    return tables.find(session, BATCHES, ref)


def unusable_reason(row: BatchRow) -> str | None:
    """Why work may not use this batch (archived, rejected, closed), or None."""
    if row.archived_at is not None:
        return f"batch {row.code} is archived"
    if row.status in ("rejected", "closed"):
        return f"batch {row.code} is {row.status}"
    return None


def get(session: Session, batch_id: uuid.UUID) -> BatchDetail:
    row = row_of(session, batch_id)
    members = session.execute(text(f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE batch_id = :b"
                                   " ORDER BY created_at, id LIMIT 1000"), {"b": batch_id}).all()
    return BatchDetail(**read(row).model_dump(), samples=[samples.read(from_row(SampleRow, m)) for m in members])


def list_batches(session: Session, *, status: str | None = None, batch_type: str | None = None,
                 archived: bool = False, q: str | None = None, cursor: str | None = None,
                 limit: int = 50) -> Page[BatchRead]:
    cond, params = after(cursor, "created_at", "id")
    where = ["org_id = current_org()", cond, "archived_at IS NOT NULL" if archived else "archived_at IS NULL"]
    params["lim"] = limit
    for column, value in (("status", status), ("batch_type", batch_type)):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    query = search_query(q)
    if query:
        where.append("search @@ to_tsquery('simple', :q)")
        params["q"] = query
    rows = [from_row(BatchRow, r) for r in session.execute(
        text(f"SELECT {BATCH_COLUMNS} FROM batches WHERE {' AND '.join(where)}"
             " ORDER BY created_at DESC, id DESC LIMIT :lim"), params)]
    return Page[BatchRead](items=[read(r) for r in rows], next_cursor=next_cursor(rows, limit))


def create(session: Session, caller: Caller, data: BatchCreate) -> tuple[BatchRead, bool]:
    batch_id = uuid.uuid5(caller.org_id, f"batch:{caller.context.request_id or uuid.uuid4()}")
    existing = session.execute(text(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = :i"), {"i": batch_id}).first()
    if existing is not None:
        return read(from_row(BatchRow, existing)), False
    at = records.now()
    row = from_row(BatchRow, session.execute(
        text("INSERT INTO batches (id, org_id, code, batch_type, name, status, record, created_at, created_by,"
             f" updated_at) VALUES (:id, :o, :code, :t, :n, 'open', CAST(:r AS jsonb), :at, :by, :at)"
             f" RETURNING {BATCH_COLUMNS}"),
        {"id": batch_id, "o": caller.org_id, "code": next_code(session, caller.org_id, "B"), "t": data.batch_type,
         "n": data.name, "r": json.dumps(records.jsonable(data.record)), "at": at, "by": caller.actor.id}).one())
    records.outbox(session, caller.org_id, "batch", payload(row))
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="batch",
                 entity_id=batch_id, after=_view(row), reason=data.reason, context=caller.context, occurred_at=at)
    return read(row), True


def _revise(session: Session, batch_id: uuid.UUID, sets: str, params: dict[str, object]) -> BatchRow:
    return tables.revise(session, BATCHES, batch_id, sets, params)


def _editable(before: BatchRow, revision: int | None) -> None:
    if revision is not None and revision != before.revision:
        raise Conflict(f"batch {before.code} changed since revision {revision} (now {before.revision}): read it again")
    if before.archived_at is not None:
        raise Conflict(f"batch {before.code} is archived: restore it first")


def update(session: Session, caller: Caller, batch_id: uuid.UUID, data: BatchUpdate) -> BatchRead:
    """Correct the name or the batch record (open batches only: a decided batch's record is what was decided)."""
    before = row_of(session, batch_id, lock=True)
    _editable(before, data.revision)
    if before.status != "open" and data.record is not None:
        raise Conflict(f"batch {before.code} is {before.status}: its record can no longer change")
    row = _revise(session, batch_id, "name = coalesce(:n, name), record = coalesce(CAST(:r AS jsonb), record)",
                  {"n": data.name, "r": json.dumps(records.jsonable(data.record)) if data.record is not None else None})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="update", entity_type="batch",
                 entity_id=batch_id, before=_view(before), after=_view(row), reason=data.reason,
                 context=caller.context)
    return read(row)


def change_status(session: Session, caller: Caller, batch_id: uuid.UUID, data: BatchStatusChange) -> BatchRead:
    """Release, reject or close the batch; the decision goes into its record."""
    if data.status not in BATCH_TRANSITIONS:
        raise Invalid(f"'{data.status}' is not a batch status",
                      reasons=[f"status: one of {', '.join(BATCH_TRANSITIONS)}"])
    if data.status in BATCH_DECISIONS and not caller.can(Permission.samples_manage):
        raise Forbidden(f"your role ({caller.role}) may not do this ({Permission.samples_manage})")
    before = row_of(session, batch_id, lock=True)
    _editable(before, data.revision)
    allowed = BATCH_TRANSITIONS[before.status]
    if data.status not in allowed:
        raise Conflict(f"batch {before.code} is {before.status}: it cannot become {data.status}"
                       f" (from {before.status}: {', '.join(allowed) or 'no further state'})")
    decision = {"by": caller.actor.id, "by_display": caller.actor.display, "at": records.jsonable(records.now()),
                "reason": data.reason}
    row = _revise(session, batch_id, "status = :s, record = record || CAST(:d AS jsonb)",
                  {"s": data.status, "d": json.dumps({data.status: decision})})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="status", entity_type="batch",
                 entity_id=batch_id, before={"status": before.status, "revision": before.revision},
                 after={"status": row.status, "revision": row.revision}, reason=data.reason, context=caller.context)
    return read(row)


def archive(session: Session, caller: Caller, batch_id: uuid.UUID, data: ArchiveChange, *,
            restore: bool = False) -> BatchRead:
    return read(tables.set_archived(session, caller, BATCHES, batch_id, data.reason, restore=restore))
