"""Samples: register, read, list, correct, move along their life, archive; and what other services ask of them
(is this subject / this `sample_ref` an existing, usable record of the organization?).

Every change is one revision (`revision` + 1, the row and its outbox payload) with its audit entry (before, after,
reason) in the caller's transaction. A change names the revision it was made from: a change made meanwhile is
refused (409), so no one overwrites what they did not see. Records are archived, never deleted.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.codes import next_code
from domain.errors import Conflict, Invalid
from domain.events.hooks import on_sample_status
from domain.pagination import Page, after, next_cursor, search_query
from domain.roles import Actor, Caller
from domain.rows import from_row
from domain.runs import records
from domain.samples import custody, tables
from domain.samples.models import (
    SAMPLE_TRANSITIONS,
    UNUSABLE,
    ArchiveChange,
    ComponentRead,
    SampleCreate,
    SampleDetail,
    SampleRead,
    SampleUpdate,
    StatusChange,
)
from domain.samples.rows import SAMPLE_COLUMNS, SampleRow

COMPONENT_KINDS = ("species", "strain", "plasmid", "ingredient", "lot")


def read(row: SampleRow) -> SampleRead:
    """What the API shows of a row: all of it but the organization."""
    return SampleRead.model_construct(**row.model_dump(exclude={"org_id"}))


def payload(row: SampleRow) -> dict[str, object]:
    """The `sample` outbox payload of a samples row (one per revision)."""
    return {"sample_id": row.id, "org_id": row.org_id, "code": row.code, "sample_type": row.sample_type,
            "name": row.name, "status": row.status, "status_reason": row.status_reason,
            "location_id": row.location_id, "owner_id": row.owner_id, "batch_id": row.batch_id,
            "attributes": row.attributes, "created_in_run": row.created_in_run, "created_in_step": row.created_in_step,
            "archived_at": row.archived_at, "created_at": row.created_at, "created_by": row.created_by,
            "updated_at": row.updated_at, "revision": row.revision}


def _view(row: SampleRow) -> dict[str, Any]:
    """What the audit entry shows of a sample (before / after)."""
    return read(row).model_dump(mode="json", exclude={"created_at", "created_by", "updated_at"})


def sample_id_for(org_id: uuid.UUID, request_id: str) -> uuid.UUID:
    """A registration retried with the same request id names the same sample."""
    return uuid.uuid5(org_id, f"sample:{request_id}")


# ---------------------------------------------------------------- reading


SAMPLES = tables.Table("sample", "samples", SampleRow, SAMPLE_COLUMNS, payload)


def row_of(session: Session, sample_id: uuid.UUID | str, *, lock: bool = False) -> SampleRow:
    """The sample as it is now (by id); NotFound when the organization has no such sample."""
    return tables.row_of(session, SAMPLES, sample_id, lock=lock)


def find(session: Session, ref: str) -> SampleRow | None:
    """The sample named by its id or its code (`S-000123`), or None."""
    return tables.find(session, SAMPLES, ref)


def get(session: Session, sample_id: uuid.UUID) -> SampleDetail:
    row = row_of(session, sample_id)
    comps = session.execute(
        text("SELECT i.id AS item_id, i.kind, i.code, i.name, c.quantity FROM sample_components c"
             " JOIN registry_items i ON i.id = c.item_id WHERE c.sample_id = :s ORDER BY i.kind, i.code"),
        {"s": sample_id}).all()
    parents = session.execute(text("SELECT parent_id FROM lineage_edges WHERE child_id = :s ORDER BY recorded_at"),
                              {"s": sample_id}).scalars().all()
    children = session.execute(text("SELECT child_id FROM lineage_edges WHERE parent_id = :s ORDER BY recorded_at"),
                               {"s": sample_id}).scalars().all()
    return SampleDetail(**read(row).model_dump(), components=[ComponentRead(**c._mapping) for c in comps],
                        parents=list(parents), children=list(children))


def list_samples(session: Session, *, status: str | None = None, sample_type: str | None = None,
                 batch_id: uuid.UUID | None = None, location_id: uuid.UUID | None = None,
                 owner_id: uuid.UUID | None = None, archived: bool = False, q: str | None = None,
                 cursor: str | None = None, limit: int = 50) -> Page[SampleRead]:
    """Samples of the organization, newest first, a page at a time."""
    cond, params = after(cursor, "created_at", "id")
    where = ["org_id = current_org()", cond, "archived_at IS NOT NULL" if archived else "archived_at IS NULL"]
    params["lim"] = limit
    for column, value in (("status", status), ("sample_type", sample_type), ("batch_id", batch_id),
                          ("location_id", location_id), ("owner_id", owner_id)):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    query = search_query(q)
    if query:
        where.append("search @@ to_tsquery('simple', :q)")
        params["q"] = query
    rows = [from_row(SampleRow, r) for r in session.execute(
        text(f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE {' AND '.join(where)}"
             " ORDER BY created_at DESC, id DESC LIMIT :lim"), params)]
    return Page[SampleRead](items=[read(r) for r in rows], next_cursor=next_cursor(rows, limit))


# ---------------------------------------------------------------- checks shared with runs, tasks, lineage


def unusable_reason(row: SampleRow) -> str | None:
    """Why work may not use this sample (archived, consumed, disposed, contaminated), or None."""
    if row.archived_at is not None:
        return f"sample {row.code} is archived"
    if row.status in UNUSABLE:
        why = f": {row.status_reason}" if row.status_reason else ""
        return f"sample {row.code} is {row.status}{why}"
    return None


def check_location(session: Session, location_id: uuid.UUID | None) -> None:
    if location_id is None:
        return
    # Locked (key share) until the transaction ends: a location being archived meanwhile waits for this sample to
    # be stored (and then refuses: it is not empty), or this sees it archived (domain/registry/service.py).
    row = session.execute(text("SELECT kind, code, archived_at FROM registry_items WHERE id = :i FOR KEY SHARE"),
                          {"i": location_id}).first()
    if row is None or row.kind != "location":
        raise Invalid("no such storage location", reasons=[f"location {location_id}: not a storage location of "
                                                           "this organization"])
    if row.archived_at is not None:
        raise Invalid("the location is archived", reasons=[f"location {row.code} is archived"])


def check_batch(session: Session, batch_id: uuid.UUID | None) -> None:
    if batch_id is None:
        return
    row = session.execute(text("SELECT code, status, archived_at FROM batches WHERE id = :i"), {"i": batch_id}).first()
    if row is None:
        raise Invalid("no such batch", reasons=[f"batch {batch_id}: not a batch of this organization"])
    if row.archived_at is not None or row.status in ("rejected", "closed"):
        raise Invalid("the batch takes no more samples",
                      reasons=[f"batch {row.code} is {'archived' if row.archived_at else row.status}"])


def member_display(session: Session, user_id: uuid.UUID) -> str:
    """The display name of an active member of the organization; Invalid otherwise."""
    name = session.execute(
        text("SELECT u.display_name FROM memberships m JOIN users u ON u.id = m.user_id"
             " WHERE m.user_id = :u AND m.org_id = current_org() AND m.active"), {"u": user_id}).scalar()
    if name is None:
        raise Invalid("no such member", reasons=[f"{user_id}: not an active member of this organization"])
    return str(name)


# ---------------------------------------------------------------- writing


def _revise(session: Session, sample_id: uuid.UUID, sets: str, params: dict[str, object]) -> SampleRow:
    return tables.revise(session, SAMPLES, sample_id, sets, params)


def _expect(row: SampleRow, revision: int | None) -> None:
    if revision is not None and revision != row.revision:
        raise Conflict(f"sample {row.code} changed since revision {revision} (now {row.revision}): read it again")


def insert(session: Session, actor: Actor, org_id: uuid.UUID, sample_id: uuid.UUID, data: SampleCreate, *,
           owner: tuple[uuid.UUID | None, str | None], run_id: uuid.UUID | None = None,
           step_key: str | None = None) -> SampleRow:
    """Write a new sample (status `received`), its components, its first custody entry and outbox row; no audit."""
    check_location(session, data.location_id)
    check_batch(session, data.batch_id)
    items = [c.item_id for c in data.components]
    if len(set(items)) != len(items):
        raise Invalid("a component is listed twice", reasons=["components: each registry item once"])
    if items:
        found = {r.id: r for r in session.execute(
            text("SELECT id, kind, code, archived_at FROM registry_items WHERE id = ANY(:i)"), {"i": items})}
        bad = [f"components: {i} is not a strain, plasmid, ingredient or lot of this organization" for i in items
               if i not in found or found[i].kind not in COMPONENT_KINDS]
        bad += [f"components: {found[i].code} is archived" for i in items if i in found and found[i].archived_at]
        if bad:
            raise Invalid("the sample's components are not usable", reasons=bad)
    at = records.now()
    code = next_code(session, org_id, "S")
    row = from_row(SampleRow, session.execute(
        text("INSERT INTO samples (id, org_id, code, sample_type, name, status, location_id, owner_id, owner_display,"
             " batch_id, attributes, created_in_run, created_in_step, created_at, created_by, updated_at)"
             " VALUES (:id, :o, :code, :t, :n, 'received', :loc, :own, :ownd, :b, CAST(:a AS jsonb), :run, :step,"
             f" :at, :by, :at) RETURNING {SAMPLE_COLUMNS}"),
        {"id": sample_id, "o": org_id, "code": code, "t": data.sample_type, "n": data.name, "loc": data.location_id,
         "own": owner[0], "ownd": owner[1], "b": data.batch_id, "a": json.dumps(records.jsonable(data.attributes)),
         "run": run_id, "step": step_key, "at": at, "by": actor.id}).one())
    for c in data.components:
        session.execute(text("INSERT INTO sample_components (org_id, sample_id, item_id, quantity, added_at)"
                             " VALUES (:o, :s, :i, :q, :at)"),
                        {"o": org_id, "s": sample_id, "i": c.item_id, "q": c.quantity, "at": at})
    records.outbox(session, org_id, "sample", payload(row))
    if row.location_id is not None or row.owner_id is not None:
        custody.record(session, actor, row, to_location=row.location_id, to_holder=owner, reason="received",
                       run_id=run_id, step_key=step_key, at=at)
    return row


def create(session: Session, caller: Caller, data: SampleCreate) -> tuple[SampleRead, bool]:
    """Register a sample; (it, whether created now: False when this request id registered it before)."""
    sample_id = sample_id_for(caller.org_id, caller.context.request_id or str(uuid.uuid4()))
    existing = session.execute(text(f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE id = :i"), {"i": sample_id}).first()
    if existing is not None:
        return read(from_row(SampleRow, existing)), False
    owner_id = data.owner_id or caller.user_id
    owner = (owner_id, member_display(session, owner_id) if owner_id else None)
    row = insert(session, caller.actor, caller.org_id, sample_id, data, owner=owner)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="sample",
                 entity_id=row.id, after={**_view(row), "components": [c.model_dump(mode="json")
                                                                       for c in data.components]},
                 reason=data.reason, context=caller.context, occurred_at=row.created_at)
    return read(row), True


def update(session: Session, caller: Caller, sample_id: uuid.UUID, data: SampleUpdate) -> SampleRead:
    """Correct the name, details or batch; audited with before/after and the reason."""
    before = row_of(session, sample_id, lock=True)
    _expect(before, data.revision)
    if before.archived_at is not None:
        raise Conflict(f"sample {before.code} is archived: restore it first")
    changes = data.model_dump(exclude_unset=True, exclude={"revision", "reason"})
    if "batch_id" in changes:
        check_batch(session, data.batch_id)
    sets = ["name = coalesce(:n, name)"]
    params: dict[str, object] = {"n": data.name}
    if data.attributes is not None:
        sets.append("attributes = CAST(:a AS jsonb)")
        params["a"] = json.dumps(records.jsonable(data.attributes))
    if "batch_id" in changes:
        sets.append("batch_id = :b")
        params["b"] = data.batch_id
    row = _revise(session, sample_id, ", ".join(sets), params)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="update", entity_type="sample",
                 entity_id=sample_id, before=_view(before), after=_view(row), reason=data.reason,
                 context=caller.context)
    return read(row)


def set_status(session: Session, actor: Actor, org_id: uuid.UUID, before: SampleRow, status: str, reason: str,
               context: Any = None) -> SampleRow:
    """Move a (locked) sample to `status` if its life allows it: Conflict naming both states otherwise."""
    if status not in SAMPLE_TRANSITIONS:
        raise Invalid(f"'{status}' is not a sample status",
                      reasons=[f"status: one of {', '.join(SAMPLE_TRANSITIONS)}"])
    allowed = SAMPLE_TRANSITIONS[before.status]
    if status not in allowed:
        raise Conflict(f"sample {before.code} is {before.status}: it cannot become {status}"
                       f" (from {before.status}: {', '.join(allowed) or 'no further state'})")
    row = _revise(session, before.id, "status = :s, status_reason = :why", {"s": status, "why": reason})
    audit.record(session, org_id=org_id, actor=actor, action="status", entity_type="sample", entity_id=before.id,
                 before={"status": before.status, "status_reason": before.status_reason, "revision": before.revision},
                 after={"status": row.status, "status_reason": row.status_reason, "revision": row.revision},
                 reason=reason, context=context)
    on_sample_status(session, row, reason, context)  # marked contaminated: a contamination event
    return row


def change_status(session: Session, caller: Caller, sample_id: uuid.UUID, data: StatusChange) -> SampleRead:
    before = row_of(session, sample_id, lock=True)
    _expect(before, data.revision)
    if before.archived_at is not None:
        raise Conflict(f"sample {before.code} is archived: restore it first")
    return read(set_status(session, caller.actor, caller.org_id, before, data.status, data.reason, caller.context))


def archive(session: Session, caller: Caller, sample_id: uuid.UUID, data: ArchiveChange, *,
            restore: bool = False) -> SampleRead:
    """Archive (hide from lists and work) or restore a sample; never deleted."""
    return read(tables.set_archived(session, caller, SAMPLES, sample_id, data.reason, restore=restore))
