"""Regulatory tags: the organization's vocabulary, and attaching them to registry records, protocols, protocol
steps, samples and batches. Attaching and removing are audited with the reason; each answers the open runs whose
surface the change reaches (the API asks their workflows to check their authorizations again), and the open
tasks of those runs get the checklist items the new surface calls for, on record by the system
(domain/compliance/checklists.py `sync_runs`)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.compliance.models import REGISTRY_TARGETS, TagAttach, TagCreate, TagLinkRead, TagRead
from domain.errors import Conflict, Invalid, NotFound, conflict_if_taken
from domain.roles import Caller

OPEN = ("running", "on_hold")


def _read(r: object) -> TagRead:
    return TagRead(id=r.id, key=r.key, name=r.name, description=r.description,  # type: ignore[attr-defined]
                   framework=r.framework, archived=r.archived_at is not None)  # type: ignore[attr-defined]


def list_tags(session: Session) -> list[TagRead]:
    rows = session.execute(text("SELECT id, key, name, description, framework, archived_at FROM compliance_tags"
                                " WHERE org_id = current_org() ORDER BY key")).all()
    return [_read(r) for r in rows]


def tag_by_key(session: Session, key: str) -> TagRead:
    r = session.execute(text("SELECT id, key, name, description, framework, archived_at FROM compliance_tags"
                             " WHERE org_id = current_org() AND key = :k"), {"k": key}).first()
    if r is None:
        raise NotFound(f"no regulatory tag '{key}' in this organization")
    return _read(r)


def create_tag(session: Session, caller: Caller, data: TagCreate) -> TagRead:
    ident = uuid.uuid4()
    with conflict_if_taken(session, f"tag '{data.key}' exists already"):
        session.execute(text(
            "INSERT INTO compliance_tags (id, org_id, key, name, description, framework, created_at, created_by)"
            " VALUES (:i, :o, :k, :n, :d, :f, now(), :by)"),
            {"i": ident, "o": caller.org_id, "k": data.key, "n": data.name, "d": data.description,
             "f": data.framework, "by": caller.actor.id})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="compliance_tag",
                 entity_id=ident, after=data.model_dump(), context=caller.context)
    return tag_by_key(session, data.key)


# ---------------------------------------------------------------- targets


def _target(session: Session, data: TagAttach) -> tuple[str, str, str, str]:
    """(stored target type, target id, step key, the audit trail's entity type) after checking the target exists
    in the organization."""
    kind, ident = data.target_type, data.target_id
    if kind in ("protocol",):
        if data.step_key:
            raise Invalid("a protocol tag names no step", reasons=["step_key: only for target_type step"])
        if session.execute(text("SELECT 1 FROM protocols WHERE org_id = current_org() AND key = :k"),
                           {"k": ident}).first() is None:
            raise NotFound(f"no protocol '{ident}' in this organization")
        return "protocol", ident, "", "protocol"
    uid = _uuid(ident)
    if kind == "step":
        if not data.step_key:
            raise Invalid("a step tag names its step", reasons=["step_key: required for target_type step"])
        row = session.execute(text("SELECT plan FROM protocol_versions WHERE org_id = current_org() AND id = :i"),
                              {"i": uid}).first()
        if row is None:
            raise NotFound(f"no protocol version {ident} in this organization")
        if data.step_key not in ((row.plan or {}).get("steps_index") or {}):
            raise Invalid("no such step", reasons=[f"step_key: protocol version {ident} has no step "
                                                   f"'{data.step_key}'"])
        return "step", str(uid), data.step_key, "protocol_step"
    if data.step_key:
        raise Invalid("only a step tag names a step", reasons=["step_key: only for target_type step"])
    if kind in REGISTRY_TARGETS:
        r = session.execute(text("SELECT kind FROM registry_items WHERE org_id = current_org() AND id = :i"),
                            {"i": uid}).first()
        if r is None or r.kind != kind:
            raise NotFound(f"no {kind} {ident} in this organization")
        return "registry_item", str(uid), "", "registry_item"
    table = "samples" if kind == "sample" else "batches"
    if session.execute(text(f"SELECT 1 FROM {table} WHERE org_id = current_org() AND id = :i"),  # noqa: S608
                       {"i": uid}).first() is None:
        raise NotFound(f"no {kind} {ident} in this organization")
    return kind, str(uid), "", kind


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Invalid("target_id is not an id", reasons=["target_id: a UUID (a protocol's key for protocols)"]) \
            from None


def _link_read(r: object) -> TagLinkRead:
    return TagLinkRead(id=r.id, tag=r.key, target_type=r.target_type,  # type: ignore[attr-defined]
                       target_id=r.target_id, step_key=r.step_key or None,  # type: ignore[attr-defined]
                       attached_at=r.attached_at, attached_by_display=r.attached_by_display,  # type: ignore[attr-defined]
                       reason=r.reason)  # type: ignore[attr-defined]


_LINKS = ("SELECT l.id, t.key, l.target_type, l.target_id, l.step_key, l.attached_at, l.attached_by_display,"
          " l.reason FROM compliance_tag_links l JOIN compliance_tags t ON t.id = l.tag_id"
          " WHERE l.org_id = current_org()")


def links(session: Session, target_type: str | None = None, target_id: str | None = None,
          tag: str | None = None, limit: int = 200) -> list[TagLinkRead]:
    where: list[str] = []
    params: dict[str, object] = {"n": limit}
    if target_type:
        where.append("l.target_type = :tt")
        params["tt"] = "registry_item" if target_type in REGISTRY_TARGETS else target_type
    if target_id:
        where.append("l.target_id = :ti")
        params["ti"] = target_id
    if tag:
        where.append("t.key = :k")
        params["k"] = tag
    sql = _LINKS + "".join(f" AND {w}" for w in where) + " ORDER BY l.attached_at DESC, l.id LIMIT :n"
    return [_link_read(r) for r in session.execute(text(sql), params).all()]


def attach(session: Session, caller: Caller, data: TagAttach) -> tuple[TagLinkRead, list[uuid.UUID]]:
    """Attach the tag; (the attachment, the open runs whose surface it reaches). Conflict when it is there."""
    tag = tag_by_key(session, data.tag)
    if tag.archived:
        raise Conflict(f"tag '{tag.key}' is archived")
    stored, ident, step_key, entity = _target(session, data)
    link_id = uuid.uuid4()
    with conflict_if_taken(session, f"tag '{tag.key}' is attached to that {data.target_type} already"):
        session.execute(text(
            "INSERT INTO compliance_tag_links (id, org_id, tag_id, target_type, target_id, step_key, attached_at,"
            " attached_by, attached_by_display, reason) VALUES (:i, :o, :t, :tt, :ti, :sk, :at, :by, :byd, :r)"),
            {"i": link_id, "o": caller.org_id, "t": tag.id, "tt": stored, "ti": ident, "sk": step_key,
             "at": dt.datetime.now(dt.UTC), "by": caller.actor.id, "byd": caller.actor.display, "r": data.reason})
    entity_id = f"{ident}:{step_key}" if step_key else ident
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="tag", entity_type=entity,
                 entity_id=entity_id, before={"tag": None},
                 after={"tag": tag.key, "target_type": data.target_type, "link_id": str(link_id)},
                 reason=data.reason, context=caller.context)
    row = session.execute(text(_LINKS + " AND l.id = :i"), {"i": link_id}).one()
    return _link_read(row), affected_runs(session, stored, ident)


def detach(session: Session, caller: Caller, data: TagAttach) -> list[uuid.UUID]:
    """Remove the tag from the target; the open runs whose surface it reaches. NotFound when it is not there."""
    tag = tag_by_key(session, data.tag)
    stored, ident, step_key, entity = _target(session, data)
    gone = session.execute(text(
        "DELETE FROM compliance_tag_links WHERE org_id = current_org() AND tag_id = :t AND target_type = :tt"
        " AND target_id = :ti AND step_key = :sk RETURNING id, attached_at, attached_by_display, reason"),
        {"t": tag.id, "tt": stored, "ti": ident, "sk": step_key}).first()
    if gone is None:
        raise NotFound(f"tag '{tag.key}' is not attached to that {data.target_type}")
    entity_id = f"{ident}:{step_key}" if step_key else ident
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="untag", entity_type=entity,
                 entity_id=entity_id,
                 before={"tag": tag.key, "link_id": str(gone.id), "attached_by": gone.attached_by_display,
                         "attached_reason": gone.reason},
                 after={"tag": None}, reason=data.reason, context=caller.context)
    return affected_runs(session, stored, ident)


# ---------------------------------------------------------------- who is reached


_DESCENDANTS = text(
    "WITH RECURSIVE down(id) AS (SELECT unnest(CAST(:ids AS uuid[]))"
    " UNION SELECT e.child_id FROM lineage_edges e JOIN down ON e.parent_id = down.id)"
    " SELECT s.code FROM down JOIN samples s ON s.id = down.id")
_OPEN_RUNS_OF = text(
    "SELECT DISTINCT r.id FROM runs r CROSS JOIN LATERAL jsonb_array_elements(r.subjects) x"
    " WHERE r.org_id = current_org() AND r.status IN ('running', 'on_hold')"
    " AND ((x->>'type' = 'sample' AND x->>'id' = ANY(CAST(:samples AS text[])))"
    "  OR (x->>'type' = 'batch' AND x->>'id' = ANY(CAST(:batches AS text[]))))")


def runs_of_samples(session: Session, sample_ids: list[uuid.UUID], batch_codes: list[str] | None = None) \
        -> list[uuid.UUID]:
    """Open runs whose subjects are these samples, their descendants, or these batches (or the batches of them)."""
    codes = [r.code for r in session.execute(_DESCENDANTS, {"ids": sample_ids}).all()] if sample_ids else []
    batches = list(batch_codes or [])
    if codes:
        batches += [r.code for r in session.execute(text(
            "SELECT DISTINCT b.code FROM samples s JOIN batches b ON b.id = s.batch_id"
            " WHERE s.code = ANY(CAST(:c AS text[])) AND s.org_id = current_org()"), {"c": codes}).all()]
    if not codes and not batches:
        return []
    return [r.id for r in session.execute(_OPEN_RUNS_OF, {"samples": codes, "batches": batches}).all()]


def affected_runs(session: Session, target_type: str, target_id: str) -> list[uuid.UUID]:
    """The open runs whose surface a tag on this target reaches."""
    if target_type in ("protocol", "step"):
        column = "protocol_key" if target_type == "protocol" else "protocol_version_id::text"
        return [r.id for r in session.execute(text(
            f"SELECT id FROM runs WHERE org_id = current_org() AND status IN ('running', 'on_hold')"  # noqa: S608
            f" AND {column} = :v"), {"v": target_id}).all()]
    if target_type == "sample":
        return runs_of_samples(session, [uuid.UUID(target_id)])
    if target_type == "batch":
        b = session.execute(text("SELECT code FROM batches WHERE id = :b"), {"b": target_id}).first()
        members = [r.id for r in session.execute(text("SELECT id FROM samples WHERE batch_id = :b"),
                                                 {"b": target_id}).all()]
        return runs_of_samples(session, members, [b.code] if b else [])
    # a registry record: the samples made of it (or of a record under it: a lot of an ingredient)
    holders = [r.sample_id for r in session.execute(text(
        "SELECT DISTINCT c.sample_id FROM sample_components c JOIN registry_items i ON i.id = c.item_id"
        " WHERE c.org_id = current_org() AND (i.id = :i OR i.parent_id = :i)"), {"i": target_id}).all()]
    return runs_of_samples(session, holders)
