"""Compliance events and their CAPA actions: what callers send and get."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.limits import BodyInstant, Input
from domain.signatures import Signature


class EventKind(StrEnum):
    deviation = "deviation"
    contamination = "contamination"
    incident = "incident"
    near_miss = "near_miss"
    equipment_failure = "equipment_failure"


class EventSeverity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class EventStatus(StrEnum):
    open = "open"
    investigating = "investigating"
    capa = "capa"
    effectiveness_check = "effectiveness_check"
    closed = "closed"


class EventSource(StrEnum):
    person = "person"
    escalation = "escalation"
    contamination = "contamination"
    gate_override = "gate_override"


class ActionKind(StrEnum):
    corrective = "corrective"
    preventive = "preventive"


MAX_LINKS = 50
Ids = list[uuid.UUID]


class EventLinks(Input):
    """What an event is about; each id must be a record of the caller's organization."""

    runs: Ids = Field(default_factory=list, max_length=MAX_LINKS)
    steps: Ids = Field(default_factory=list, max_length=MAX_LINKS, description="task ids: one step of one run")
    samples: Ids = Field(default_factory=list, max_length=MAX_LINKS)
    batches: Ids = Field(default_factory=list, max_length=MAX_LINKS)
    equipment: Ids = Field(default_factory=list, max_length=MAX_LINKS, description="registry items of kind equipment")
    evidence: Ids = Field(default_factory=list, max_length=MAX_LINKS, description="evidence files")


class EventCreate(Input):
    kind: EventKind
    severity: EventSeverity
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=10_000)
    links: EventLinks = Field(default_factory=EventLinks)


class ActionCreate(Input):
    kind: ActionKind
    description: str = Field(min_length=1, max_length=4000)
    owner_id: uuid.UUID = Field(description="the member who does it")
    due_at: BodyInstant


class Investigate(Input):
    reason: str | None = Field(default=None, max_length=2000)


class RootCause(Input):
    """The investigation's finding and the corrective and preventive actions it calls for (at least one)."""

    root_cause: str = Field(min_length=1, max_length=10_000)
    actions: list[ActionCreate] = Field(min_length=1, max_length=20)


class ActionDone(Input):
    note: str = Field(min_length=1, max_length=4000, description="what was done")


class Effectiveness(Input):
    """Whether the actions worked; not effective sends the event back to CAPA for further actions."""

    effective: bool = Field(strict=True)
    note: str = Field(min_length=1, max_length=4000)


class EventClose(Input):
    password: str = Field(min_length=1, max_length=1024, description="re-entered to sign the closure")
    reason: str | None = Field(default=None, max_length=2000)


class ActionRead(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    kind: ActionKind
    description: str
    owner_id: uuid.UUID
    owner_display: str
    due_at: dt.datetime
    status: str
    overdue: bool
    done_at: dt.datetime | None
    done_by: str | None
    done_note: str | None
    escalation_level: int
    revision: int


class EventRead(BaseModel):
    id: uuid.UUID
    code: str
    kind: EventKind
    severity: EventSeverity
    title: str
    description: str
    status: EventStatus
    source: EventSource
    reporter_id: str
    reporter_display: str
    root_cause: str | None
    effective: bool | None
    effectiveness_note: str | None
    closed_at: dt.datetime | None
    closed_by_display: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    revision: int


class EventDetail(EventRead):
    links: EventLinks
    actions: list[ActionRead]
    signature: Signature | None = None
