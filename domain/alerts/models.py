"""Alerts: what callers get, and what they send to acknowledge one."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.limits import Input


class AlertKind(StrEnum):
    lot_expiry = "lot_expiry"
    calibration_due = "calibration_due"
    escalation = "escalation"
    event_overdue = "event_overdue"
    capa_overdue = "capa_overdue"
    authorization_expiry = "authorization_expiry"  # raised by domain/compliance (authorizations)
    qualification_expiry = "qualification_expiry"  # raised by domain/compliance (qualifications)
    other = "other"


@dataclass(frozen=True)
class Addressees:
    """Who an alert is for: members by user id, and/or everyone holding a role."""

    users: tuple[uuid.UUID, ...] = field(default_factory=tuple)
    roles: tuple[str, ...] = field(default_factory=tuple)


class Acknowledge(Input):
    note: str | None = Field(default=None, max_length=2000)


class AlertRead(BaseModel):
    id: uuid.UUID
    kind: AlertKind
    severity: str
    subject_type: str
    subject_id: str
    title: str
    body: str
    addressed_users: list[uuid.UUID]
    addressed_roles: list[str]
    due_at: dt.datetime | None
    created_at: dt.datetime
    read_at: dt.datetime | None
    read_by: str | None
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    acknowledged_by_display: str | None
    emailed_at: dt.datetime | None
