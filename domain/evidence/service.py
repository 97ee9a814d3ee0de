"""Evidence files: upload (stored once by content, one row per upload), links, reading, download.

- The bytes live in the object store under `evidence/<org id>/<sha256>` (core/storage.py), written once: the same
  bytes uploaded twice, by anyone in the organization, are stored once and have two evidence rows (two uploads,
  each with its uploader, name and links). A row is written after its bytes are stored; bytes stored by an upload
  whose transaction then failed stay, unreferenced, and serve the next upload of the same bytes.
- Links say what a file is evidence of (models.TARGETS_DOC). A link's id derives from the file and the target, so
  linking again (a retried request, a file named twice in one completion) writes nothing more.
- Every upload and every download is an audit entry carrying the file's SHA-256: the chain proves which bytes
  were attached and which were read. A completion's entry names the hashes of the files it links
  (domain/tasks/service.py).
- The lake gets every file and link through the outbox (topics `evidence_file`, `evidence_link`).
- An upload with an X-Request-ID is done once: a retry gets the first upload back (200), never a second row; the
  same id with other bytes or from someone else is refused (409).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.storage import ObjectMissing, ObjectStore
from domain import audit
from domain.canonical import format_ts
from domain.errors import Conflict, Invalid, NotFound, Unavailable
from domain.evidence.content import Spooled, content_type_of, safe_filename
from domain.evidence.models import EvidenceFilter, EvidenceLinkRead, EvidenceRead, LinkTarget, TargetType
from domain.evidence.rows import EvidenceRow, LinkRow
from domain.pagination import Page, after, next_cursor
from domain.protocols.plan import TaskNode
from domain.roles import Actor, Caller
from domain.rows import columns, from_row
from domain.runs.records import outbox

API_PREFIX = "/api/v1/evidence"
_FILE_COLUMNS = columns(EvidenceRow, "e")
_LINK_COLUMNS = columns(LinkRow, "l")


def object_key(org_id: uuid.UUID | str, sha256: str) -> str:
    """Where an organization's bytes are: under its own prefix, so a storage credential can be scoped to it."""
    return f"evidence/{org_id}/{sha256}"


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# ---------------------------------------------------------------- links


def resolve_target(session: Session, target_type: TargetType, target_id: str, checklist_item: str | None
                   ) -> LinkTarget:
    """The target, checked to exist in the caller's organization (row-level security hides the others), with its
    id in canonical form; Invalid naming the field otherwise."""
    if checklist_item is not None and target_type != "checklist_item":
        raise Invalid("checklist_item is for target_type checklist_item only",
                      reasons=["checklist_item: only with target_type checklist_item"])
    if target_type in ("task", "checklist_item"):
        task_id = _uuid(target_id)
        row = session.execute(text("SELECT id, spec FROM tasks WHERE id = :t"), {"t": task_id}).first() \
            if task_id else None
        if row is None:
            raise Invalid(f"no task {target_id} in this organization", reasons=[f"target_id: no task {target_id}"])
        if target_type == "task":
            return LinkTarget("task", str(row.id))
        if not checklist_item:
            raise Invalid("a checklist item link names the item", reasons=["checklist_item: required"])
        items = [i.get("key") for i in (row.spec or {}).get("checklist", [])]
        if checklist_item not in items:
            raise Invalid(f"task {row.id} has no checklist item {checklist_item!r}",
                          reasons=[f"checklist_item: not on the checklist of task {row.id}"])
        return LinkTarget("checklist_item", str(row.id), checklist_item)
    table = "samples" if target_type == "sample" else "batches"
    ident = _uuid(target_id)
    found = session.execute(text(f"SELECT id FROM {table} WHERE id = :i"), {"i": ident}).first() if ident else \
        session.execute(text(f"SELECT id FROM {table} WHERE org_id = current_org() AND code = :c"),
                        {"c": target_id}).first()
    if found is None:
        raise Invalid(f"no {target_type} {target_id} in this organization",
                      reasons=[f"target_id: no {target_type} {target_id}"])
    return LinkTarget(target_type, str(found.id))


def link_id(evidence_id: uuid.UUID | str, target: LinkTarget) -> uuid.UUID:
    return uuid.uuid5(uuid.UUID(str(evidence_id)), f"link:{target.type}:{target.id}:{target.detail or ''}")


_LINK = text(
    "INSERT INTO evidence_links (id, org_id, evidence_id, target_type, target_id, detail, linked_at, linked_by)"
    " VALUES (:id, :o, :e, :tt, :ti, :d, :at, :by) ON CONFLICT (id) DO NOTHING RETURNING id")


def link(session: Session, org_id: uuid.UUID | str, evidence: EvidenceRow, target: LinkTarget, by: Actor,
         at: dt.datetime) -> bool:
    """Link the file to the target (and tell the lake); False, and nothing written, when it was linked before."""
    lid = link_id(evidence.id, target)
    new = session.execute(_LINK, {"id": lid, "o": org_id, "e": evidence.id, "tt": target.type, "ti": target.id,
                                  "d": target.detail, "at": at, "by": by.id}).first()
    if new is None:
        return False
    outbox(session, org_id, "evidence_link", {
        "link_id": str(lid), "org_id": str(org_id), "evidence_id": str(evidence.id), "sha256": evidence.sha256,
        "target_type": target.type, "target_id": target.id, "detail": target.detail, "linked_at": format_ts(at),
        "linked_by": by.id})
    return True


# ---------------------------------------------------------------- upload

_INSERT_FILE = text(
    f"INSERT INTO evidence_files AS e (id, org_id, sha256, size_bytes, content_type, filename, uploaded_at,"
    f" uploaded_by, uploaded_by_display, request_id) VALUES (:id, :o, :sha, :size, :ct, :fn, :at, :by, :byd, :rq)"
    f" ON CONFLICT (org_id, request_id) WHERE request_id IS NOT NULL DO NOTHING RETURNING {_FILE_COLUMNS}")


@dataclass(frozen=True)
class Upload:
    """A file as it arrived: its spooled bytes (readable from the start), their facts, what the client said."""

    file: BinaryIO
    spooled: Spooled
    filename: str | None
    declared_type: str | None


def _prior_upload(session: Session, caller: Caller, sha256: str) -> EvidenceRow | None:
    """The upload this request id made before, if any; Conflict when it was someone else's or other bytes."""
    rid = caller.context.request_id
    if not rid:
        return None
    row = session.execute(text(f"SELECT {_FILE_COLUMNS} FROM evidence_files e WHERE org_id = current_org()"
                               " AND request_id = :rq"), {"rq": rid}).first()
    if row is None:
        return None
    prior = from_row(EvidenceRow, row)
    if prior.uploaded_by != caller.actor.id or prior.sha256 != sha256:
        raise Conflict(f"X-Request-ID {rid} already answered another upload: send a new id for a new file")
    return prior


def upload(session: Session, objects: ObjectStore, caller: Caller, up: Upload,
           target: tuple[TargetType, str, str | None] | None) -> tuple[EvidenceRead, bool]:
    """Keep the file (its type checked by content, its bytes stored once) and link it; the evidence and whether it
    is new (False: this X-Request-ID uploaded it before). UnsupportedType (415), Invalid (422), Conflict (409)."""
    content_type = content_type_of(up.spooled, up.declared_type, up.filename or "")
    prior = _prior_upload(session, caller, up.spooled.sha256)
    if prior is not None:
        return read(session, prior), False
    where = resolve_target(session, *target) if target else None
    key = object_key(caller.org_id, up.spooled.sha256)
    stored = objects.put_once(key, up.file)  # False: the same bytes were kept before
    at = dt.datetime.now(dt.UTC)
    filename = safe_filename(up.filename)
    row = session.execute(_INSERT_FILE, {
        "id": uuid.uuid4(), "o": caller.org_id, "sha": up.spooled.sha256, "size": up.spooled.size,
        "ct": content_type, "fn": filename, "at": at, "by": caller.actor.id, "byd": caller.actor.display,
        "rq": caller.context.request_id}).first()
    if row is None:  # the same request, at the same time, won the insert
        prior = _prior_upload(session, caller, up.spooled.sha256)
        if prior is None:
            raise Unavailable("the upload met a concurrent one with the same X-Request-ID: retry it")
        return read(session, prior), False
    evidence = from_row(EvidenceRow, row)
    outbox(session, caller.org_id, "evidence_file", _file_payload(evidence))
    if where is not None:
        link(session, caller.org_id, evidence, where, caller.actor, at)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="upload", entity_type="evidence",
                 entity_id=evidence.id, after={
                     "sha256": evidence.sha256, "size_bytes": evidence.size_bytes, "content_type": content_type,
                     "filename": filename, "bytes_stored": "new" if stored else "already kept",
                     "links": [_link_fact(where)] if where else []},
                 context=caller.context, occurred_at=at)
    return read(session, evidence), True


def _link_fact(target: LinkTarget) -> dict[str, str | None]:
    return {"target_type": target.type, "target_id": target.id, "detail": target.detail}


def _file_payload(e: EvidenceRow) -> dict[str, object]:
    return {"evidence_id": str(e.id), "org_id": str(e.org_id), "sha256": e.sha256, "size_bytes": int(e.size_bytes),
            "content_type": e.content_type, "filename": e.filename, "uploaded_at": format_ts(e.uploaded_at),
            "uploaded_by": e.uploaded_by, "uploaded_by_display": e.uploaded_by_display}


# ---------------------------------------------------------------- a completion's evidence


@dataclass(frozen=True)
class Ref:
    """An evidence id a completion names, where it names it, and what it links the file to."""

    path: str  # `evidence[0]`, `values.photo`, `checklist_evidence.hood_clean[1]`
    evidence_id: str
    target: LinkTarget


def completion_refs(task_id: str, step: TaskNode, values: Mapping[str, object], evidence: Sequence[str],
                    checklist_evidence: Mapping[str, Sequence[str]]) -> tuple[list[Ref], list[str]]:
    """Every evidence id of a completion with its link: the `evidence` list and each `evidence_ref` form value to
    the task (a form value's link says which field), `checklist_evidence` to each item; and the problems of items
    not on the step's checklist."""
    refs = [Ref(f"evidence[{i}]", e, LinkTarget("task", task_id)) for i, e in enumerate(evidence)]
    for f in step.form.fields if step.form else []:
        value = values.get(f.key)
        if f.type == "evidence_ref" and isinstance(value, str) and value:
            refs.append(Ref(f"values.{f.key}", value, LinkTarget("task", task_id, f"values.{f.key}")))
    items = {i.key for i in step.checklist}
    problems = [f"checklist_evidence.{key}: not on this checklist" for key in checklist_evidence if key not in items]
    for key, ids in checklist_evidence.items():
        if key in items:
            refs += [Ref(f"checklist_evidence.{key}[{i}]", e, LinkTarget("checklist_item", task_id, key))
                     for i, e in enumerate(ids)]
    return refs, problems


def known(session: Session, refs: Iterable[Ref]) -> tuple[dict[str, EvidenceRow], list[str]]:
    """The files the refs name, by id, and a problem for each id that names no file of this organization."""
    refs = list(refs)
    ids = {r.evidence_id: _uuid(r.evidence_id) for r in refs}
    wanted = [u for u in ids.values() if u is not None]
    rows = session.execute(text(f"SELECT {_FILE_COLUMNS} FROM evidence_files e WHERE id = ANY(:ids)"),
                           {"ids": wanted}).all() if wanted else []
    found = {str(r.id): from_row(EvidenceRow, r) for r in rows}
    by_ref = {ref: found.get(str(u)) if u else None for ref, u in ids.items()}
    problems = [f"{r.path}: no evidence file {r.evidence_id[:128]} in this organization (upload it with POST "
                f"{API_PREFIX} and send its id)" for r in refs if by_ref[r.evidence_id] is None]
    return {ref: row for ref, row in by_ref.items() if row is not None}, problems


def link_refs(session: Session, org_id: uuid.UUID | str, refs: Iterable[Ref], files: Mapping[str, EvidenceRow],
              by: Actor, at: dt.datetime) -> dict[str, str]:
    """Link each ref's file (once, whatever the retries); the files' hashes by id, for the completion's entry."""
    hashes: dict[str, str] = {}
    for r in refs:
        row = files[r.evidence_id]
        link(session, org_id, row, r.target, by, at)
        hashes[str(row.id)] = row.sha256
    return hashes


# ---------------------------------------------------------------- reading


def _links(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[EvidenceLinkRead]]:
    out: dict[uuid.UUID, list[EvidenceLinkRead]] = {i: [] for i in ids}
    if not ids:
        return out
    for r in session.execute(text(f"SELECT {_LINK_COLUMNS} FROM evidence_links l WHERE evidence_id = ANY(:ids)"
                                  " ORDER BY linked_at, id"), {"ids": list(ids)}).all():
        row = from_row(LinkRow, r)
        out[row.evidence_id].append(EvidenceLinkRead(id=row.id, target_type=row.target_type,
                                                     target_id=row.target_id, detail=row.detail,
                                                     linked_at=row.linked_at, linked_by=row.linked_by))
    return out


def _read(e: EvidenceRow, links: list[EvidenceLinkRead]) -> EvidenceRead:
    return EvidenceRead(id=e.id, sha256=e.sha256, size_bytes=e.size_bytes, content_type=e.content_type,
                        filename=e.filename, uploaded_at=e.uploaded_at, uploaded_by=e.uploaded_by,
                        uploaded_by_display=e.uploaded_by_display, links=links,
                        content_url=f"{API_PREFIX}/{e.id}/content")


def read(session: Session, e: EvidenceRow) -> EvidenceRead:
    return _read(e, _links(session, [e.id])[e.id])


def row(session: Session, evidence_id: uuid.UUID) -> EvidenceRow:
    found = session.execute(text(f"SELECT {_FILE_COLUMNS} FROM evidence_files e WHERE id = :i"),
                            {"i": evidence_id}).first()
    if found is None:
        raise NotFound(f"no evidence file {evidence_id}")
    return from_row(EvidenceRow, found)


def get(session: Session, evidence_id: uuid.UUID) -> EvidenceRead:
    return read(session, row(session, evidence_id))


def list_files(session: Session, f: EvidenceFilter, *, limit: int, cursor: str | None) -> Page[EvidenceRead]:
    """The organization's files, newest first, filtered; cursor pagination (domain/pagination.py)."""
    where = ["e.org_id = current_org()"]
    params: dict[str, Any] = {"lim": limit}
    if f.target_type or f.target_id:
        cond = ["l.evidence_id = e.id"]
        if f.target_type:
            cond.append("l.target_type = :tt")
            params["tt"] = f.target_type
        if f.target_id:
            cond.append("l.target_id = :ti")
            params["ti"] = f.target_id
        where.append(f"EXISTS (SELECT 1 FROM evidence_links l WHERE {' AND '.join(cond)})")
    if f.uploaded_by:
        where.append("e.uploaded_by = :by")
        params["by"] = f.uploaded_by
    if f.sha256:
        where.append("e.sha256 = :sha")
        params["sha"] = f.sha256
    if f.since:
        where.append("e.uploaded_at >= :since")
        params["since"] = f.since
    if f.until:
        where.append("e.uploaded_at < :until")
        params["until"] = f.until
    page, more = after(cursor, "e.uploaded_at", "e.id")
    where.append(page)
    params.update(more)
    rows = [from_row(EvidenceRow, r) for r in session.execute(
        text(f"SELECT {_FILE_COLUMNS} FROM evidence_files e WHERE {' AND '.join(where)}"
             " ORDER BY e.uploaded_at DESC, e.id DESC LIMIT :lim"), params).all()]
    links = _links(session, [r.id for r in rows])
    return Page(items=[_read(r, links[r.id]) for r in rows],
                next_cursor=next_cursor(rows, limit, at="uploaded_at"))


def open_content(session: Session, objects: ObjectStore, caller: Caller, evidence_id: uuid.UUID
                 ) -> tuple[EvidenceRow, BinaryIO]:
    """The file's bytes for download, the download on record with their hash (in the caller's transaction: the
    entry commits before a byte is sent). NotFound; Unavailable when the store lost the bytes."""
    e = row(session, evidence_id)
    try:
        content = objects.open(object_key(e.org_id, e.sha256))
    except ObjectMissing:
        raise Unavailable(f"the bytes of evidence file {e.id} (sha256 {e.sha256}) are missing from the object "
                          "store: restore them from its backup") from None
    try:
        audit.record(session, org_id=caller.org_id, actor=caller.actor, action="download", entity_type="evidence",
                     entity_id=e.id, after={"sha256": e.sha256, "size_bytes": e.size_bytes, "filename": e.filename},
                     context=caller.context)
    except BaseException:
        content.close()
        raise
    return e, content
