"""The compliance pages: authorizations (validity, signing with the password re-entered), compliance events (list,
raise one about a sample or run, the event's page with its timeline and its next transition), and the person's
alerts (read, acknowledge). The sample and run pages show the compliance surface and status through `compliance_of`.

Reads and the alerts call the services the API calls (domain/compliance, domain/events, domain/alerts); what reaches
a workflow — signing an authorization (open runs then check their authorizations again), raising an event, an
event's transition (an Update on its workflow) — takes the API's own path handed in by api/app.py
(web/actions.py `ComplianceActions`): one permission matrix, one audit trail.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, cast, get_args

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from domain.alerts import service as alerts
from domain.alerts.models import Acknowledge
from domain.compliance import authorizations, status, surface
from domain.compliance.models import AuthorizationRead, AuthorizationSign, ComplianceStatus, Surface
from domain.errors import DomainError, Invalid, Unavailable
from domain.events import service as events
from domain.events.models import (
    ActionCreate,
    ActionDone,
    EventClose,
    EventCreate,
    EventDetail,
    EventKind,
    EventSeverity,
    EventStatus,
    Investigate,
    RootCause,
)
from domain.events.models import Effectiveness as EventEffectiveness
from domain.identity import service as identity
from domain.roles import Caller, Permission
from web.acting import PAGE, acting, field_errors, new_request_id, on_record
from web.actions import ComplianceActions, EventAction
from web.app import PREFIX, _caller, _check_csrf, _form, _render, _require, _services, _text, posted

router = APIRouter()
EVENT_ACTIONS: tuple[EventAction, ...] = get_args(EventAction)
# The next transition of an event by its status (a CAPA action's completion stays with the API for now).
NEXT: dict[str, tuple[EventAction, ...]] = {"open": ("investigate",), "investigating": ("root_cause",),
                                            "effectiveness_check": ("effectiveness",), "capa": ()}
STATUS_WORDS = {"compliant": "Compliant", "action_needed": "Action needed", "on_hold": "On hold",
                "deviation_open": "Deviation open"}


# ------------------------------------------------------------------ the surface on the sample and run pages


@dataclass
class Compliance:
    """What the sample and run pages show: each tag with the paths that brought it, and the status with reasons."""

    surface: Surface
    status: ComplianceStatus
    words: str


def compliance_of(session: Session, caller: Caller, kind: str, ident: uuid.UUID) -> Compliance | None:
    """The subject's derived surface and compliance status, for a role that may read them (else None)."""
    if not caller.can(Permission.compliance_read):
        return None
    if kind == "sample":
        surf, st = surface.of_sample(session, ident), status.of_sample(session, ident)
    else:
        surf, st = surface.of_run(session, ident), status.of_run(session, ident)
    return Compliance(surface=surf, status=st, words=STATUS_WORDS.get(st.status, st.status))


def _actions(request: Request) -> ComplianceActions:
    found = _services(request).compliance
    if found is None:
        raise Unavailable("this server was started without the API's compliance paths")
    return found


# ------------------------------------------------------------------ authorizations


def _authorization_list(request: Request, caller: Caller) -> list[AuthorizationRead]:
    with _services(request).sessions.begin(caller.org_id) as session:
        return authorizations.list_authorizations(session)


@router.get("/authorizations")
def authorization_list(request: Request) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.compliance_read)
    found = _authorization_list(request, caller)
    return _render(request, "authorizations.html", {"items": found})


def _authorization_page(request: Request, caller: Caller, auth_id: uuid.UUID, *, message: str | None = None,
                        reasons: list[str] | None = None, signed: bool = False, status: int = 200) -> HTMLResponse:
    with _services(request).sessions.begin(caller.org_id) as session:
        a = authorizations.get(session, auth_id)  # NotFound for another organization's (404, on record)
        content_hash = authorizations.hash_of(session, auth_id)
    return _render(request, "authorization.html", {
        "a": a, "content_hash": content_hash, "message": message, "reasons": reasons or [], "signed": signed,
        "may_sign": caller.can(Permission.authorizations_approve) and a.status == "pending",
        "request_id": new_request_id()}, status=status)


@router.get("/authorizations/{auth_id}")
def authorization_page(request: Request, auth_id: uuid.UUID, signed: bool = False) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.compliance_read)
    return _authorization_page(request, caller, auth_id, signed=signed)


@router.post("/authorizations/{auth_id}/sign")
async def sign_authorization(request: Request, auth_id: uuid.UUID) -> Response:
    caller, form = await posted(request, Permission.authorizations_approve)
    s = _services(request)

    async def again(message: str, reasons: list[str], status: int) -> HTMLResponse:
        return await run_in_threadpool(partial(_authorization_page, request, caller, auth_id, message=message,
                                               reasons=reasons, status=status))

    try:
        data = AuthorizationSign(password=form.get("password", ""), reason=form.get("reason", "").strip() or None)
    except ValidationError as exc:
        return await again("Not signed: enter your password to sign.", list(field_errors(exc).values()), 422)
    who = acting(request, caller, s.settings, form)
    try:
        await _actions(request).sign_authorization(who, auth_id, data)
    except DomainError as exc:
        await on_record(request, s.sessions, who, exc)
        return await again(f"Not signed: {exc.message}", exc.reasons, exc.status)
    return RedirectResponse(f"{PREFIX}/authorizations/{auth_id}?signed=1", status_code=303)


# ------------------------------------------------------------------ compliance events


@router.get("/events")
def event_list(request: Request, status: str = "", cursor: str | None = None) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.events_read)
    chosen = EventStatus(status) if status in EventStatus.__members__ else None
    problem = None
    with _services(request).sessions.begin(caller.org_id) as session:
        try:
            page = events.list_events(session, status=chosen, kind=None, cursor=(cursor or None) and cursor[:300],
                                      limit=PAGE)
            items, next_cursor = page.items, page.next_cursor
        except Invalid as exc:
            items, next_cursor, problem = [], None, exc.message
    return _render(request, "events.html", {"items": items, "next_cursor": next_cursor, "status": status if chosen
                                            else "", "statuses": list(EventStatus), "problem": problem,
                                            "may_raise": caller.can(Permission.events_raise)},
                   status=422 if problem else 200)


def _event_form(request: Request, values: dict[str, str], *, errors: dict[str, str] | None = None,
                message: str | None = None, status: int = 200) -> HTMLResponse:
    return _render(request, "event_new.html", {
        "values": values, "errors": errors or {}, "message": message, "kinds": list(EventKind),
        "severities": list(EventSeverity), "request_id": values.get("request_id") or new_request_id()},
        status=status)


@router.get("/events/new")
def event_new(request: Request, sample: str = "", run: str = "") -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.events_raise)
    return _event_form(request, {"sample": sample[:40], "run": run[:40], "severity": "medium",
                                 "request_id": new_request_id()})


@router.post("/events")
async def raise_event(request: Request) -> Response:
    caller, form = await posted(request, Permission.events_raise)
    s = _services(request)
    values = {k: form.get(k, "")[:10_000] for k in ("kind", "severity", "title", "description", "sample", "run",
                                                   "request_id")}
    links: dict[str, list[str]] = {"samples": [values["sample"].strip()] if values["sample"].strip() else [],
                                   "runs": [values["run"].strip()] if values["run"].strip() else []}
    try:
        data = EventCreate.model_validate({"kind": values["kind"], "severity": values["severity"],
                                           "title": values["title"].strip(),
                                           "description": values["description"].strip(), "links": links})
    except ValidationError as exc:
        errors = field_errors(exc, {"links": "links"})
        return _event_form(request, values, errors=errors, status=422)
    who = acting(request, caller, s.settings, form)
    try:
        event = await _actions(request).raise_event(who, data)
    except DomainError as exc:
        await on_record(request, s.sessions, who, exc)
        message = exc.message + ("" if not exc.reasons else ": " + "; ".join(exc.reasons))
        return _event_form(request, {**values, "request_id": new_request_id()}, message=message, status=exc.status)
    return RedirectResponse(f"{PREFIX}/events/{event.id}?done=raised", status_code=303)


def _timeline(e: EventDetail) -> list[tuple[dt.datetime, str]]:
    """The event's story, oldest first: raised, its actions due and done, effectiveness, closure."""
    lines: list[tuple[dt.datetime, str]] = [(e.created_at, f"{e.reporter_display} raised it ({e.kind.value}, "
                                                           f"{e.severity.value})")]
    for a in e.actions:
        if a.done_at:
            lines.append((a.done_at, f"{a.kind.value} action done by {a.done_by or '—'}: {a.done_note or ''}"))
    if e.signature is not None:
        lines.append((e.signature.signed_at, f"closed, signed by {e.signature.signer_name} "
                                             f"({e.signature.meaning.value})"))
    elif e.closed_at:
        lines.append((e.closed_at, f"closed by {e.closed_by_display or '—'}"))
    return sorted(lines, key=lambda x: x[0])


def _event_page(request: Request, caller: Caller, event_id: uuid.UUID, *, message: str | None = None,
                reasons: list[str] | None = None, done: str | None = None, status: int = 200) -> HTMLResponse:
    with _services(request).sessions.begin(caller.org_id) as session:
        e = events.get(session, event_id)  # NotFound for another organization's (404, on record)
        members = [(str(m.user_id), m.display_name) for m in _members(session)] \
            if caller.can(Permission.events_manage) and e.status.value == "investigating" else []
    nxt = NEXT.get(e.status.value, ()) if caller.can(Permission.events_manage) else ()
    if e.status.value == "effectiveness_check" and caller.can(Permission.events_manage):
        nxt = ("effectiveness", "close") if e.effective else ("effectiveness",)
    return _render(request, "event.html", {
        "e": e, "timeline": _timeline(e), "next": nxt, "members": members, "message": message,
        "reasons": reasons or [], "done": done, "request_id": new_request_id(),
        "is_reporter": e.reporter_id == str(caller.actor.id),
        "may_complete": e.status.value == "capa" and caller.can(Permission.capa_work),
        "manager": caller.can(Permission.events_manage), "me": str(caller.user_id)}, status=status)


def _members(session: Session) -> list[Any]:
    return [m for m in identity.list_members(session) if m.active]


@router.get("/events/{event_id}")
def event_page(request: Request, event_id: uuid.UUID, done: str | None = None) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.events_read)
    return _event_page(request, caller, event_id, done=done if done in (*EVENT_ACTIONS, "raised", "action") else None)


def _step_data(action: EventAction, form: dict[str, str]) -> BaseModel:
    if action == "investigate":
        return Investigate(reason=form.get("reason", "").strip() or None)
    if action == "root_cause":
        due = form.get("due_at", "").strip()
        action_spec = ActionCreate.model_validate({
            "kind": form.get("action_kind", ""), "description": form.get("action", "").strip(),
            "owner_id": form.get("owner_id", ""), "due_at": (due + ("T17:00:00Z" if len(due) == 10 else ""))})
        return RootCause(root_cause=form.get("root_cause", "").strip(), actions=[action_spec])
    if action == "effectiveness":
        return EventEffectiveness(effective=form.get("effective") == "yes", note=form.get("note", "").strip())
    return EventClose(password=form.get("password", ""), reason=form.get("reason", "").strip() or None)


@router.post("/events/{event_id}/{action}")
async def event_step(request: Request, event_id: uuid.UUID, action: str) -> Response:
    caller = _caller(request)
    form = _text(await _form(request))
    await _check_csrf(request, caller, form)
    if action not in EVENT_ACTIONS:
        raise HTTPException(404, "no such page")
    chosen = cast(EventAction, action)
    _require(caller, Permission.events_manage)
    s = _services(request)
    try:
        data = _step_data(chosen, form)
    except ValidationError as exc:
        return await run_in_threadpool(partial(
            _event_page, request, caller, event_id, message="Not done: correct what is listed.",
            reasons=[f"{k}: {v}" for k, v in field_errors(exc).items()], status=422))
    who = acting(request, caller, s.settings, form)
    try:
        await _actions(request).event_step(who, event_id, chosen, data)
    except DomainError as exc:
        await on_record(request, s.sessions, who, exc)
        return await run_in_threadpool(partial(_event_page, request, caller, event_id,
                                               message=f"Not done: {exc.message}", reasons=exc.reasons,
                                               status=exc.status))
    return RedirectResponse(f"{PREFIX}/events/{event_id}?done={action}", status_code=303)


@router.post("/events/{event_id}/actions/{action_id}/complete")
async def complete_action(request: Request, event_id: uuid.UUID, action_id: uuid.UUID) -> Response:
    """A CAPA action marked done with what was done (its owner or a lab manager: the workflow decides)."""
    caller, form = await posted(request, Permission.capa_work)
    s = _services(request)
    try:
        data = ActionDone(note=form.get("note", "").strip()[:5000])
    except ValidationError:
        return await run_in_threadpool(partial(_event_page, request, caller, event_id, status=422,
                                               message="Not done: say what was done (up to 4000 characters)."))
    who = acting(request, caller, s.settings, form)
    try:
        await _actions(request).complete_action(who, event_id, action_id, data)
    except DomainError as exc:
        await on_record(request, s.sessions, who, exc)
        return await run_in_threadpool(partial(_event_page, request, caller, event_id,
                                               message=f"Not done: {exc.message}", reasons=exc.reasons,
                                               status=exc.status))
    return RedirectResponse(f"{PREFIX}/events/{event_id}?done=action", status_code=303)


# ------------------------------------------------------------------ alerts


@router.get("/alerts")
def alert_list(request: Request, unacknowledged: bool = False, cursor: str | None = None) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.alerts_read)
    problem = None
    with _services(request).sessions.begin(caller.org_id) as session:
        try:
            page = alerts.list_alerts(session, caller, unacknowledged=unacknowledged, kind=None,
                                      cursor=(cursor or None) and cursor[:300], limit=PAGE)
            items, next_cursor = page.items, page.next_cursor
        except Invalid as exc:
            items, next_cursor, problem = [], None, exc.message
    return _render(request, "alerts.html", {"items": items, "next_cursor": next_cursor, "problem": problem,
                                            "unacknowledged": unacknowledged, "request_id": new_request_id()},
                   status=422 if problem else 200)


@router.post("/alerts/{alert_id}/{action}")
async def alert_action(request: Request, alert_id: uuid.UUID, action: str) -> Response:
    caller = _caller(request)
    form = _text(await _form(request))
    await _check_csrf(request, caller, form)
    if action not in ("read", "acknowledge"):
        raise HTTPException(404, "no such page")
    _require(caller, Permission.alerts_read)
    s = _services(request)
    try:
        note = Acknowledge(note=form.get("note", "").strip()[:5000] or None)
    except ValidationError:
        raise Invalid("the note is up to 2000 characters") from None
    who = acting(request, caller, s.settings, form)

    def work() -> None:
        with s.sessions.begin(caller.org_id) as session:
            if action == "read":
                alerts.mark_read(session, who, alert_id)  # NotFound unless addressed to the person (on record)
            else:
                alerts.acknowledge(session, who, alert_id, note)

    await run_in_threadpool(work)
    return RedirectResponse(f"{PREFIX}/alerts?done={action}", status_code=303)
