"""Formal audits: an auditor scopes an audit (framework, period, runs, labs), records findings (each linked to
evidence files and, when corrective work follows, to a compliance event), and finalizes it with an outcome and
their electronic signature over the audit's content hash.

Finalized, the audit is immutable: the database refuses any change to it or its findings, for every role including
the table owner (migration 0023's trigger). The signature and the audit log's `finalize` entry both carry the
content hash, so the audit chain vouches for what was signed. Outbox topics: `audits`, `audit_findings`.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit, signatures
from domain.canonical import canonical_bytes
from domain.codes import next_code
from domain.errors import Conflict, Forbidden, Invalid, NotFound
from domain.identity.service import LoginLimits
from domain.inspections.models import AuditCreate, AuditDetail, AuditFinalize, AuditRead, FindingCreate, FindingRead
from domain.pagination import Page, after, next_cursor
from domain.roles import Caller
from domain.runs import records

CODE_PREFIX = "AU"
COLUMNS = ("id, org_id, code, title, framework, period_start, period_end, scope_runs, scope_labs, auditor_id,"
           " auditor_display, status, outcome, summary, content_hash, signature_id, finalized_at, created_at,"
           " created_by, updated_at, revision")
FINDING_COLUMNS = ("id, org_id, audit_id, number, severity, title, description, evidence_ids, event_id, created_at,"
                   " created_by")


def _row(session: Session, audit_id: uuid.UUID | str, *, lock: bool = False) -> Any:
    row = session.execute(text(f"SELECT {COLUMNS} FROM audits WHERE id = :i" + (" FOR UPDATE" if lock else "")),
                          {"i": str(audit_id)}).first()
    if row is None:
        raise NotFound(f"no audit {audit_id}")
    return row


def _findings(session: Session, audit_id: uuid.UUID | str) -> list[Any]:
    return list(session.execute(text(f"SELECT {FINDING_COLUMNS} FROM audit_findings WHERE audit_id = :a"
                                     " ORDER BY number"), {"a": str(audit_id)}))


def _read(row: Any) -> AuditRead:
    return AuditRead.model_validate(row._mapping)


def payload(row: Any) -> dict[str, object]:
    m = row._mapping
    return {"audit_id": m["id"], "org_id": m["org_id"], "code": m["code"], "title": m["title"],
            "framework": m["framework"], "period_start": m["period_start"], "period_end": m["period_end"],
            "scope_runs": [str(r) for r in m["scope_runs"]], "scope_labs": list(m["scope_labs"]),
            "auditor_id": m["auditor_id"], "auditor_display": m["auditor_display"], "status": m["status"],
            "outcome": m["outcome"], "content_hash": m["content_hash"], "finalized_at": m["finalized_at"],
            "created_at": m["created_at"], "updated_at": m["updated_at"], "revision": m["revision"]}


def finding_payload(row: Any) -> dict[str, object]:
    m = row._mapping
    return {"finding_id": m["id"], "org_id": m["org_id"], "audit_id": m["audit_id"], "number": m["number"],
            "severity": m["severity"], "title": m["title"], "evidence_ids": [str(e) for e in m["evidence_ids"]],
            "event_id": m["event_id"], "created_at": m["created_at"], "created_by": m["created_by"]}


def get(session: Session, audit_id: uuid.UUID) -> AuditDetail:
    row = _row(session, audit_id)
    sig = None
    if row.signature_id is not None:
        s = session.execute(text("SELECT id, signer_id, signer_name, meaning, reason, entity_type, entity_id,"
                                 " content_hash, signed_at FROM signatures WHERE id = :i"),
                              {"i": row.signature_id}).first()
        sig = signatures.Signature.model_validate(s._mapping) if s else None
    return AuditDetail(**_read(row).model_dump(), signature=sig,
                       findings=[FindingRead.model_validate(f._mapping) for f in _findings(session, audit_id)])


def list_audits(session: Session, *, status: str | None = None, cursor: str | None = None,
                limit: int = 50) -> Page[AuditRead]:
    cond, params = after(cursor, "created_at", "id")
    where = ["org_id = current_org()", cond]
    params["lim"] = limit
    if status is not None:
        where.append("status = :s")
        params["s"] = status
    rows = session.execute(text(f"SELECT {COLUMNS} FROM audits WHERE {' AND '.join(where)}"
                                " ORDER BY created_at DESC, id DESC LIMIT :lim"), params).all()
    items = [_read(r) for r in rows]
    return Page[AuditRead](items=items, next_cursor=next_cursor(items, limit))


def _missing(session: Session, table: str, ids: list[uuid.UUID], field: str, what: str) -> list[str]:
    if not ids:
        return []
    found = set(session.execute(text(f"SELECT id FROM {table} WHERE id = ANY(:i)"), {"i": ids}).scalars())
    return [f"{field}: {i} is not {what} of this organization" for i in ids if i not in found]


def create(session: Session, caller: Caller, data: AuditCreate) -> tuple[AuditDetail, bool]:
    """Open an audit (status `draft`, code `AU-000001`) with the caller as its auditor."""
    if caller.user_id is None:
        raise Forbidden("an audit is conducted by a person (it ends with their signature); API keys cannot")
    rid = caller.context.request_id
    if rid:
        prior = session.execute(text("SELECT id FROM audits WHERE org_id = current_org() AND request_id = :r"),
                                {"r": rid}).scalar()
        if prior is not None:
            return get(session, prior), False
    runs = list(dict.fromkeys(data.runs))
    bad = _missing(session, "runs", runs, "runs", "a run")
    if bad:
        raise Invalid("an audit's scope names runs of this organization", reasons=bad)
    at = records.now()
    row = session.execute(text(
        "INSERT INTO audits (id, org_id, code, title, framework, period_start, period_end, scope_runs, scope_labs,"
        " auditor_id, auditor_display, status, request_id, created_at, created_by, updated_at) VALUES (:id, :o, :c,"
        " :t, :f, :ps, :pe, CAST(:runs AS uuid[]), CAST(:labs AS text[]), :aid, :ad, 'draft', :rq, :at, :by, :at)"
        f" RETURNING {COLUMNS}"),
        {"id": uuid.uuid4(), "o": caller.org_id, "c": next_code(session, caller.org_id, CODE_PREFIX),
         "t": data.title, "f": data.framework, "ps": data.period_start, "pe": data.period_end,
         "runs": [str(r) for r in runs], "labs": [lab.strip() for lab in data.labs], "aid": caller.user_id,
         "ad": caller.actor.display, "rq": rid, "at": at, "by": caller.actor.id}).one()
    records.outbox(session, caller.org_id, "audits", payload(row))
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="audit",
                 entity_id=row.id, after=_read(row).model_dump(mode="json"), reason=data.title,
                 context=caller.context, occurred_at=at)
    return get(session, row.id), True


def _editable(row: Any, caller: Caller) -> None:
    if row.status != "draft":
        raise Conflict(f"audit {row.code} is finalized: it cannot change")
    if str(row.auditor_id) != str(caller.user_id):
        raise Forbidden(f"audit {row.code} is {row.auditor_display}'s: only its auditor records findings and "
                        "finalizes it")


def add_finding(session: Session, caller: Caller, audit_id: uuid.UUID, data: FindingCreate) -> AuditDetail:
    """A finding of a draft audit, by its auditor, linked to evidence files and optionally a compliance event."""
    row = _row(session, audit_id, lock=True)
    _editable(row, caller)
    evidence = list(dict.fromkeys(data.evidence))
    bad = _missing(session, "evidence_files", evidence, "evidence", "an evidence file")
    bad += _missing(session, "compliance_events", [data.event_id] if data.event_id else [], "event_id",
                    "a compliance event")
    if bad:
        raise Invalid("a finding links to records of this organization", reasons=bad)
    number = session.execute(text("SELECT coalesce(max(number), 0) + 1 FROM audit_findings WHERE audit_id = :a"),
                             {"a": audit_id}).scalar_one()
    f = session.execute(text(
        "INSERT INTO audit_findings (id, org_id, audit_id, number, severity, title, description, evidence_ids,"
        " event_id, created_at, created_by) VALUES (:id, :o, :a, :n, :s, :t, :d, CAST(:ev AS uuid[]), :e, :at, :by)"
        f" RETURNING {FINDING_COLUMNS}"),
        {"id": uuid.uuid4(), "o": caller.org_id, "a": audit_id, "n": number, "s": data.severity.value,
         "t": data.title, "d": data.description, "ev": [str(e) for e in evidence], "e": data.event_id,
         "at": records.now(), "by": caller.actor.id}).one()
    records.outbox(session, caller.org_id, "audit_findings", finding_payload(f))
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="add_finding", entity_type="audit",
                 entity_id=audit_id, after=FindingRead.model_validate(f._mapping).model_dump(mode="json"),
                 reason=data.title, context=caller.context)
    return get(session, audit_id)


def content_hash(session: Session, row: Any, outcome: str, summary: str) -> str:
    """SHA-256 of what the auditor signs: scope, auditor, findings, outcome and summary (canonical JSON)."""
    body = {"audit": {k: v for k, v in _read(row).model_dump(mode="json").items()
                      if k not in ("status", "outcome", "summary", "content_hash", "finalized_at", "revision")},
            "findings": [FindingRead.model_validate(f._mapping).model_dump(mode="json")
                         for f in _findings(session, row.id)],
            "outcome": outcome, "summary": summary}
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def finalize(session: Session, caller: Caller, audit_id: uuid.UUID, data: AuditFinalize,
             limits: LoginLimits) -> AuditDetail:
    """The auditor signs the outcome (password re-entered, meaning `responsibility`); the audit is immutable from
    then on, and its content hash is in the audit log's `finalize` entry."""
    row = _row(session, audit_id, lock=True)
    _editable(row, caller)
    digest = content_hash(session, row, data.outcome.value, data.summary)
    sig = signatures.sign(session, caller, signatures.SignatureInput(
        password=data.password, meaning=signatures.Meaning.responsibility, reason=f"audit outcome: {data.outcome}"),
        entity_type="audit", entity_id=str(audit_id), content_hash=digest, limits=limits)
    new = session.execute(text(
        "UPDATE audits SET status = 'finalized', outcome = :o, summary = :s, content_hash = :h, signature_id = :sig,"
        f" finalized_at = :at, updated_at = :at, revision = revision + 1 WHERE id = :i RETURNING {COLUMNS}"),
        {"o": data.outcome.value, "s": data.summary, "h": digest, "sig": sig.id, "at": sig.signed_at,
         "i": audit_id}).one()
    records.outbox(session, caller.org_id, "audits", payload(new))
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="finalize", entity_type="audit",
                 entity_id=audit_id, before={"status": "draft"},
                 after={"status": "finalized", "outcome": data.outcome.value, "content_hash": digest,
                        "signature_id": str(sig.id), "findings": len(_findings(session, audit_id))},
                 reason=data.summary[:2000], context=caller.context)
    return get(session, audit_id)
