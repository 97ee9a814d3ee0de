"""Authorization rules and records, and the holds they put on runs.

A rule says which surface needs which authorization: any of its tags on a run's surface needs an authorization of
its type in force (active, signed by an approver who re-entered their password, within its validity dates)
covering the run's protocol (a record naming no protocol covers every one) and the tag (a record naming no tag
covers every tag of its type). A run that lacks one is held: its workflow asks `check_run` at launch, whenever
the API tells it its surface or the authorizations changed, and when the authorization it relies on expires
(the workflow's own timer, `next_expiry`). Placing and lifting a hold are audit entries by the system; the runs
row shows `on_hold` with the reason meanwhile (unless a person held it: that hold stays theirs).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit, signatures
from domain.codes import next_code
from domain.compliance import surface as surfaces
from domain.compliance.models import (
    AuthorizationCreate,
    AuthorizationRead,
    AuthorizationSign,
    RuleCreate,
    RuleRead,
    Surface,
)
from domain.errors import Conflict, Invalid, NotFound
from domain.identity import service as identity
from domain.roles import SYSTEM_ACTOR, Caller
from domain.runs import records
from domain.runs.messages import AuthorizationCheck, RunRef

TOPIC = "authorization"
SNAPSHOT_TOPIC = "surface_snapshot"
HOLD_PREFIX = "authorization hold: "
_COLUMNS = ("id, code, authorization_type, title, issuer, protocol_keys, tags, valid_from, valid_until, status,"
            " signature_id, approved_by, approved_by_display, approved_at, created_at, created_by, revision")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------- rules


def create_rule(session: Session, caller: Caller, data: RuleCreate) -> RuleRead:
    known = {r.key for r in session.execute(text("SELECT key FROM compliance_tags WHERE org_id = current_org()"))}
    unknown = [t for t in data.tags if t not in known]
    if unknown:
        raise Invalid("unknown tags", reasons=[f"tags: no tag '{t}' in this organization" for t in unknown])
    ident = uuid.uuid4()
    session.execute(text("INSERT INTO authorization_rules (id, org_id, tags, authorization_type, description,"
                         " created_at, created_by) VALUES (:i, :o, :t, :a, :d, now(), :by)"),
                    {"i": ident, "o": caller.org_id, "t": data.tags, "a": data.authorization_type,
                     "d": data.description, "by": caller.actor.id})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="authorization_rule",
                 entity_id=ident, after=data.model_dump(), context=caller.context)
    return RuleRead(id=ident, tags=data.tags, authorization_type=data.authorization_type,
                    description=data.description)


def list_rules(session: Session) -> list[RuleRead]:
    return [RuleRead(id=r.id, tags=list(r.tags), authorization_type=r.authorization_type, description=r.description)
            for r in session.execute(text(
                "SELECT id, tags, authorization_type, description FROM authorization_rules"
                " WHERE org_id = current_org() AND archived_at IS NULL ORDER BY created_at, id")).all()]


# ---------------------------------------------------------------- records


def _read(r: object, now: dt.datetime | None = None) -> AuthorizationRead:
    at = now or _now()
    return AuthorizationRead(
        id=r.id, code=r.code, authorization_type=r.authorization_type, title=r.title,  # type: ignore[attr-defined]
        issuer=r.issuer, protocol_keys=list(r.protocol_keys), tags=list(r.tags),  # type: ignore[attr-defined]
        valid_from=r.valid_from, valid_until=r.valid_until, status=r.status,  # type: ignore[attr-defined]
        in_force=r.status == "active" and r.valid_from <= at < r.valid_until,  # type: ignore[attr-defined]
        approved_by_display=r.approved_by_display, approved_at=r.approved_at,  # type: ignore[attr-defined]
        signature_id=r.signature_id)  # type: ignore[attr-defined]


def _row(session: Session, auth_id: uuid.UUID, *, lock: bool = False) -> object:
    r = session.execute(text(f"SELECT {_COLUMNS} FROM authorizations WHERE org_id = current_org() AND id = :i"
                             + (" FOR UPDATE" if lock else "")), {"i": auth_id}).first()
    if r is None:
        raise NotFound(f"no authorization {auth_id} in this organization")
    return r


def _payload(r: object, org_id: uuid.UUID | str) -> dict[str, object]:
    """The outbox payload of one revision (lake/tables.py AUTHORIZATIONS)."""
    row = {c: records.jsonable(getattr(r, c)) for c in _COLUMNS.split(", ")}
    return {"org_id": str(org_id), "authorization_id": row.pop("id"), **row}


def get(session: Session, auth_id: uuid.UUID) -> AuthorizationRead:
    return _read(_row(session, auth_id))


def list_authorizations(session: Session) -> list[AuthorizationRead]:
    return [_read(r) for r in session.execute(text(
        f"SELECT {_COLUMNS} FROM authorizations WHERE org_id = current_org() ORDER BY created_at DESC, id")).all()]


def create(session: Session, caller: Caller, data: AuthorizationCreate) -> AuthorizationRead:
    """A pending authorization record: in force once an approver signs it."""
    if data.valid_until <= data.valid_from:
        raise Invalid("validity ends before it starts", reasons=["valid_until: after valid_from"])
    ident = uuid.uuid4()
    code = next_code(session, caller.org_id, "AUTH")
    session.execute(text(
        "INSERT INTO authorizations (id, org_id, code, authorization_type, title, issuer, protocol_keys, tags,"
        " valid_from, valid_until, status, created_at, created_by) VALUES (:i, :o, :c, :a, :t, :is, :pk, :tg, :vf,"
        " :vu, 'pending', now(), :by)"),
        {"i": ident, "o": caller.org_id, "c": code, "a": data.authorization_type, "t": data.title, "is": data.issuer,
         "pk": data.protocol_keys, "tg": data.tags, "vf": data.valid_from, "vu": data.valid_until,
         "by": caller.actor.id})
    row = _row(session, ident)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="authorization",
                 entity_id=ident, after=_payload(row, caller.org_id), context=caller.context)
    records.outbox(session, caller.org_id, TOPIC, _payload(row, caller.org_id))
    return _read(row)


def content_hash(r: object) -> str:
    """What the approver signs: the record's scope, issuer and validity (21 CFR 11.70)."""
    body = {k: records.jsonable(getattr(r, k)) for k in
            ("id", "code", "authorization_type", "title", "issuer", "protocol_keys", "tags", "valid_from",
             "valid_until")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def hash_of(session: Session, auth_id: uuid.UUID) -> str:
    """The content hash a signature of the authorization would bind now (shown on its page before signing)."""
    return content_hash(_row(session, auth_id))


def sign(session: Session, caller: Caller, auth_id: uuid.UUID, data: AuthorizationSign,
         limits: identity.LoginLimits) -> AuthorizationRead:
    """The approver's e-signature (password re-entered, meaning `approved`) puts the record in force."""
    r = _row(session, auth_id, lock=True)
    if r.status != "pending":  # type: ignore[attr-defined]
        raise Conflict(f"authorization {r.code} is {r.status}; only a pending one is signed")  # type: ignore[attr-defined]
    if r.created_by == caller.actor.id:  # type: ignore[attr-defined]
        raise Conflict("whoever recorded an authorization does not approve it (segregation of duties)")
    sig = signatures.sign(session, caller, signatures.SignatureInput(password=data.password,
                                                                     meaning=signatures.Meaning.approved,
                                                                     reason=data.reason),
                          entity_type="authorization", entity_id=str(auth_id), content_hash=content_hash(r),
                          limits=limits)
    session.execute(text(
        "UPDATE authorizations SET status = 'active', signature_id = :s, approved_by = :u, approved_by_display = :d,"
        " approved_at = :at, revision = revision + 1 WHERE id = :i"),
        {"s": sig.id, "u": caller.user_id, "d": sig.signer_name, "at": sig.signed_at, "i": auth_id})
    after = _row(session, auth_id)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="approve", entity_type="authorization",
                 entity_id=auth_id, before={"status": "pending"}, after=_payload(after, caller.org_id),
                 reason=data.reason, context=caller.context)
    records.outbox(session, caller.org_id, TOPIC, _payload(after, caller.org_id))
    return _read(after)


def revoke(session: Session, caller: Caller, auth_id: uuid.UUID, reason: str) -> AuthorizationRead:
    r = _row(session, auth_id, lock=True)
    if r.status == "revoked":  # type: ignore[attr-defined]
        raise Conflict(f"authorization {r.code} is revoked already")  # type: ignore[attr-defined]
    session.execute(text("UPDATE authorizations SET status = 'revoked', revision = revision + 1 WHERE id = :i"),
                    {"i": auth_id})
    after = _row(session, auth_id)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="revoke", entity_type="authorization",
                 entity_id=auth_id, before={"status": r.status}, after={"status": "revoked"},  # type: ignore[attr-defined]
                 reason=reason, context=caller.context)
    records.outbox(session, caller.org_id, TOPIC, _payload(after, caller.org_id))
    return _read(after)


def open_runs(session: Session) -> list[uuid.UUID]:
    """Every open run: what a change of authorizations or rules may hold or release."""
    return [r.id for r in session.execute(text(
        "SELECT id FROM runs WHERE org_id = current_org() AND status IN ('running', 'on_hold') ORDER BY id")).all()]


# ---------------------------------------------------------------- holds


def needs(session: Session, run_id: uuid.UUID, at: dt.datetime, surface: Surface | None = None
          ) -> tuple[list[str], dt.datetime | None]:
    """(what the run lacks, each naming the tag and the authorization; when the earliest authorization it relies on
    ends)."""
    rules = list_rules(session)
    if not rules:
        return [], None
    run = session.execute(text("SELECT protocol_key FROM runs WHERE id = :r"), {"r": run_id}).one()
    keys = (surface or surfaces.of_run(session, run_id)).keys()
    auths = [_read(r, at) for r in session.execute(text(
        f"SELECT {_COLUMNS} FROM authorizations WHERE org_id = current_org() AND status = 'active'")).all()]
    lacking: list[str] = []
    ends: list[dt.datetime] = []
    for rule in rules:
        hit = sorted(keys.intersection(rule.tags))
        if not hit:
            continue
        covering = [a for a in auths if a.in_force and a.authorization_type == rule.authorization_type
                    and (not a.protocol_keys or run.protocol_key in a.protocol_keys)
                    and (not a.tags or set(a.tags).intersection(hit))]
        if covering:
            ends.append(max(a.valid_until for a in covering))
        else:
            lacking.append(f"{', '.join(hit)} needs {rule.authorization_type} covering protocol {run.protocol_key}")
    return lacking, min(ends) if ends else None


def hold_of(session: Session, run_id: uuid.UUID) -> list[str]:
    """Why the run is on authorization hold now (empty: it is not)."""
    r = session.execute(text("SELECT held, reasons FROM run_compliance WHERE run_id = :r"), {"r": run_id}).first()
    return list(r.reasons) if r is not None and r.held else []


def check_run(session: Session, run: RunRef, at: dt.datetime) -> AuthorizationCheck:
    """What the run's workflow asks: is it held for want of an authorization now, and until when is it covered.
    A hold placed or lifted is an audit entry by the system and shows on the runs row."""
    run_id = uuid.UUID(run.run_id)
    surface = surfaces.of_run(session, run_id)
    lacking, expiry = needs(session, run_id, at, surface)
    held = bool(lacking)
    records.outbox(session, run.org_id, SNAPSHOT_TOPIC, {
        "org_id": run.org_id, "snapshot_id": str(uuid.uuid4()), "subject_type": "run", "subject_id": run.run_id,
        "taken_at": at, "tags": sorted(surface.keys()),
        "provenance": {t.key: t.provenance[0].text for t in surface.tags if t.provenance}, "held": held,
        "lacking": lacking})
    was = session.execute(text("SELECT held, reasons FROM run_compliance WHERE run_id = :r FOR UPDATE"),
                          {"r": run_id}).first()
    session.execute(text(
        "INSERT INTO run_compliance (run_id, org_id, held, reasons, next_expiry, checked_at)"
        " VALUES (:r, :o, :h, CAST(:why AS jsonb), :x, :at) ON CONFLICT (run_id) DO UPDATE SET held = excluded.held,"
        " reasons = excluded.reasons, next_expiry = excluded.next_expiry, checked_at = excluded.checked_at"),
        {"r": run_id, "o": run.org_id, "h": held, "why": json.dumps(lacking), "x": expiry, "at": at})
    was_held = bool(was and was.held)
    was_reasons = list(was.reasons) if was is not None else []
    current = session.execute(text("SELECT status, status_reason FROM runs WHERE id = :r FOR UPDATE"),
                              {"r": run_id}).one()
    reason = HOLD_PREFIX + "; ".join(lacking)
    if held and (not was_held or was_reasons != lacking):
        audit.record(session, org_id=run.org_id, actor=SYSTEM_ACTOR, action="authorization_hold", entity_type="run",
                     entity_id=run_id, before={"held": was_held}, after={"held": True, "lacking": lacking},
                     reason=reason[:2000])
    if held and (current.status == "running" or (current.status_reason or "").startswith(HOLD_PREFIX)):
        if current.status != "on_hold" or current.status_reason != reason[:2000]:
            records.set_run_status(session, run.run_id, "on_hold", reason[:2000])
    if not held and was_held:
        audit.record(session, org_id=run.org_id, actor=SYSTEM_ACTOR, action="authorization_release",
                     entity_type="run", entity_id=run_id, before={"held": True, "lacking": was_reasons},
                     after={"held": False}, reason="the authorizations the run needs are in force")
    if not held and current.status == "on_hold" and (current.status_reason or "").startswith(HOLD_PREFIX):
        records.set_run_status(session, run.run_id, "running", None)
    return AuthorizationCheck(held=held, reasons=lacking, next_expiry=expiry)
