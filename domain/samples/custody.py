"""Chain of custody: every location move and hand-over of a sample is a `sample_movements` row (append-only) and
an audit entry; the history answers "where was it, and who held it, at instant X".

Registration writes the first movement (to where it was received), so the history starts with the sample.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.errors import Conflict, Invalid
from domain.roles import Actor, Caller
from domain.rows import from_row
from domain.runs import records
from domain.samples.models import Move, MovementRead, Whereabouts
from domain.samples.rows import MOVEMENT_COLUMNS, MovementRow, SampleRow


def movement_payload(m: MovementRow) -> dict[str, object]:
    """The `sample_movement` outbox payload."""
    return {"movement_id": m.id, "org_id": m.org_id, "sample_id": m.sample_id,
            "from_location_id": m.from_location_id, "to_location_id": m.to_location_id,
            "from_holder_id": m.from_holder_id, "to_holder_id": m.to_holder_id,
            "to_holder_display": m.to_holder_display, "moved_at": m.moved_at, "moved_by": m.moved_by,
            "moved_by_display": m.moved_by_display, "reason": m.reason, "run_id": m.run_id, "step_key": m.step_key}


def record(session: Session, actor: Actor, sample: SampleRow, *, to_location: uuid.UUID | None,
           to_holder: tuple[uuid.UUID | None, str | None], reason: str, run_id: uuid.UUID | None = None,
           step_key: str | None = None, at: dt.datetime | None = None, first: bool = True) -> MovementRow:
    """One movement row (and its outbox row) from where `sample` is now; the caller writes the audit entry."""
    movement_id = uuid.uuid4()
    m = from_row(MovementRow, session.execute(
        text("INSERT INTO sample_movements AS m (id, org_id, sample_id, from_location_id, to_location_id,"
             " from_holder_id, to_holder_id, to_holder_display, moved_at, moved_by, moved_by_display, reason,"
             f" run_id, step_key) VALUES (:id, :o, :s, :fl, :tl, :fh, :th, :thd, :at, :by, :byd, :why, :run, :step)"
             f" RETURNING {MOVEMENT_COLUMNS}"),
        {"id": movement_id, "o": sample.org_id, "s": sample.id,
         "fl": None if first else sample.location_id, "tl": to_location,
         "fh": None if first else sample.owner_id, "th": to_holder[0], "thd": to_holder[1],
         "at": at or records.now(), "by": actor.id, "byd": actor.display, "why": reason, "run": run_id,
         "step": step_key}).one())
    records.outbox(session, sample.org_id, "sample_movement", movement_payload(m))
    return m


def move(session: Session, caller: Caller, sample_id: uuid.UUID, data: Move) -> MovementRead:
    """Move the sample and/or hand it over, with the reason: the movement, a new revision, the audit entry."""
    from domain.samples import service

    sample = service.row_of(session, sample_id, lock=True)
    if sample.archived_at is not None:
        raise Conflict(f"sample {sample.code} is archived: restore it first")
    if sample.status in ("consumed", "disposed"):
        raise Conflict(f"sample {sample.code} is {sample.status}: it can no longer move")
    service.check_location(session, data.to_location_id)
    if data.run_id is not None and session.execute(text("SELECT 1 FROM runs WHERE id = :r"),
                                                   {"r": data.run_id}).first() is None:
        raise Invalid("no such run", reasons=[f"run_id: no run {data.run_id} in this organization"])
    location = data.to_location_id or sample.location_id
    holder = ((data.to_holder_id, service.member_display(session, data.to_holder_id)) if data.to_holder_id
              else (sample.owner_id, sample.owner_display))
    if location == sample.location_id and holder[0] == sample.owner_id:
        raise Conflict(f"sample {sample.code} is already there, with that holder")
    m = record(session, caller.actor, sample, to_location=location, to_holder=holder, reason=data.reason,
               run_id=data.run_id, step_key=data.step_key, first=False)
    row = service._revise(session, sample_id, "location_id = :l, owner_id = :h, owner_display = :hd",
                          {"l": location, "h": holder[0], "hd": holder[1]})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="move", entity_type="sample",
                 entity_id=sample_id, reason=data.reason, context=caller.context, occurred_at=m.moved_at,
                 before={"location_id": records.jsonable(sample.location_id),
                         "holder_id": records.jsonable(sample.owner_id), "holder": sample.owner_display},
                 after={"location_id": records.jsonable(row.location_id), "holder_id": records.jsonable(row.owner_id),
                        "holder": row.owner_display, "movement_id": str(m.id),
                        "run_id": records.jsonable(data.run_id), "step_key": data.step_key})
    return _history(session, sample_id, m.id)[0]


def _history(session: Session, sample_id: uuid.UUID, only: uuid.UUID | None = None) -> list[MovementRead]:
    rows = session.execute(
        text(f"SELECT {MOVEMENT_COLUMNS}, l.code AS to_location_code, l.name AS to_location_name"
             " FROM sample_movements m LEFT JOIN registry_items l ON l.id = m.to_location_id"
             " WHERE m.sample_id = :s" + (" AND m.id = :m" if only else "") + " ORDER BY m.moved_at, m.id"),
        {"s": sample_id, "m": only}).all()
    return [MovementRead(**r._mapping) for r in rows]


def whereabouts(session: Session, sample_id: uuid.UUID, at: dt.datetime | None) -> Whereabouts:
    """Where the sample was at `at` (now when None), who held it since when, and its whole custody history."""
    from domain.samples import service

    sample = service.row_of(session, sample_id)
    history = _history(session, sample_id)
    current = [m for m in history if at is None or m.moved_at <= at]
    last = current[-1] if current else None
    if at is not None and at < sample.created_at:
        last = None
    return Whereabouts(sample_id=sample_id, at=at, location_id=last.to_location_id if last else None,
                       location_code=last.to_location_code if last else None,
                       location_name=last.to_location_name if last else None,
                       holder_id=last.to_holder_id if last else None,
                       holder_display=last.to_holder_display if last else None,
                       since=last.moved_at if last else None, history=history)
