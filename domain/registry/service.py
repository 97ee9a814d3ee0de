"""The registries' rules: create, change, archive and restore records, find them by code, list them.

- Every record belongs to one organization (row-level security, and every query names `current_org()` too): a
  record of another organization is answered as one that does not exist.
- A record is never deleted: it is archived (hidden from lists unless asked for) and may be restored, each with
  its reason. A record holding records that are not archived (a freezer with boxes, a species with strains)
  cannot be archived; one whose parent is archived cannot be restored.
- Changes are optimistic: a change names the revision it was made from, and a record that changed since is not
  overwritten (409). Each change is a new revision, in the audit trail (before, after, reason) and the outbox
  (the lake's `registry_items` table keeps every revision).
- Attributes are checked by the kind's model (domain/registry/models.py); references (a parent, a supplier, a
  location) must be records of the right kind in the organization, not archived when newly set.
- A location sits only in the level above it (`LOCATION_PARENTS`): a box on a shelf, never a shelf in a box.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.codes import next_code
from domain.errors import Conflict, Invalid, NotFound, conflict_if_taken
from domain.pagination import Page, after, next_cursor, search_query
from domain.registry.models import (
    LOCATION_PARENTS,
    RULES,
    ArchiveRequest,
    ItemCreate,
    ItemRead,
    Kind,
    LocationLevel,
)
from domain.registry.rows import ITEM_COLUMNS, ItemRow
from domain.roles import Caller
from domain.rows import from_row
from domain.runs.records import jsonable, outbox

ENTITY = "registry_item"  # the audit trail's entity type of every registry record
TOPIC = "registry_item"  # the outbox topic: one payload per revision
_SELECT = f"SELECT {ITEM_COLUMNS} FROM registry_items WHERE org_id = current_org()"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def read(row: ItemRow) -> ItemRead:
    return ItemRead(id=row.id, kind=Kind(row.kind), code=row.code, name=row.name, parent_id=row.parent_id,
                    status=row.status, attributes=row.attributes, archived=row.archived_at is not None,
                    archived_at=row.archived_at, created_at=row.created_at, created_by=row.created_by,
                    updated_at=row.updated_at, revision=row.revision)


def state(row: ItemRow) -> dict[str, object]:
    """The record as the audit trail keeps it, before and after each change."""
    return {"id": str(row.id), "kind": row.kind, "code": row.code, "name": row.name,
            "parent_id": str(row.parent_id) if row.parent_id else None, "status": row.status,
            "attributes": row.attributes, "archived_at": jsonable(row.archived_at), "revision": row.revision}


def payload(row: ItemRow) -> dict[str, object]:
    """The outbox payload of one revision (lake/tables.py REGISTRY_ITEMS): keep its keys and types."""
    return {"org_id": str(row.org_id), "item_id": str(row.id), "kind": row.kind, "code": row.code, "name": row.name,
            "parent_id": str(row.parent_id) if row.parent_id else None, "status": row.status,
            "attributes": row.attributes, "archived_at": jsonable(row.archived_at),
            "created_at": jsonable(row.created_at), "created_by": row.created_by,
            "updated_at": jsonable(row.updated_at), "revision": row.revision}


# ---------------------------------------------------------------- reads


def find(session: Session, item_id: uuid.UUID, *, lock: bool = False) -> ItemRow | None:
    row = session.execute(text(_SELECT + " AND id = :i" + (" FOR UPDATE" if lock else "")), {"i": item_id}).first()
    return from_row(ItemRow, row) if row is not None else None


def get(session: Session, kind: Kind, item_id: uuid.UUID, *, lock: bool = False) -> ItemRow:
    """The organization's record of `kind` with this id; NotFound otherwise (another kind's, another org's)."""
    row = find(session, item_id, lock=lock)
    if row is None or row.kind != kind:
        raise NotFound(f"no {kind} {item_id} in this organization")
    return row


def normalize_code(code: str) -> str:
    return code.strip().upper()


def lookup(session: Session, code: str) -> ItemRow:
    """The record with this code, whatever its kind: what a scanner types back from a label."""
    wanted = normalize_code(code)
    row = session.execute(text(_SELECT + " AND code = :c"), {"c": wanted}).first()
    if row is None:
        raise NotFound(f"no registry record with code '{wanted}' in this organization")
    return from_row(ItemRow, row)


def children(session: Session, item_id: uuid.UUID, *, limit: int = 6) -> list[ItemRow]:
    """Records directly under this one that are not archived."""
    rows = session.execute(text(_SELECT + " AND parent_id = :i AND archived_at IS NULL ORDER BY code LIMIT :n"),
                           {"i": item_id, "n": limit}).all()
    return [from_row(ItemRow, r) for r in rows]


def codes(session: Session, ids: set[uuid.UUID] | list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The codes of these records, in one query (a list's locations, suppliers)."""
    rows = session.execute(text("SELECT id, code FROM registry_items WHERE org_id = current_org() AND id = ANY(:i)"),
                           {"i": list(ids)}).all()
    return {r.id: r.code for r in rows}


@dataclass(frozen=True)
class ItemFilter:
    """What a list is narrowed to. `archived`: exclude (default), include, or only archived records."""

    status: str | None = None
    parent_id: uuid.UUID | None = None
    archived: str = "exclude"
    risk_group: int | None = None
    level: LocationLevel | None = None
    supplier_id: uuid.UUID | None = None
    expiry_before: dt.date | None = None
    calibration_due_before: dt.date | None = None
    maintenance_due_before: dt.date | None = None


K = Kind
# Filters that read an attribute: which kinds have it, and the SQL condition.
_ATTRIBUTE_FILTERS: dict[str, tuple[frozenset[Kind], str]] = {
    "risk_group": (frozenset({K.species, K.strain}), "(attributes->>'risk_group')::int = :risk_group"),
    "level": (frozenset({K.location}), "attributes->>'level' = :level"),
    "supplier_id": (frozenset({K.ingredient, K.lot}), "attributes->>'supplier_id' = :supplier_id"),
    "expiry_before": (frozenset({K.lot}), "(attributes->>'expiry_date')::date < :expiry_before"),
    "calibration_due_before": (frozenset({K.equipment}),
                               "(attributes->>'calibration_due')::date < :calibration_due_before"),
    "maintenance_due_before": (frozenset({K.equipment}),
                               "(attributes->>'maintenance_due')::date < :maintenance_due_before"),
}


def list_items(session: Session, kind: Kind, f: ItemFilter, *, q: str | None, cursor: str | None,
               limit: int) -> Page[ItemRead]:
    """The kind's records, newest first, filtered and searched (codes and names, word prefixes); a page of
    `limit` and the cursor of the next."""
    where = ["kind = :kind"]
    params: dict[str, object] = {"kind": kind.value, "n": limit}
    if f.archived == "exclude":
        where.append("archived_at IS NULL")
    elif f.archived == "only":
        where.append("archived_at IS NOT NULL")
    if f.status is not None:
        where.append("status = :status")
        params["status"] = f.status
    if f.parent_id is not None:
        where.append("parent_id = :parent_id")
        params["parent_id"] = f.parent_id
    wrong: list[str] = []
    for name, (kinds, condition) in _ATTRIBUTE_FILTERS.items():
        value = getattr(f, name)
        if value is None:
            continue
        if kind not in kinds:
            wrong.append(f"{name}: filters {' and '.join(sorted(k.value for k in kinds))} records, not {kind}")
            continue
        where.append(condition)
        params[name] = str(value) if isinstance(value, uuid.UUID | LocationLevel) else value
    if wrong:
        raise Invalid("a filter does not apply to this kind of record", reasons=wrong)
    query = search_query(q)
    if query is not None:
        where.append("search @@ to_tsquery('simple', :q)")
        params["q"] = query
    cond, cursor_params = after(cursor, "created_at", "id")
    where.append(cond)
    params.update(cursor_params)
    rows = [from_row(ItemRow, r) for r in session.execute(
        text(f"{_SELECT} AND {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT :n"), params).all()]
    return Page(items=[read(r) for r in rows], next_cursor=next_cursor(rows, limit))


# ---------------------------------------------------------------- checks


def check_attributes(kind: Kind, raw: Mapping[str, Any]) -> dict[str, object]:
    """The kind's attributes as stored (every field, defaults filled in); Invalid naming each problem."""
    try:
        model = RULES[kind].attributes.model_validate(dict(raw))
    except ValidationError as exc:
        reasons = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            reasons.append(f"attributes.{where}: {str(e['msg']).removeprefix('Value error, ')}" if where
                           else f"attributes: {e['msg']}")
        raise Invalid(f"the attributes do not fit a {kind}", reasons=reasons) from None
    stored: dict[str, object] = model.model_dump(mode="json")
    return stored


def check_status(kind: Kind, status: str) -> None:
    allowed = RULES[kind].statuses
    if status not in allowed:
        raise Invalid(f"a {kind} cannot be '{status}'", reasons=[f"status: one of {', '.join(allowed)}"])


def _reference(session: Session, field: str, item_id: uuid.UUID, kind: Kind, *, new: bool) -> ItemRow:
    row = find(session, item_id)
    if row is None or row.kind != kind:
        raise Invalid(f"{field} names no {kind} of this organization", reasons=[f"{field}: no {kind} {item_id}"])
    if new and row.archived_at is not None:
        raise Invalid(f"{field} names an archived {kind}",
                      reasons=[f"{field}: {row.code} is archived (restore it first)"])
    return row


def _check_place(session: Session, kind: Kind, item_id: uuid.UUID | None, parent_id: uuid.UUID | None,
                 attributes: Mapping[str, object], *, parent_changed: bool, level_changed: bool,
                 previous: Mapping[str, object] | None = None) -> None:
    """The parent fits the kind (and a location's level); references in the attributes exist."""
    rules = RULES[kind]
    if rules.parent is None and parent_id is not None:
        raise Invalid(f"a {kind} has no parent", reasons=["parent_id: leave it out"])
    if rules.parent_required and parent_id is None:
        raise Invalid(f"a {kind} needs its {rules.parent}", reasons=[f"parent_id: the {rules.parent} it belongs to"])
    parent = None
    if parent_id is not None:
        assert rules.parent is not None
        if parent_id == item_id:
            raise Invalid("a record cannot be its own parent", reasons=["parent_id: another record's id"])
        parent = _reference(session, "parent_id", parent_id, rules.parent, new=parent_changed)
    if kind == Kind.location:
        level = LocationLevel(str(attributes["level"]))
        allowed = LOCATION_PARENTS[level]
        if parent is None and allowed and (parent_changed or level_changed or item_id is None):
            raise Invalid(f"a {level} sits in a {' or a '.join(sorted(allowed))}",
                          reasons=[f"parent_id: the {' or '.join(sorted(allowed))} it is in"])
        if parent is not None:
            parent_level = parent.attributes.get("level")
            if parent_level not in allowed:
                where = f"a {' or a '.join(sorted(allowed))}" if allowed else "nothing (it is the top of the tree)"
                raise Invalid(f"a {level} cannot sit in a {parent_level}",
                              reasons=[f"parent_id: {parent.code} is a {parent_level}; a {level} sits in {where}"])
        if item_id is not None and level_changed:
            for child in children(session, item_id, limit=1000):
                child_level = LocationLevel(str(child.attributes.get("level")))
                if level not in LOCATION_PARENTS[child_level]:
                    raise Invalid(f"{child.code} (a {child_level}) cannot sit in a {level}",
                                  reasons=[f"attributes.level: {child.code} inside is a {child_level}"])
    for field, ref_kind in rules.references:
        value = attributes.get(field)
        if value is not None and (previous is None or previous.get(field) != value):
            _reference(session, f"attributes.{field}", uuid.UUID(str(value)), ref_kind, new=True)


def _expect_revision(row: ItemRow, *revisions: int | None) -> None:
    for r in revisions:
        if r is not None and r != row.revision:
            raise Conflict(f"{row.code} changed since revision {r}: it is at revision {row.revision} now; read it "
                           "again and make your change on what it is now", reasons=[f"revision: {row.revision}"])


# ---------------------------------------------------------------- changes

_INSERT = text(
    f"INSERT INTO registry_items (id, org_id, kind, code, name, parent_id, status, attributes, created_at, created_by,"
    f" updated_at) VALUES (:id, :o, :kind, :code, :name, :parent, :status, CAST(:attributes AS jsonb), :at, :by, :at)"
    f" RETURNING {ITEM_COLUMNS}")
_UPDATE = text(
    f"UPDATE registry_items SET name = :name, parent_id = :parent, status = :status,"
    f" attributes = CAST(:attributes AS jsonb), revision = revision + 1, updated_at = :at WHERE id = :id"
    f" RETURNING {ITEM_COLUMNS}")
_ARCHIVE = text(
    f"UPDATE registry_items SET archived_at = :archived, revision = revision + 1, updated_at = :at WHERE id = :id"
    f" RETURNING {ITEM_COLUMNS}")


def _taken(kind: Kind, name: str) -> str:
    return f"a {kind} named '{name}' exists already there (names are unique among the records of one parent)"


def _changed(session: Session, caller: Caller, action: str, before: ItemRow | None, after: ItemRow,
             reason: str | None) -> None:
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action=action, entity_type=ENTITY,
                 entity_id=after.id, before=state(before) if before else None, after=state(after), reason=reason,
                 context=caller.context)
    outbox(session, after.org_id, TOPIC, payload(after))


def create(session: Session, caller: Caller, kind: Kind, data: ItemCreate) -> ItemRow:
    """A new record of `kind` with its next code (e.g. ST-000012), audited."""
    rules = RULES[kind]
    attributes = check_attributes(kind, data.attributes)
    status = data.status or rules.statuses[0]
    check_status(kind, status)
    _check_place(session, kind, None, data.parent_id, attributes, parent_changed=True, level_changed=True)
    at = now()
    with conflict_if_taken(session, _taken(kind, data.name)):
        row = from_row(ItemRow, session.execute(_INSERT, {
            "id": uuid.uuid4(), "o": caller.org_id, "kind": kind.value,
            "code": next_code(session, caller.org_id, rules.prefix), "name": data.name, "parent": data.parent_id,
            "status": status, "attributes": json.dumps(attributes), "at": at, "by": caller.actor.id}).one())
    _changed(session, caller, "create", None, row, data.reason)
    return row


@dataclass(frozen=True)
class Change:
    """What a change asks for: None leaves a field as it is; `parent_given` tells a null parent from none."""

    revision: int
    reason: str
    name: str | None = None
    parent_id: uuid.UUID | None = None
    parent_given: bool = False
    status: str | None = None
    attributes: Mapping[str, Any] | None = None


def update(session: Session, caller: Caller, kind: Kind, item_id: uuid.UUID, change: Change,
           if_match: int | None = None) -> ItemRow:
    """Change a record made from revision `change.revision` (409 if it moved on); nothing changes → as it is."""
    before = get(session, kind, item_id, lock=True)
    _expect_revision(before, change.revision, if_match)
    if before.archived_at is not None:
        raise Conflict(f"{before.code} is archived: restore it before changing it")
    name = change.name if change.name is not None else before.name
    parent_id = change.parent_id if change.parent_given else before.parent_id
    status = change.status if change.status is not None else before.status
    check_status(kind, status)
    attributes = dict(before.attributes)
    if change.attributes is not None:
        attributes = check_attributes(kind, {**before.attributes, **change.attributes})
    if (name, parent_id, status, attributes) == (before.name, before.parent_id, before.status, before.attributes):
        return before
    _check_place(session, kind, item_id, parent_id, attributes, parent_changed=parent_id != before.parent_id,
                 level_changed=attributes.get("level") != before.attributes.get("level"), previous=before.attributes)
    with conflict_if_taken(session, _taken(kind, name)):
        after = from_row(ItemRow, session.execute(_UPDATE, {
            "id": item_id, "name": name, "parent": parent_id, "status": status,
            "attributes": json.dumps(attributes), "at": now()}).one())
    _changed(session, caller, "update", before, after, change.reason)
    return after


def changed_fields(before: ItemRow, after: ItemRow) -> list[str]:
    out = [f for f in ("name", "parent_id", "status") if getattr(before, f) != getattr(after, f)]
    keys = sorted(set(before.attributes) | set(after.attributes))
    return out + [f"attributes.{k}" for k in keys if before.attributes.get(k) != after.attributes.get(k)]


# What is stored in a location or anywhere below it (its whole subtree, archived places too: a box archived with
# samples left in it still holds them): samples not archived and not gone (consumed, disposed), their batches.
_STORED = text("""
WITH RECURSIVE tree(id) AS (
  SELECT CAST(:i AS uuid)
  UNION
  SELECT r.id FROM registry_items r JOIN tree t ON r.parent_id = t.id
   WHERE r.org_id = current_org() AND r.kind = 'location'
)
SELECT count(*) AS samples, count(DISTINCT s.batch_id) AS batches,
       (array_agg(s.code ORDER BY s.code))[1:5] AS codes
  FROM samples s
 WHERE s.org_id = current_org() AND s.location_id IN (SELECT id FROM tree)
   AND s.archived_at IS NULL AND s.status NOT IN ('consumed', 'disposed')
""")
_OPEN_CHILDREN = text("SELECT count(*) FROM registry_items WHERE org_id = current_org() AND parent_id = :i"
                      " AND archived_at IS NULL")


def _check_empty(session: Session, location: ItemRow) -> None:
    """A storage location is archived only when nothing is stored in it or below it: Conflict naming how many
    samples (of how many batches) and child locations are still there. The location is locked by the caller, and
    moves into it lock it too (domain/samples/service.py `check_location`): no sample slips in meanwhile."""
    found = session.execute(_STORED, {"i": location.id}).one()
    if not found.samples:
        return
    open_children = int(session.execute(_OPEN_CHILDREN, {"i": location.id}).scalar_one())
    n, b = int(found.samples), int(found.batches)
    codes = ", ".join(found.codes) + (", …" if n > len(found.codes) else "")
    batches = f" of {b} batch{'es' if b != 1 else ''}" if b else ""
    raise Conflict(
        f"{location.code} still stores {n} sample{'s' if n != 1 else ''}{batches} in it or in a location below it"
        f" ({codes}), and holds {open_children} child location{'s' if open_children != 1 else ''} not archived:"
        " move the samples out (or dispose of them) first",
        reasons=[f"samples: {n}", f"batches: {b}", f"child_locations: {open_children}"])


def set_archived(session: Session, caller: Caller, kind: Kind, item_id: uuid.UUID, data: ArchiveRequest,
                 archived: bool) -> ItemRow:
    """Archive (hide from lists, keep for ever) or restore a record, with the reason."""
    before = get(session, kind, item_id, lock=True)
    _expect_revision(before, data.revision)
    if archived:
        if before.archived_at is not None:
            raise Conflict(f"{before.code} is archived already")
        if kind == Kind.location:
            _check_empty(session, before)
        held = children(session, item_id)
        if held:
            codes = ", ".join(c.code for c in held[:5]) + (", …" if len(held) > 5 else "")
            raise Conflict(f"{before.code} still holds records that are not archived ({codes}): archive them first")
    else:
        if before.archived_at is None:
            raise Conflict(f"{before.code} is not archived")
        parent = find(session, before.parent_id) if before.parent_id else None
        if parent is not None and parent.archived_at is not None:
            raise Conflict(f"{before.code} is in {parent.code}, which is archived: restore {parent.code} first")
    at = now()
    after = from_row(ItemRow, session.execute(_ARCHIVE, {"id": item_id, "archived": at if archived else None,
                                                         "at": at}).one())
    _changed(session, caller, "archive" if archived else "restore", before, after, data.reason)
    return after
