"""Qualifications: training records per person (course, completed, expiry, evidence). A task step may require one
(`requires_qualification` in the protocol definition, compiled into the plan); a person without a current record
of that course is refused the completion, the reason naming the course (the refusal is on record like every
refused completion)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.compliance.models import QualificationCreate, QualificationRead
from domain.errors import Invalid, NotFound
from domain.protocols.plan import TaskNode
from domain.roles import Caller
from domain.runs.records import jsonable, outbox

TOPIC = "qualification"
_COLUMNS = "id, org_id, user_id, course, completed_on, expires_on, evidence_id, recorded_at, recorded_by"


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _read(r: object) -> QualificationRead:
    return QualificationRead(id=r.id, user_id=r.user_id, course=r.course, completed_on=r.completed_on,  # type: ignore[attr-defined]
                             expires_on=r.expires_on, evidence_id=r.evidence_id,  # type: ignore[attr-defined]
                             current=r.expires_on is None or r.expires_on >= _today(),  # type: ignore[attr-defined]
                             recorded_at=r.recorded_at)  # type: ignore[attr-defined]


def record(session: Session, caller: Caller, data: QualificationCreate) -> QualificationRead:
    if data.expires_on is not None and data.expires_on <= data.completed_on:
        raise Invalid("expiry before completion", reasons=["expires_on: after completed_on"])
    if session.execute(text("SELECT 1 FROM memberships WHERE org_id = current_org() AND user_id = :u"),
                       {"u": data.user_id}).first() is None:
        raise NotFound(f"no member {data.user_id} in this organization")
    if data.evidence_id is not None and session.execute(
            text("SELECT 1 FROM evidence_files WHERE org_id = current_org() AND id = :e"),
            {"e": data.evidence_id}).first() is None:
        raise NotFound(f"no evidence file {data.evidence_id} in this organization")
    ident = uuid.uuid4()
    row = session.execute(text(
        f"INSERT INTO qualifications ({_COLUMNS}) VALUES (:i, :o, :u, :c, :d, :x, :e, now(), :by)"
        f" RETURNING {_COLUMNS}"),
        {"i": ident, "o": caller.org_id, "u": data.user_id, "c": data.course, "d": data.completed_on,
         "x": data.expires_on, "e": data.evidence_id, "by": caller.actor.id}).one()
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="qualification",
                 entity_id=ident, after=data.model_dump(mode="json"), context=caller.context)
    payload = {c: _plain(getattr(row, c)) for c in _COLUMNS.split(", ")}  # lake/tables.py QUALIFICATIONS
    payload["qualification_id"] = payload.pop("id")
    outbox(session, caller.org_id, TOPIC, payload)
    return _read(row)


def _plain(value: object) -> object:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    return jsonable(value)


def list_for(session: Session, user_id: uuid.UUID | None = None) -> list[QualificationRead]:
    where = " AND user_id = :u" if user_id else ""
    rows = session.execute(text(f"SELECT {_COLUMNS} FROM qualifications WHERE org_id = current_org(){where}"
                                " ORDER BY user_id, course, completed_on DESC"), {"u": user_id}).all()
    return [_read(r) for r in rows]


def missing(session: Session, step: TaskNode, user_id: str | None) -> list[str]:
    """Why this person may not perform the step for want of a qualification (empty: nothing missing)."""
    course = step.requires_qualification
    if not course:
        return []
    if user_id is None:
        return [f"qualification: step '{step.key}' requires a current '{course}' qualification; only a person "
                "with one may complete it"]
    rows = session.execute(text(
        "SELECT completed_on, expires_on FROM qualifications WHERE org_id = current_org() AND user_id = :u"
        " AND course = :c ORDER BY expires_on DESC NULLS FIRST"), {"u": user_id, "c": course}).all()
    if any(r.expires_on is None or r.expires_on >= _today() for r in rows):
        return []
    if rows:
        return [f"qualification: '{course}' expired on {rows[0].expires_on.isoformat()}; step '{step.key}' requires "
                "a current one"]
    return [f"qualification: step '{step.key}' requires '{course}' and you have no training record of it"]
