"""Compliance events and their CAPA actions over HTTP. Raising one writes it and starts its workflow; every
transition after that is an Update on the event's workflow (`ComplianceEvent.transition`, workflows/event.py),
its id the request's X-Request-ID, so a retried request never acts twice. Refusals are on record."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from activities.events import start_event
from api import temporal
from api.deps import Permitted, Platform, PlatformDep, SessionDep, in_tx, login_limits
from api.paging import CursorQuery
from api.refusals import refused
from domain.errors import Conflict, Invalid, Unavailable
from domain.events import service
from domain.events.messages import ActionSpec, EventRef, EventStep, SignedClosure, workflow_id
from domain.events.models import (
    ActionCreate,
    ActionDone,
    Effectiveness,
    EventClose,
    EventCreate,
    EventDetail,
    EventKind,
    EventRead,
    EventStatus,
    Investigate,
    RootCause,
)
from domain.pagination import Page
from domain.roles import Caller, Permission
from domain.runs.messages import ActorRef
from domain.signatures import Meaning, SignatureInput, verify
from workflows.event import ComplianceEvent

log = structlog.get_logger("flasktrack.api.events")
router = APIRouter(prefix="/api/v1/events", tags=["compliance events"])
Reader = Annotated[Caller, Depends(Permitted(Permission.events_read))]
Raiser = Annotated[Caller, Depends(Permitted(Permission.events_raise))]
Manager = Annotated[Caller, Depends(Permitted(Permission.events_manage))]
CapaWorker = Annotated[Caller, Depends(Permitted(Permission.capa_work))]
Limit = Query(default=50, ge=1, le=500)
CREATED: dict[int | str, dict[str, Any]] = {
    200: {"description": "What this X-Request-ID raised before (a retry): nothing new."}}


def _spec(a: ActionCreate) -> ActionSpec:
    return ActionSpec(kind=a.kind.value, description=a.description, owner_id=str(a.owner_id), due_at=a.due_at)


async def _ensure_started(p: Platform, caller: Caller, event_id: uuid.UUID) -> None:
    health = p.temporal_health
    if health.status == "down" and health.checked_at is not None:  # the probe found it down: answer now, not in 5 s
        raise Unavailable(f"Temporal is not reachable ({health.error}); try again shortly")
    try:
        await start_event(temporal.client_of(p), p.settings.task_queue, str(caller.org_id), str(event_id),
                          rpc_timeout=temporal.START_TIMEOUT)
    except (RPCError, RuntimeError) as exc:
        raise Unavailable(f"Temporal is not reachable ({type(exc).__name__}); try again shortly") from exc


async def _transition(p: Platform, s: Session, caller: Caller, event_id: uuid.UUID,
                      step: Callable[[Session], EventStep]) -> EventDetail:
    """The transition as an Update on the event's workflow; the event after it."""
    temporal.client_of(p)  # 503 before anything is checked or signed when Temporal is not configured
    try:
        msg = await in_tx(s, lambda tx: (service.row_of(tx, event_id), step(tx))[1])
    except (Conflict, Invalid) as exc:
        await refused(s, caller, "compliance_event", str(event_id), "transition", exc)
        raise
    await _ensure_started(p, caller, event_id)
    handle = temporal.client_of(p).get_workflow_handle_for(ComplianceEvent.run, workflow_id(str(event_id)))
    rid = caller.context.request_id
    try:
        await handle.execute_update(ComplianceEvent.transition, msg, id=f"{msg.action}:{rid}" if rid else None,
                                    rpc_timeout=temporal.UPDATE_TIMEOUT)
    except WorkflowUpdateFailedError as exc:
        why = temporal._refused(exc)
        await refused(s, caller, "compliance_event", str(event_id), msg.action, why)
        raise why from exc
    except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
        raise Unavailable(temporal.NO_WORKER.format(s=temporal.UPDATE_TIMEOUT.total_seconds())) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            ended = Conflict("the event is closed: its workflow takes no more requests")
            await refused(s, caller, "compliance_event", str(event_id), msg.action, ended)
            raise ended from exc
        raise Unavailable(temporal.NO_WORKER.format(s=temporal.UPDATE_TIMEOUT.total_seconds())) from exc
    return await in_tx(s, service.get, event_id)


def _step(caller: Caller, event_id: uuid.UUID, action: str, **fields: Any) -> EventStep:
    return EventStep(event=EventRef(org_id=str(caller.org_id), event_id=str(event_id)), action=action,  # type: ignore[arg-type]
                     actor=ActorRef.of(caller), request=caller.context, **fields)


async def raise_and_start(p: Platform, s: Session, caller: Caller, data: EventCreate) -> tuple[EventDetail, bool]:
    """The event written (or the one this request id raised before) and its workflow started; the API's and the
    pages' path (web/compliance.py)."""
    event, created = await in_tx(s, service.create, caller, data)
    try:
        await _ensure_started(p, caller, event.id)
    except Unavailable as exc:  # the worker's watch starts it later; the event is on record
        log.warning("event workflow not started now", event_id=str(event.id), error=exc.message)
    return event, created


@router.post("", response_model=EventDetail, status_code=201, responses=CREATED)
async def raise_event(data: EventCreate, caller: Raiser, s: SessionDep, p: PlatformDep) -> JSONResponse:
    """Raise a compliance event (deviation, contamination, incident, near miss, equipment failure) with what it is
    about: runs, steps (task ids), samples, batches, equipment and evidence files of your organization (422
    otherwise). It opens (code `CE-000001`) and runs as a workflow. Retrying with the same X-Request-ID returns it
    (200)."""
    event, created = await raise_and_start(p, s, caller, data)
    return JSONResponse(status_code=201 if created else 200, content=event.model_dump(mode="json"))


@router.get("", response_model=Page[EventRead])
def list_events(caller: Reader, s: SessionDep, status: EventStatus | None = None, kind: EventKind | None = None,
                cursor: str | None = CursorQuery, limit: int = Limit) -> Page[EventRead]:
    """The organization's compliance events, newest first."""
    return service.list_events(s, status=status, kind=kind, cursor=cursor, limit=limit)


@router.get("/{event_id:uuid}", response_model=EventDetail)
def get_event(event_id: uuid.UUID, caller: Reader, s: SessionDep) -> EventDetail:
    """The event, what it links to, its CAPA actions (overdue ones flagged) and its closing signature."""
    return service.get(s, event_id)


@router.post("/{event_id:uuid}/investigate", response_model=EventDetail)
async def investigate(event_id: uuid.UUID, data: Investigate, caller: Manager, s: SessionDep,
                      p: PlatformDep) -> EventDetail:
    """Start the investigation of an open event (open → investigating)."""
    return await _transition(p, s, caller, event_id, lambda tx: _step(caller, event_id, "investigate",
                                                                       reason=data.reason))


@router.post("/{event_id:uuid}/root-cause", response_model=EventDetail)
async def root_cause(event_id: uuid.UUID, data: RootCause, caller: Manager, s: SessionDep,
                     p: PlatformDep) -> EventDetail:
    """Record the root cause and the corrective and preventive actions it calls for, each with its owner (a member)
    and due time (investigating → capa). A late action escalates: its owner is alerted at the due time, the lab
    managers two days later."""
    return await _transition(p, s, caller, event_id, lambda tx: _step(
        caller, event_id, "root_cause", root_cause=data.root_cause, actions=[_spec(a) for a in data.actions]))


@router.post("/{event_id:uuid}/actions", response_model=EventDetail)
async def add_action(event_id: uuid.UUID, data: ActionCreate, caller: Manager, s: SessionDep,
                     p: PlatformDep) -> EventDetail:
    """Add a corrective or preventive action to an event in CAPA."""
    return await _transition(p, s, caller, event_id, lambda tx: _step(caller, event_id, "add_action",
                                                                       actions=[_spec(data)]))


@router.post("/{event_id:uuid}/actions/{action_id:uuid}/complete", response_model=EventDetail)
async def complete_action(event_id: uuid.UUID, action_id: uuid.UUID, data: ActionDone, caller: CapaWorker,
                          s: SessionDep, p: PlatformDep) -> EventDetail:
    """Mark a CAPA action done with what was done (its owner or a lab manager). The last one done moves the event
    to its effectiveness check."""
    return await _transition(p, s, caller, event_id, lambda tx: _step(
        caller, event_id, "complete_action", action_id=str(action_id), note=data.note))


@router.post("/{event_id:uuid}/effectiveness", response_model=EventDetail)
async def effectiveness(event_id: uuid.UUID, data: Effectiveness, caller: Manager, s: SessionDep,
                        p: PlatformDep) -> EventDetail:
    """Judge whether the actions worked: effective, the event may be closed; not effective, it goes back to CAPA
    for further actions."""
    return await _transition(p, s, caller, event_id, lambda tx: _step(
        caller, event_id, "effectiveness", effective=data.effective, note=data.note))


@router.post("/{event_id:uuid}/close", response_model=EventDetail)
async def close(event_id: uuid.UUID, data: EventClose, caller: Manager, s: SessionDep,
                p: PlatformDep) -> EventDetail:
    """Close the event with your electronic signature (password re-entered, meaning `approved`), bound to the
    hash of the event's content. Its reporter cannot close it (403)."""

    def signed(tx: Session) -> EventStep:
        content_hash = service.check_close(tx, caller, event_id)
        sig = verify(tx, caller, SignatureInput(password=data.password, meaning=Meaning.approved, reason=data.reason),
                     entity_type="compliance_event", entity_id=str(event_id), content_hash=content_hash,
                     limits=login_limits(p.settings))
        closure = SignedClosure(signature_id=str(sig.id), signer_id=str(sig.signer_id), signer_name=sig.signer_name,
                                meaning=sig.meaning.value, reason=sig.reason, content_hash=content_hash,
                                signed_at=sig.signed_at)
        return _step(caller, event_id, "close", reason=data.reason, signature=closure)

    return await _transition(p, s, caller, event_id, signed)
