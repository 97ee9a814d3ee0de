"""Alerts: raised once per cause, addressed to people or roles, read and acknowledged on record, optionally emailed.

`raise_alert` is the one way to raise one (expiring lots and calibrations, escalations, overdue events and CAPA
actions here; expiring authorizations and qualifications from domain/compliance): its `dedupe_key` names the
cause, so a scan that runs again, or an activity retried, raises nothing twice. Each new alert is an audit entry
by the system and an outbox row (topic `alerts`); reading and acknowledging are audit entries by the person.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.mail import MailSender
from domain import audit
from domain.alerts.models import Acknowledge, Addressees, AlertKind, AlertRead
from domain.audit import Severity
from domain.errors import NotFound
from domain.pagination import Page, after, next_cursor
from domain.roles import SYSTEM_ACTOR, Caller
from domain.runs import records

log = structlog.get_logger("flasktrack.alerts")

COLUMNS = ("id, org_id, kind, severity, subject_type, subject_id, title, body, addressed_users, addressed_roles,"
           " due_at, created_at, read_at, read_by, acknowledged_at, acknowledged_by, acknowledged_by_display,"
           " emailed_at, revision")


def alert_id(org_id: uuid.UUID | str, dedupe_key: str) -> uuid.UUID:
    return uuid.uuid5(uuid.UUID(str(org_id)), f"alert:{dedupe_key}")


def payload(row: Any) -> dict[str, object]:
    """The `alerts` outbox payload: one per revision (raised, read, acknowledged, emailed)."""
    m = row._mapping
    return {"alert_id": m["id"], "org_id": m["org_id"], "kind": m["kind"], "severity": m["severity"],
            "subject_type": m["subject_type"], "subject_id": m["subject_id"], "title": m["title"],
            "addressed_users": [str(u) for u in m["addressed_users"]], "addressed_roles": list(m["addressed_roles"]),
            "due_at": m["due_at"], "created_at": m["created_at"], "read_at": m["read_at"],
            "acknowledged_at": m["acknowledged_at"], "acknowledged_by": m["acknowledged_by"],
            "emailed_at": m["emailed_at"], "revision": m["revision"]}


def raise_alert(session: Session, org_id: uuid.UUID | str, kind: AlertKind | str, subject: tuple[str, str],
                addressees: Addressees, *, title: str, body: str = "", severity: str = "warning",
                dedupe_key: str | None = None, due_at: dt.datetime | None = None) -> uuid.UUID | None:
    """Raise an alert about `subject` (type, id) for `addressees`, in the caller's transaction; its id, or None
    when this cause (`dedupe_key`, default kind:subject) raised one before."""
    kind = AlertKind(kind)
    key = dedupe_key or f"{kind.value}:{subject[0]}:{subject[1]}"
    ident = alert_id(org_id, key)
    row = session.execute(text(
        "INSERT INTO alerts (id, org_id, kind, severity, subject_type, subject_id, title, body, dedupe_key,"
        " addressed_users, addressed_roles, due_at, created_at) VALUES (:id, :o, :k, :sev, :st, :si, :t, :b, :key,"
        " CAST(:users AS uuid[]), CAST(:roles AS text[]), :due, :at) ON CONFLICT (org_id, dedupe_key) DO NOTHING"
        f" RETURNING {COLUMNS}"),
        {"id": ident, "o": str(org_id), "k": kind.value, "sev": severity, "st": subject[0], "si": str(subject[1]),
         "t": title[:500], "b": body[:4000], "key": key, "users": [str(u) for u in addressees.users],
         "roles": list(addressees.roles), "due": due_at, "at": records.now()}).first()
    if row is None:
        return None
    records.outbox(session, org_id, "alerts", payload(row))
    audit.record(session, org_id=org_id, actor=SYSTEM_ACTOR, action="raise", entity_type="alert", entity_id=ident,
                 severity=Severity.warning if severity in ("warning", "critical") else Severity.notice,
                 after={"kind": kind.value, "subject": [subject[0], str(subject[1])], "title": title,
                        "users": [str(u) for u in addressees.users], "roles": list(addressees.roles)},
                 reason=title)
    return ident


def _read(row: Any) -> AlertRead:
    return AlertRead.model_validate(row._mapping)


_MINE = "(CAST(:u AS uuid) = ANY(addressed_users) OR :r = ANY(addressed_roles))"


def list_alerts(session: Session, caller: Caller, *, unacknowledged: bool = False, kind: AlertKind | None = None,
                cursor: str | None = None, limit: int = 50) -> Page[AlertRead]:
    """The alerts addressed to the caller or their role, newest first."""
    cond, params = after(cursor, "created_at", "id")
    where = ["org_id = current_org()", cond, _MINE]
    params.update({"u": str(caller.user_id) if caller.user_id else None, "r": caller.role.value, "lim": limit})
    if unacknowledged:
        where.append("acknowledged_at IS NULL")
    if kind is not None:
        where.append("kind = :k")
        params["k"] = kind.value
    rows = session.execute(text(f"SELECT {COLUMNS} FROM alerts WHERE {' AND '.join(where)}"
                                " ORDER BY created_at DESC, id DESC LIMIT :lim"), params).all()
    items = [_read(r) for r in rows]
    return Page[AlertRead](items=items, next_cursor=next_cursor(items, limit))


def _mine(session: Session, caller: Caller, ident: uuid.UUID, *, lock: bool = False) -> Any:
    row = session.execute(text(f"SELECT {COLUMNS} FROM alerts WHERE id = :i AND {_MINE}"
                               + (" FOR UPDATE" if lock else "")),
                          {"i": ident, "u": str(caller.user_id) if caller.user_id else None,
                           "r": caller.role.value}).first()
    if row is None:
        raise NotFound(f"no alert {ident} addressed to you")
    return row


def get(session: Session, caller: Caller, ident: uuid.UUID) -> AlertRead:
    return _read(_mine(session, caller, ident))


def mark_read(session: Session, caller: Caller, ident: uuid.UUID) -> AlertRead:
    """The first reading is recorded (who, when; an audit entry); later ones change nothing."""
    before = _mine(session, caller, ident, lock=True)
    if before.read_at is not None:
        return _read(before)
    row = session.execute(text(f"UPDATE alerts SET read_at = :at, read_by = :by, revision = revision + 1"
                               f" WHERE id = :i RETURNING {COLUMNS}"),
                          {"at": records.now(), "by": caller.actor.id, "i": ident}).one()
    records.outbox(session, caller.org_id, "alerts", payload(row))
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="read", entity_type="alert",
                 entity_id=ident, after={"read_at": records.jsonable(row.read_at)}, context=caller.context)
    return _read(row)


def acknowledge(session: Session, caller: Caller, ident: uuid.UUID, data: Acknowledge) -> AlertRead:
    """Acknowledge the alert (it counts as read too), with an optional note; an audit entry. Once."""
    before = _mine(session, caller, ident, lock=True)
    if before.acknowledged_at is not None:
        return _read(before)
    at = records.now()
    row = session.execute(text(
        "UPDATE alerts SET acknowledged_at = :at, acknowledged_by = :by, acknowledged_by_display = :d,"
        " read_at = coalesce(read_at, :at), read_by = coalesce(read_by, :by), revision = revision + 1"
        f" WHERE id = :i RETURNING {COLUMNS}"),
        {"at": at, "by": caller.actor.id, "d": caller.actor.display, "i": ident}).one()
    records.outbox(session, caller.org_id, "alerts", payload(row))
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="acknowledge", entity_type="alert",
                 entity_id=ident, before={"acknowledged_at": None},
                 after={"acknowledged_at": records.jsonable(at), "title": row.title}, reason=data.note,
                 context=caller.context)
    return _read(row)


# ---------------------------------------------------------------- email


def recipients(session: Session, row: Any) -> list[str]:
    """The email addresses of the active members an alert is addressed to (by id or by role)."""
    return list(session.execute(text(
        "SELECT DISTINCT u.email FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.org_id = current_org()"
        " AND m.active AND (m.user_id = ANY(:users) OR m.role = ANY(:roles)) ORDER BY u.email"),
        {"users": list(row.addressed_users), "roles": list(row.addressed_roles)}).scalars())


def deliver(session: Session, sender: MailSender, *, limit: int = 100) -> int:
    """Email the organization's alerts not sent yet (in the session's organization); how many were sent. A
    failed send is recorded on the alert (`email_error`) and not retried."""
    rows = session.execute(text(f"SELECT {COLUMNS} FROM alerts WHERE org_id = current_org() AND emailed_at IS NULL"
                                " AND email_error IS NULL ORDER BY created_at LIMIT :n FOR UPDATE SKIP LOCKED"),
                           {"n": limit}).all()
    sent = 0
    for row in rows:
        to = recipients(session, row)
        error = None
        if to:
            try:
                sender.send(to, f"[Flask Track] {row.title}", f"{row.title}\n\n{row.body}\n\nAlert {row.id}")
                sent += 1
            except Exception as exc:  # noqa: BLE001 - the failure is recorded on the alert
                error = f"{type(exc).__name__}: {str(exc)[:500]}"
                log.warning("alert email failed", alert_id=str(row.id), error=error)
        else:
            error = "no member to email"
        session.execute(text("UPDATE alerts SET emailed_at = :at, email_error = :e WHERE id = :i"),
                        {"at": records.now() if error is None else None, "e": error, "i": row.id})
    return sent


# ---------------------------------------------------------------- the periodic scan


def scan_expiring(session: Session, org_id: uuid.UUID | str, *, horizon_days: int,
                  today: dt.date | None = None) -> list[uuid.UUID]:
    """Alerts for lots expiring and equipment whose calibration falls due within `horizon_days` (or past), once
    per record and date; the new alerts' ids."""
    today = today or dt.datetime.now(dt.UTC).date()
    until = today + dt.timedelta(days=horizon_days)
    raised: list[uuid.UUID] = []
    rows = session.execute(text(
        "SELECT id, kind, code, name, CASE kind WHEN 'lot' THEN attributes->>'expiry_date'"
        " ELSE attributes->>'calibration_due' END AS due FROM registry_items WHERE org_id = current_org()"
        " AND archived_at IS NULL AND ((kind = 'lot' AND status <> 'used_up' AND attributes ? 'expiry_date')"
        " OR (kind = 'equipment' AND attributes ? 'calibration_due'))")).all()
    for r in rows:
        try:
            due = dt.date.fromisoformat(str(r.due))
        except ValueError:
            continue
        if due > until:
            continue
        lot = r.kind == "lot"
        kind = AlertKind.lot_expiry if lot else AlertKind.calibration_due
        gone = due < today
        what = ("expired on" if gone else "expires on") if lot else ("calibration was due on" if gone
                                                                      else "calibration is due on")
        title = f"{'Lot' if lot else 'Equipment'} {r.code} ({r.name}) {what} {due.isoformat()}"
        ident = raise_alert(session, org_id, kind, ("registry_item", str(r.id)), Addressees(roles=("lab_manager",)),
                            title=title, severity="critical" if gone else "warning",
                            dedupe_key=f"{kind.value}:{r.id}:{due.isoformat()}",
                            due_at=dt.datetime.combine(due, dt.time(), dt.UTC))
        if ident:
            raised.append(ident)
    return raised
