"""Alerts over HTTP: the ones addressed to you or your role; reading and acknowledging them is on record."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import Permitted, SessionDep
from api.paging import CursorQuery
from domain.alerts import service
from domain.alerts.models import Acknowledge, AlertKind, AlertRead
from domain.pagination import Page
from domain.roles import Caller, Permission

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
Reader = Annotated[Caller, Depends(Permitted(Permission.alerts_read))]
Limit = Query(default=50, ge=1, le=500)


@router.get("", response_model=Page[AlertRead])
def list_alerts(caller: Reader, s: SessionDep, kind: AlertKind | None = None,
                unacknowledged: bool = Query(default=False, description="only those nobody acknowledged yet"),
                cursor: str | None = CursorQuery, limit: int = Limit) -> Page[AlertRead]:
    """Alerts addressed to you or your role, newest first: expiring lots and calibrations, escalations, events
    and CAPA actions past due, expiring authorizations and qualifications."""
    return service.list_alerts(s, caller, unacknowledged=unacknowledged, kind=kind, cursor=cursor, limit=limit)


@router.get("/{alert_id:uuid}", response_model=AlertRead)
def get_alert(alert_id: uuid.UUID, caller: Reader, s: SessionDep) -> AlertRead:
    """One alert addressed to you or your role."""
    return service.get(s, caller, alert_id)


@router.post("/{alert_id:uuid}/read", response_model=AlertRead)
def read_alert(alert_id: uuid.UUID, caller: Reader, s: SessionDep) -> AlertRead:
    """Mark the alert read (the first reading is on record)."""
    return service.mark_read(s, caller, alert_id)


@router.post("/{alert_id:uuid}/acknowledge", response_model=AlertRead)
def acknowledge_alert(alert_id: uuid.UUID, data: Acknowledge, caller: Reader, s: SessionDep) -> AlertRead:
    """Acknowledge the alert, with an optional note (on record; once)."""
    return service.acknowledge(s, caller, alert_id, data)
