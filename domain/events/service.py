"""Compliance events: raised by a person or by the system, worked through investigation, corrective and
preventive actions (CAPA) and an effectiveness check, closed with an e-signature by someone other than the reporter.

The event's life is its Temporal workflow's (workflows/event.py): each transition is an Update whose activity
calls `apply` here, in one transaction: the rule checks (state, role, the action's owner, segregation of duties),
the rows, the audit entry and the outbox rows (topics `compliance_events`, `capa_actions`). A transition is
recorded once per Update id (`compliance_event_transitions`), so an activity re-run after a crash writes nothing
twice. Creating an event writes its row; the workflow is started by the API right after, or by the worker's watch
for events the system raised (`unstarted`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit, signatures
from domain.alerts.models import Addressees, AlertKind
from domain.alerts.service import raise_alert
from domain.audit import Severity
from domain.canonical import canonical_bytes
from domain.codes import next_code
from domain.errors import Conflict, Forbidden, Invalid, NotFound
from domain.events.messages import ActionState, CapaEscalation, EventState, EventStep
from domain.events.models import (
    ActionRead,
    EventCreate,
    EventDetail,
    EventKind,
    EventLinks,
    EventRead,
    EventSeverity,
    EventSource,
    EventStatus,
)
from domain.events.rows import ACTION_COLUMNS, EVENT_COLUMNS, ActionRow, EventRow
from domain.pagination import Page, after, next_cursor
from domain.roles import PERMISSIONS, SYSTEM_ACTOR, Actor, Caller, Permission, RequestContext
from domain.rows import from_row
from domain.runs import records

CODE_PREFIX = "CE"
OVERDUE_AFTER = dt.timedelta(days=30)  # an event still open this long after it was raised is past due
# link field → (target type, the table and condition that say the id is a record of the organization)
LINK_TABLES: dict[str, tuple[str, str]] = {
    "runs": ("run", "runs"),
    "steps": ("step", "tasks"),
    "samples": ("sample", "samples"),
    "batches": ("batch", "batches"),
    "equipment": ("equipment", "registry_items WHERE kind = 'equipment' AND"),
    "evidence": ("evidence", "evidence_files"),
}
FIELD_OF = {target: name for name, (target, _) in LINK_TABLES.items()}
MANAGERS = PERMISSIONS[Permission.events_manage]


# ---------------------------------------------------------------- reading


def row_of(session: Session, event_id: uuid.UUID | str, *, lock: bool = False) -> EventRow:
    row = session.execute(text(f"SELECT {EVENT_COLUMNS} FROM compliance_events WHERE id = :i"
                               + (" FOR UPDATE" if lock else "")), {"i": str(event_id)}).first()
    if row is None:
        raise NotFound(f"no compliance event {event_id}")
    return from_row(EventRow, row)


def _actions(session: Session, event_id: uuid.UUID | str) -> list[ActionRow]:
    return [from_row(ActionRow, r) for r in session.execute(
        text(f"SELECT {ACTION_COLUMNS} FROM capa_actions WHERE event_id = :e ORDER BY created_at, id"),
        {"e": str(event_id)})]


def _links(session: Session, event_id: uuid.UUID | str) -> EventLinks:
    found: dict[str, list[uuid.UUID]] = {name: [] for name in LINK_TABLES}
    for r in session.execute(text("SELECT target_type, target_id FROM compliance_event_links WHERE event_id = :e"
                                  " ORDER BY target_type, target_id"), {"e": str(event_id)}):
        found[FIELD_OF[r.target_type]].append(r.target_id)
    return EventLinks(**found)


def read(row: EventRow) -> EventRead:
    return EventRead.model_validate(row, from_attributes=True)


def action_read(a: ActionRow, now: dt.datetime | None = None) -> ActionRead:
    now = now or records.now()
    return ActionRead.model_validate({**a.__dict__, "overdue": a.status == "open" and a.due_at < now})


def get(session: Session, event_id: uuid.UUID) -> EventDetail:
    row = row_of(session, event_id)
    sig = None
    if row.signature_id is not None:
        s = session.execute(text("SELECT id, signer_id, signer_name, meaning, reason, entity_type, entity_id,"
                                 " content_hash, signed_at FROM signatures WHERE id = :i"),
                            {"i": row.signature_id}).first()
        sig = signatures.Signature.model_validate(s._mapping) if s else None
    return EventDetail(**read(row).model_dump(), links=_links(session, event_id),
                       actions=[action_read(a) for a in _actions(session, event_id)], signature=sig)


def list_events(session: Session, *, status: EventStatus | None = None, kind: EventKind | None = None,
                cursor: str | None = None, limit: int = 50) -> Page[EventRead]:
    cond, params = after(cursor, "created_at", "id")
    where = ["org_id = current_org()", cond]
    params["lim"] = limit
    if status is not None:
        where.append("status = :s")
        params["s"] = status.value
    if kind is not None:
        where.append("kind = :k")
        params["k"] = kind.value
    rows = [from_row(EventRow, r) for r in session.execute(
        text(f"SELECT {EVENT_COLUMNS} FROM compliance_events WHERE {' AND '.join(where)}"
             " ORDER BY created_at DESC, id DESC LIMIT :lim"), params)]
    return Page[EventRead](items=[read(r) for r in rows], next_cursor=next_cursor(rows, limit))


def state(session: Session, event_id: uuid.UUID | str) -> EventState:
    """The event as its workflow needs it."""
    row = row_of(session, event_id)
    return EventState(event_id=str(row.id), code=row.code, status=row.status, reporter_id=row.reporter_id,
                      effective=row.effective,
                      actions=[ActionState(id=str(a.id), owner_id=str(a.owner_id), due_at=a.due_at,
                                           done=a.status == "done", level=a.escalation_level)
                               for a in _actions(session, event_id)])


# ---------------------------------------------------------------- outbox payloads


def payload(row: EventRow) -> dict[str, object]:
    """The `compliance_events` outbox payload (one per revision)."""
    return {"event_id": row.id, "org_id": row.org_id, "code": row.code, "kind": row.kind, "severity": row.severity,
            "title": row.title, "status": row.status, "source": row.source, "reporter_id": row.reporter_id,
            "reporter_display": row.reporter_display, "root_cause": row.root_cause, "effective": row.effective,
            "closed_at": row.closed_at, "closed_by": row.closed_by, "created_at": row.created_at,
            "updated_at": row.updated_at, "revision": row.revision}


def action_payload(a: ActionRow) -> dict[str, object]:
    """The `capa_actions` outbox payload (one per revision)."""
    return {"action_id": a.id, "org_id": a.org_id, "event_id": a.event_id, "kind": a.kind,
            "description": a.description, "owner_id": a.owner_id, "owner_display": a.owner_display,
            "due_at": a.due_at, "status": a.status, "done_at": a.done_at, "done_by": a.done_by,
            "escalation_level": a.escalation_level, "created_at": a.created_at, "updated_at": a.updated_at,
            "revision": a.revision}


# ---------------------------------------------------------------- raising


def check_links(session: Session, links: EventLinks) -> list[tuple[str, uuid.UUID]]:
    """The links as (target type, id), each checked to be a record of the organization (Invalid otherwise)."""
    out: list[tuple[str, uuid.UUID]] = []
    bad: list[str] = []
    for name, (target, table) in LINK_TABLES.items():
        ids = list(dict.fromkeys(getattr(links, name)))
        if not ids:
            continue
        where = f"{table} id = ANY(:i)" if table.endswith("AND") else f"{table} WHERE id = ANY(:i)"
        found = set(session.execute(text(f"SELECT id FROM {where}"), {"i": ids}).scalars())
        bad += [f"links.{name}: {i} is not a {target} of this organization" for i in ids if i not in found]
        out += [(target, i) for i in ids]
    if bad:
        raise Invalid("an event links only to records of this organization", reasons=bad)
    return out


def _insert(session: Session, org_id: uuid.UUID | str, *, kind: str, severity: str, title: str, description: str,
            source: EventSource, reporter: Actor, links: Sequence[tuple[str, uuid.UUID]],
            source_key: str | None = None, request_id: str | None = None) -> EventRow | None:
    at = records.now()
    event_id = uuid.uuid5(uuid.UUID(str(org_id)), f"event:{source_key}") if source_key else uuid.uuid4()
    got = session.execute(text(
        "INSERT INTO compliance_events (id, org_id, code, kind, severity, title, description, status, source,"
        " source_key, reporter_type, reporter_id, reporter_display, request_id, created_at, updated_at) VALUES"
        " (:id, :o, :code, :k, :sev, :t, :d, 'open', :src, :sk, :rt, :ri, :rd, :rq, :at, :at)"
        f" ON CONFLICT DO NOTHING RETURNING {EVENT_COLUMNS}"),
        {"id": event_id, "o": str(org_id), "code": next_code(session, org_id, CODE_PREFIX), "k": kind,
         "sev": severity, "t": title[:200], "d": description, "src": source.value, "sk": source_key,
         "rt": reporter.type, "ri": reporter.id, "rd": reporter.display, "rq": request_id, "at": at}).first()
    if got is None:
        return None
    row = from_row(EventRow, got)
    for target, ident in links:
        session.execute(text("INSERT INTO compliance_event_links (org_id, event_id, target_type, target_id)"
                             " VALUES (:o, :e, :t, :i) ON CONFLICT DO NOTHING"),
                        {"o": str(org_id), "e": row.id, "t": target, "i": ident})
    records.outbox(session, org_id, "compliance_events", payload(row))
    return row


def _view(row: EventRow, links: Sequence[tuple[str, uuid.UUID]] = ()) -> dict[str, Any]:
    out = read(row).model_dump(mode="json", exclude={"created_at", "updated_at"})
    if links:
        out["links"] = [[t, str(i)] for t, i in links]
    return out


def create(session: Session, caller: Caller, data: EventCreate) -> tuple[EventDetail, bool]:
    """A person raises an event (status `open`, code `CE-000001`); (it, whether created now: False when this
    X-Request-ID raised it before)."""
    rid = caller.context.request_id
    if rid:
        prior = session.execute(text("SELECT id FROM compliance_events WHERE org_id = current_org()"
                                     " AND request_id = :r"), {"r": rid}).scalar()
        if prior is not None:
            return get(session, prior), False
    links = check_links(session, data.links)
    row = _insert(session, caller.org_id, kind=data.kind.value, severity=data.severity.value, title=data.title,
                  description=data.description, source=EventSource.person, reporter=caller.actor, links=links,
                  request_id=rid)
    if row is None:  # the same request id raced this one in
        raise Conflict(f"X-Request-ID {rid} raised an event meanwhile: read it again")
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="raise", entity_type="compliance_event",
                 entity_id=row.id, after=_view(row, links), reason=data.title, context=caller.context,
                 severity=Severity.warning, occurred_at=row.created_at)
    return get(session, row.id), True


def raise_system(session: Session, org_id: uuid.UUID | str, *, kind: EventKind, severity: EventSeverity, title: str,
                 description: str, source: EventSource, source_key: str,
                 links: Mapping[str, Sequence[uuid.UUID | str]] | None = None,
                 context: RequestContext | None = None) -> uuid.UUID | None:
    """An event the platform raises (an escalation at its last level, a sample marked contaminated, a gate
    overridden), in the caller's transaction; its id, or None when `source_key` raised one before. Links name
    records the caller already holds (no check beyond the organization's own rows)."""
    pairs = [(LINK_TABLES[name][0], uuid.UUID(str(i))) for name, ids in (links or {}).items() for i in ids]
    row = _insert(session, org_id, kind=kind.value, severity=severity.value, title=title, description=description,
                  source=source, reporter=SYSTEM_ACTOR, links=pairs, source_key=source_key)
    if row is None:
        return None
    audit.record(session, org_id=org_id, actor=SYSTEM_ACTOR, action="raise", entity_type="compliance_event",
                 entity_id=row.id, after=_view(row, pairs), reason=title, severity=Severity.warning, context=context)
    raise_alert(session, org_id, AlertKind.other, ("compliance_event", str(row.id)),
                Addressees(roles=("lab_manager",)), title=f"{row.code} raised by the platform: {title}",
                body=description, severity="critical" if severity in (EventSeverity.high, EventSeverity.critical)
                else "warning", dedupe_key=f"event_raised:{row.id}")
    return row.id


def unstarted(session: Session, limit: int = 100) -> list[uuid.UUID]:
    """Events of the session's organization whose workflow has not been started yet (raised by the system)."""
    return list(session.execute(text("SELECT id FROM compliance_events WHERE org_id = current_org()"
                                     " AND workflow_started_at IS NULL ORDER BY created_at LIMIT :n"),
                                {"n": limit}).scalars())


def mark_started(session: Session, event_id: uuid.UUID | str) -> None:
    session.execute(text("UPDATE compliance_events SET workflow_started_at = coalesce(workflow_started_at, :at)"
                         " WHERE id = :i"), {"at": records.now(), "i": str(event_id)})


# ---------------------------------------------------------------- transitions


def content_hash(session: Session, row: EventRow) -> str:
    """SHA-256 of what a closure signs: the event, its links, root cause, actions and effectiveness check."""
    event = _view(row)
    event.pop("revision", None)
    body = {"event": event, "links": _links(session, row.id).model_dump(mode="json"),
            "actions": [action_read(a).model_dump(mode="json", exclude={"overdue"}) for a in _actions(session, row.id)]}
    return hashlib.sha256(canonical_bytes(records.jsonable(body))).hexdigest()


def check_close(session: Session, caller: Caller, event_id: uuid.UUID) -> str:
    """Whether the caller may close the event now (the API asks before the password is checked): the content
    hash to sign. The reporter never closes their own event (segregation of duties)."""
    row = row_of(session, event_id)
    _closable(row, caller.actor.id)
    return content_hash(session, row)


def _closable(row: EventRow, actor_id: str) -> None:
    if row.reporter_id == actor_id:
        raise Forbidden(f"{row.code} was reported by you: someone else must close it (segregation of duties)")
    if row.status != EventStatus.effectiveness_check or row.effective is not True:
        raise Conflict(f"{row.code} is {row.status}: it closes once its actions are done and judged effective")


def _require(row: EventRow, *statuses: EventStatus) -> None:
    if row.status not in statuses:
        raise Conflict(f"{row.code} is {row.status}: this needs it {' or '.join(s.value for s in statuses)}")


def member_display(session: Session, user_id: uuid.UUID) -> str:
    """The display name of an active member of the organization; Invalid otherwise."""
    name = session.execute(
        text("SELECT u.display_name FROM memberships m JOIN users u ON u.id = m.user_id"
             " WHERE m.user_id = :u AND m.org_id = current_org() AND m.active"), {"u": user_id}).scalar()
    if name is None:
        raise Invalid("no such member", reasons=[f"{user_id}: not an active member of this organization"])
    return str(name)


def _insert_action(session: Session, row: EventRow, spec: Any, actor: Actor) -> ActionRow:
    owner = uuid.UUID(str(spec.owner_id))
    display = member_display(session, owner)
    at = records.now()
    a = from_row(ActionRow, session.execute(text(
        "INSERT INTO capa_actions (id, org_id, event_id, kind, description, owner_id, owner_display, due_at, status,"
        " created_at, created_by, updated_at) VALUES (:id, :o, :e, :k, :d, :ow, :od, :due, 'open', :at, :by, :at)"
        f" RETURNING {ACTION_COLUMNS}"),
        {"id": uuid.uuid4(), "o": row.org_id, "e": row.id, "k": spec.kind, "d": spec.description, "ow": owner,
         "od": display, "due": spec.due_at, "at": at, "by": actor.id}).one())
    records.outbox(session, row.org_id, "capa_actions", action_payload(a))
    return a


def _revise(session: Session, row: EventRow, sets: str, params: dict[str, object]) -> EventRow:
    new = from_row(EventRow, session.execute(
        text(f"UPDATE compliance_events SET {sets}, revision = revision + 1, updated_at = :now WHERE id = :i"
             f" RETURNING {EVENT_COLUMNS}"), {**params, "now": records.now(), "i": row.id}).one())
    records.outbox(session, row.org_id, "compliance_events", payload(new))
    return new


def apply(session: Session, step: EventStep) -> EventState:
    """One transition of the event, checked and recorded in the caller's transaction; the event's state after it."""
    row = row_of(session, step.event.event_id, lock=True)
    if step.key and session.execute(text("SELECT 1 FROM compliance_event_transitions WHERE event_id = :e"
                                         " AND key = :k"), {"e": row.id, "k": step.key}).first():
        return state(session, row.id)  # recorded before: an activity re-run after a crash
    actor = step.actor.actor()
    manager = step.actor.role in MANAGERS
    if step.action != "complete_action" and not manager:
        raise Forbidden(f"your role ({step.actor.role}) may not do this (events.manage)")
    before = _view(row)
    after: dict[str, Any] = {}
    reason = step.reason
    if step.action == "investigate":
        _require(row, EventStatus.open)
        row = _revise(session, row, "status = 'investigating'", {})
    elif step.action == "root_cause":
        _require(row, EventStatus.investigating)
        if not step.actions:
            raise Invalid("a root cause comes with at least one corrective or preventive action",
                          reasons=["actions: at least one"])
        made = [_insert_action(session, row, spec, actor) for spec in step.actions]
        row = _revise(session, row, "status = 'capa', root_cause = :rc", {"rc": step.root_cause})
        after["actions"] = [action_read(a).model_dump(mode="json") for a in made]
        reason = reason or step.root_cause
    elif step.action == "add_action":
        _require(row, EventStatus.capa)
        made = [_insert_action(session, row, spec, actor) for spec in step.actions]
        row = _revise(session, row, "status = status", {})
        after["actions"] = [action_read(a).model_dump(mode="json") for a in made]
    elif step.action == "complete_action":
        row, done = _complete_action(session, row, step, manager)
        after["action"] = action_read(done).model_dump(mode="json")
        reason = reason or step.note
    elif step.action == "effectiveness":
        _require(row, EventStatus.effectiveness_check)
        if row.effective is True:
            raise Conflict(f"{row.code}: the actions were judged effective already; close it")
        if step.effective:
            row = _revise(session, row, "effective = true, effectiveness_note = :n", {"n": step.note})
        else:  # back to CAPA: further actions are needed
            row = _revise(session, row, "status = 'capa', effective = NULL, effectiveness_note = :n", {"n": step.note})
        reason = reason or step.note
    elif step.action == "close":
        _closable(row, actor.id)
        sig = step.signature
        if sig is None:
            raise Invalid("closing needs the closer's signature", reasons=["password: required"])
        if sig.content_hash != content_hash(session, row):
            raise Conflict(f"{row.code} changed since you read it: read it again and sign what it is now")
        signatures.record(session, signatures.Signature(
            id=uuid.UUID(sig.signature_id), signer_id=uuid.UUID(sig.signer_id), signer_name=sig.signer_name,
            meaning=signatures.Meaning(sig.meaning), reason=sig.reason, entity_type="compliance_event",
            entity_id=str(row.id), content_hash=sig.content_hash, signed_at=sig.signed_at),
            org_id=row.org_id, actor=actor, context=step.request)
        row = _revise(session, row, "status = 'closed', closed_at = :at, closed_by = :by, closed_by_display = :d,"
                      " signature_id = :sig", {"at": sig.signed_at, "by": actor.id, "d": actor.display,
                                               "sig": uuid.UUID(sig.signature_id)})
        after["signature_id"] = sig.signature_id
        after["content_hash"] = sig.content_hash
    if step.key:
        session.execute(text("INSERT INTO compliance_event_transitions (org_id, event_id, key, action, actor_id, at)"
                             " VALUES (:o, :e, :k, :a, :by, :at)"),
                        {"o": row.org_id, "e": row.id, "k": step.key, "a": step.action, "by": actor.id,
                         "at": records.now()})
    audit.record(session, org_id=row.org_id, actor=actor, action=step.action, entity_type="compliance_event",
                 entity_id=row.id, before=before, after={**_view(row), **after}, reason=reason, context=step.request)
    return state(session, row.id)


def _complete_action(session: Session, row: EventRow, step: EventStep, manager: bool) -> tuple[EventRow, ActionRow]:
    _require(row, EventStatus.capa)
    a = session.execute(text(f"SELECT {ACTION_COLUMNS} FROM capa_actions WHERE id = :i AND event_id = :e FOR UPDATE"),
                        {"i": step.action_id, "e": row.id}).first()
    if a is None:
        raise NotFound(f"{row.code} has no action {step.action_id}")
    action = from_row(ActionRow, a)
    if action.status == "done":
        raise Conflict(f"that action of {row.code} is done already")
    if not manager and step.actor.user_id != str(action.owner_id):
        raise Forbidden(f"this action is {action.owner_display}'s: only its owner or a lab manager completes it")
    done = from_row(ActionRow, session.execute(text(
        "UPDATE capa_actions SET status = 'done', done_at = :at, done_by = :by, done_note = :n, updated_at = :at,"
        f" revision = revision + 1 WHERE id = :i RETURNING {ACTION_COLUMNS}"),
        {"at": records.now(), "by": step.actor.id, "n": step.note, "i": action.id}).one())
    records.outbox(session, row.org_id, "capa_actions", action_payload(done))
    still_open = session.execute(text("SELECT count(*) FROM capa_actions WHERE event_id = :e AND status = 'open'"),
                                 {"e": row.id}).scalar_one()
    sets = "status = 'effectiveness_check'" if still_open == 0 else "status = status"
    return _revise(session, row, sets, {}), done


# ---------------------------------------------------------------- lateness


def escalate_action(session: Session, msg: CapaEscalation) -> bool:
    """A CAPA action past its due time: level 0 alerts its owner, level 1 the lab managers too; an audit entry by
    the system. False when the action is done or this level fired before."""
    a = session.execute(text(f"SELECT {ACTION_COLUMNS} FROM capa_actions WHERE id = :i FOR UPDATE"),
                        {"i": msg.action_id}).first()
    if a is None:
        return False
    action = from_row(ActionRow, a)
    if action.status == "done" or action.escalation_level >= msg.level:
        return False
    row = row_of(session, action.event_id)
    new = from_row(ActionRow, session.execute(text(
        f"UPDATE capa_actions SET escalation_level = :l, updated_at = :at, revision = revision + 1 WHERE id = :i"
        f" RETURNING {ACTION_COLUMNS}"), {"l": msg.level, "at": records.now(), "i": action.id}).one())
    records.outbox(session, row.org_id, "capa_actions", action_payload(new))
    roles = ("lab_manager",) if msg.level >= 1 else ()
    title = f"{row.code}: CAPA action of {action.owner_display} is past due ({action.description[:80]})"
    raise_alert(session, row.org_id, AlertKind.capa_overdue, ("capa_action", str(action.id)),
                Addressees(users=(action.owner_id,), roles=roles), title=title,
                body=f"Due {action.due_at.isoformat()}; escalation level {msg.level}.",
                severity="critical" if msg.level >= 1 else "warning",
                dedupe_key=f"capa_overdue:{action.id}:{msg.level}", due_at=action.due_at)
    audit.record(session, org_id=row.org_id, actor=SYSTEM_ACTOR, action="escalate", entity_type="capa_action",
                 entity_id=action.id, severity=Severity.warning, reason=title,
                 after={"event_id": str(row.id), "level": msg.level, "due_at": records.jsonable(action.due_at),
                        "notified_users": [str(action.owner_id)], "notified_roles": list(roles)})
    return True


def scan_overdue(session: Session, org_id: uuid.UUID | str, now: dt.datetime | None = None) -> list[uuid.UUID]:
    """Alerts for events still open `OVERDUE_AFTER` after they were raised, once each."""
    now = now or records.now()
    raised = []
    for r in session.execute(text("SELECT id, code, title, created_at FROM compliance_events WHERE org_id ="
                                  " current_org() AND status <> 'closed' AND created_at < :t"),
                             {"t": now - OVERDUE_AFTER}):
        ident = raise_alert(session, org_id, AlertKind.event_overdue, ("compliance_event", str(r.id)),
                            Addressees(roles=("lab_manager",)), title=f"{r.code} is still open: {r.title}",
                            body=f"Raised {r.created_at.isoformat()}.", due_at=r.created_at + OVERDUE_AFTER)
        if ident:
            raised.append(ident)
    return raised
