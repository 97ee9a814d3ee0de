"""The pages: login, the technician's inbox, the task page; every handler thin (the domain decides).

Mounted by the API app under /ui (api/app.py), so the API's JSON-only guards and error contract stay as they
are for /api/v1 and these pages answer HTML, also when they refuse: a page says why, and a denial is on record
as in the API (`_record_denial`: action `deny` on the endpoint, in the person's organization).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.config import Settings
from core.db import TenantSessions
from core.storage import ObjectStore
from domain import audit
from domain.analysis import LakeQueries
from domain.audit import Severity
from domain.audit.checkpoints import CheckpointStore
from domain.errors import DomainError, Forbidden, NotFound, RateLimited
from domain.identity import service as identity
from domain.identity.models import LoginRequest, LoginResponse
from domain.identity.service import LockedOut, OrganizationNotNamed
from domain.roles import Caller, Permission
from domain.runs import service as runs
from domain.runs.messages import Outcome
from domain.tasks import service as tasks
from domain.tasks.models import TaskCompletion, TaskFilter, TaskRead
from web import evidence as evidence_pages
from web import sessions
from web.actions import ComplianceActions, ReportActions, RunActions
from web.forms import FormView, form_view, place_reasons, submitted

log = structlog.get_logger("flasktrack.web")
HERE = Path(__file__).parent
PREFIX = "/ui"  # where api/app.py mounts these pages
INBOX_PAGE = 50  # rows per inbox page

CompleteTask = Callable[[Caller, uuid.UUID, TaskCompletion], Awaitable[Outcome]]


@dataclass(frozen=True)
class Services:
    """What the pages need from the API process: its settings and sessions, and the API's own step-action path."""

    settings: Settings
    sessions: TenantSessions
    complete_task: CompleteTask  # the API's step-action path (api/steps.py), bound to its platform
    runs: RunActions  # the API's paths to a run's workflow: launch, controls, approvals, history (web/actions.py)
    checkpoints: CheckpointStore | None = None  # the audit pages' verification: the signed checkpoints,
    public_keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)  # and the keys that check them
    lake: LakeQueries | None = None  # the analyst's console (lake/query.py, handed in by the API app)
    objects: ObjectStore | None = None  # evidence files (web/evidence.py)
    reports: ReportActions | None = None  # the API's report handlers (web/reports.py)
    compliance: ComplianceActions | None = None  # authorizations signed, events raised and moved (web/compliance.py)


templates = Jinja2Templates(directory=HERE / "templates")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


class _SignIn(Exception):
    """No live session: the page sends the person to the login form (and back afterwards)."""


def _caller(request: Request) -> Caller:
    s = _services(request)
    caller = sessions.signed_in(request, s.settings, s.sessions)
    if caller is None:
        raise _SignIn
    request.state.caller = caller
    return caller


def _require(caller: Caller, permission: Permission) -> None:
    if not caller.can(permission):  # the API's words (api/deps.py require)
        raise Forbidden(f"your role ({caller.role}) may not do this ({permission})")


async def _form(request: Request) -> FormData:
    try:
        return await request.form(max_files=0, max_fields=1000)
    except Exception as exc:  # noqa: BLE001 - whatever the parser refuses is a bad request, never a 500
        raise _BadForm(str(exc)) from exc


class _BadForm(Exception):
    pass


def _text(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _check_csrf(request: Request, caller: Caller, form: Mapping[str, str]) -> None:
    if not sessions.csrf_ok(sessions.session_csrf(request), form.get(sessions.CSRF_FIELD)):
        raise Forbidden("this form has no valid CSRF token (it did not come from a Flask Track page, or the session "
                        "changed): reload the page and send it again")


async def posted(request: Request, permission: Permission) -> tuple[Caller, dict[str, str]]:
    """The signed-in person and the form they sent, its CSRF token checked, the permission required."""
    caller = _caller(request)
    form = _text(await _form(request))
    await _check_csrf(request, caller, form)
    _require(caller, permission)
    return caller, form


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    caller: Caller | None = getattr(request.state, "caller", None)
    base = {"caller": caller, "prefix": PREFIX, "now": dt.datetime.now(dt.UTC),
            "csrf": sessions.session_csrf(request) if caller else ""}
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


def _safe_next(value: str | None) -> str:
    """Only a page of ours to go back to after logging in (no open redirect)."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/"


def _record_denial(services: Services, caller: Caller, request: Request, reason: str, severity: Severity) -> None:
    """As the API records every denial (domain/audit record_denial), in its own transaction."""
    with services.sessions.begin(caller.org_id) as s:
        audit.record_denial(s, caller, f"{request.method} {request.url.path}", reason, severity)
    log.warning("denied", path=request.url.path, reason=reason)


def create_web_app() -> FastAPI:
    """The pages as an application of their own; the API app mounts it and sets `state.services`."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(evidence_pages.router)

    @app.exception_handler(_SignIn)
    async def sign_in(request: Request, exc: _SignIn) -> Response:
        target = f"{PREFIX}/login?next={quote(request.url.path)}"
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(DomainError)
    async def refused(request: Request, exc: DomainError) -> Response:
        caller: Caller | None = getattr(request.state, "caller", None)
        if isinstance(exc, Forbidden | NotFound) and caller is not None:
            severity = Severity.warning if isinstance(exc, Forbidden) else Severity.notice
            reason = ("denied: " if isinstance(exc, Forbidden) else "not found: ") + exc.message
            await run_in_threadpool(_record_denial, _services(request), caller, request, reason, severity)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else {}
        title = {403: "Not allowed", 404: "Not found", 409: "Not now", 429: "Too many attempts"}.get(exc.status,
                                                                                                      "Refused")
        response = _render(request, "error.html", {"title": title, "message": exc.message, "reasons": exc.reasons},
                           status=exc.status)
        response.headers.update(headers)
        return response

    @app.exception_handler(_BadForm)
    async def bad_form(request: Request, exc: _BadForm) -> Response:
        return _render(request, "error.html", {"title": "Unreadable form", "message": str(exc)[:300],
                                               "reasons": []}, status=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # Only path parameters are declared: a malformed id names no record.
        return _render(request, "error.html", {"title": "Not found", "message": "no such page", "reasons": []},
                       status=404)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _render(request, "error.html", {"title": "Not found" if exc.status_code == 404 else "Refused",
                                               "message": str(exc.detail), "reasons": []}, status=exc.status_code)

    # ------------------------------------------------------------------ sessions

    @app.get("/")
    def home(request: Request) -> Response:
        """The first page the person's role has: the inbox, the runs board, or a word on what is to come."""
        caller = _caller(request)
        for permission, page in ((Permission.tasks_read, "inbox"), (Permission.runs_read, "runs"),
                                 (Permission.lake_query, "lake"), (Permission.audit_read, "audit")):
            if caller.can(permission):
                return RedirectResponse(f"{PREFIX}/{page}", status_code=303)
        return _render(request, "home.html", {})

    def login_page(request: Request, *, status: int = 200, error: str | None = None, email: str = "",
                   orgs: list[str] | None = None, next_page: str | None = None) -> HTMLResponse:
        token, new = sessions.login_csrf(request)
        response = _render(request, "login.html", {"login_csrf": token, "error": error, "email": email,
                                                   "orgs": orgs or [], "next": _safe_next(next_page)}, status=status)
        if new:
            sessions.set_login_csrf(request, response, token)
        return response

    @app.get("/login")
    def login_form(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002 - the query's name
        return login_page(request, next_page=next)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = _text(await _form(request))
        s = _services(request)
        email, next_page = form.get("email", "").strip(), form.get("next")
        expected = request.cookies.get(sessions.LOGIN_CSRF_COOKIE, "")
        if not sessions.csrf_ok(expected, form.get(sessions.CSRF_FIELD)):
            log.warning("login form without a valid CSRF token", client=request.client.host if request.client else None)
            return login_page(request, status=403, email=email, next_page=next_page,
                              error="This form expired or did not come from this page: please log in again.")
        try:
            data = LoginRequest(email=email, password=form.get("password", ""), org=form.get("org") or None)
        except ValidationError:
            return login_page(request, status=422, email=email, next_page=next_page,
                              error="Enter your email and password.")
        context = sessions.request_context(request, s.settings)
        settings = s.settings

        def attempt() -> tuple[LoginResponse | None, str | None]:
            with s.sessions.begin(None) as session:
                return identity.login(
                    session, data, context, ttl=dt.timedelta(minutes=settings.token_ttl_minutes),
                    max_fail=settings.login_max_failures, max_fail_addr=settings.login_max_failures_per_address,
                    lockout=dt.timedelta(minutes=settings.login_lockout_minutes))

        def lockout(exc: LockedOut) -> None:
            with s.sessions.begin(None) as session:
                identity.record_lockout(session, exc, context)

        try:
            result, _failure = await run_in_threadpool(attempt)
        except OrganizationNotNamed as exc:
            return login_page(request, status=422, email=email, orgs=exc.slugs, next_page=next_page,
                              error="You belong to several organizations: choose the one to work in.")
        except LockedOut as exc:
            await run_in_threadpool(lockout, exc)
            return login_page(request, status=429, email=email, next_page=next_page, error=exc.message)
        if result is None:
            # As the API: the failed attempt is on record; the page does not say which part was wrong.
            return login_page(request, status=401, email=email, next_page=next_page,
                              error="Wrong email or password.")
        response = RedirectResponse(_safe_next(next_page), status_code=303)
        sessions.set_session_cookie(request, response, result.token, result.expires_at)
        response.delete_cookie(sessions.LOGIN_CSRF_COOKIE, path="/")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        caller = _caller(request)
        form = _text(await _form(request))
        await _check_csrf(request, caller, form)
        s = _services(request)

        def work() -> None:
            with s.sessions.begin(caller.org_id) as session:
                identity.logout(session, caller)

        await run_in_threadpool(work)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        sessions.clear_session_cookie(request, response)
        return response

    # ------------------------------------------------------------------ the technician's inbox

    @app.get("/inbox")
    def inbox(request: Request, view: str = "role", page: int = 1) -> HTMLResponse:
        caller = _caller(request)
        _require(caller, Permission.tasks_read)
        views = {"role": TaskFilter(my_roles=True), "mine": TaskFilter(mine=True),
                 "overdue": TaskFilter(overdue=True), "all": TaskFilter()}
        chosen = views.get(view, views["role"])
        page = max(1, min(page, 1000))
        s = _services(request)
        with s.sessions.begin(caller.org_id) as session:
            # One row more than a page tells whether a next page exists.
            rows = tasks.inbox(session, caller, chosen, limit=page * INBOX_PAGE + 1)
            shown = rows[(page - 1) * INBOX_PAGE: page * INBOX_PAGE]
            subjects = runs.subjects_of(session, {t.run_id for t in shown})  # one statement for the page
        return _render(request, "inbox.html", {"tasks": shown, "subjects": subjects, "view": view if view in views
                                               else "role", "page": page, "more": len(rows) > page * INBOX_PAGE})

    # ------------------------------------------------------------------ the lab manager's runs board

    @app.get("/runs")
    def runs_board(request: Request, status: str = "active", page: int = 1) -> HTMLResponse:
        caller = _caller(request)
        _require(caller, Permission.runs_read)
        statuses = {"active": None, "running": "running", "on_hold": "on_hold", "completed": "completed",
                    "cancelled": "cancelled", "all": None}
        chosen = status if status in statuses else "active"
        page = max(1, min(page, 1000))
        s = _services(request)
        with s.sessions.begin(caller.org_id) as session:
            # "active": running and on hold; one list read per status keeps the service's one filter.
            wanted = ["running", "on_hold"] if chosen == "active" else [statuses[chosen]]
            found = [r for st in wanted for r in runs.list_runs(session, status=st, limit=page * INBOX_PAGE + 1)]
            found.sort(key=lambda r: r.launched_at, reverse=True)
            shown = found[(page - 1) * INBOX_PAGE: page * INBOX_PAGE]
            waiting = runs.waiting_for_runs(session, shown)  # set at a time: two statements for the page
        return _render(request, "runs.html", {"runs": shown, "waiting": waiting, "status": chosen, "page": page,
                                              "more": len(found) > page * INBOX_PAGE})

    # ------------------------------------------------------------------ one task

    def _task(caller: Caller, s: Services, task_id: uuid.UUID) -> tuple[TaskRead, str, list[TaskRead]]:
        with s.sessions.begin(caller.org_id) as session:
            task = tasks.get(session, task_id)
            run = runs.get(session, task.run_id)
            subject = ", ".join(f"{x.type} {x.id}" for x in run.subjects)
            open_now = [t for t in tasks.inbox(session, caller, TaskFilter(run_id=task.run_id), limit=20)
                        if t.id != task.id] if task.status != "open" else []
        return task, subject, open_now

    def task_page(request: Request, caller: Caller, task: TaskRead, subject: str, view: FormView,
                  open_now: list[TaskRead], status: int = 200, message: str | None = None,
                  evidence: list[str] | None = None) -> HTMLResponse:
        return _render(request, "task.html", {
            "task": task, "subject": subject, "form": view, "open_now": open_now, "message": message,
            "evidence": evidence or [],  # ids attached before a refused completion (web/evidence.py)
            "request_id": str(uuid.uuid4()),  # one per rendering: a double submit completes once, a fix is new
            "may_work": caller.role.value in task.roles and caller.can(Permission.tasks_work)}, status=status)

    @app.get("/tasks/{task_id}")
    def task(request: Request, task_id: uuid.UUID) -> HTMLResponse:
        caller = _caller(request)
        _require(caller, Permission.tasks_read)
        t, subject, open_now = _task(caller, _services(request), task_id)
        return task_page(request, caller, t, subject, form_view(t.form, t.checklist), open_now)

    async def _claim_or_release(request: Request, task_id: uuid.UUID, claim: bool) -> Response:
        caller = _caller(request)
        form = _text(await _form(request))
        await _check_csrf(request, caller, form)
        _require(caller, Permission.tasks_work)
        s = _services(request)

        def work() -> TaskRead:
            with s.sessions.begin(caller.org_id) as session:
                return (tasks.claim if claim else tasks.release)(session, caller, task_id)

        t = await run_in_threadpool(work)
        if request.headers.get("hx-request") and form.get("from") == "inbox":
            with s.sessions.begin(caller.org_id) as session:
                subjects = runs.subjects_of(session, {t.run_id})
            return _render(request, "_task_row.html", {"t": t, "subjects": subjects})
        back = f"{PREFIX}/inbox" if form.get("from") == "inbox" else f"{PREFIX}/tasks/{task_id}"
        return RedirectResponse(back, status_code=303)

    @app.post("/tasks/{task_id}/claim")
    async def claim(request: Request, task_id: uuid.UUID) -> Response:
        return await _claim_or_release(request, task_id, True)

    @app.post("/tasks/{task_id}/release")
    async def release(request: Request, task_id: uuid.UUID) -> Response:
        return await _claim_or_release(request, task_id, False)

    @app.post("/tasks/{task_id}/complete")
    async def complete(request: Request, task_id: uuid.UUID) -> Response:
        caller = _caller(request)
        raw = await _form(request)
        posted = _text(raw)
        evidence = [v for v in raw.getlist("evidence") if isinstance(v, str) and 0 < len(v) <= 128
                    and v.isprintable() and not any(c.isspace() for c in v)][:100]  # ids: the rest names none
        await _check_csrf(request, caller, posted)
        _require(caller, Permission.tasks_work)
        s = _services(request)
        t, subject, _ = await run_in_threadpool(_task, caller, s, task_id)
        view = form_view(t.form, t.checklist)
        values, confirmed = submitted(view, posted)
        request_id = posted.get("request_id", "")
        try:
            uuid.UUID(request_id)
        except ValueError:
            request_id = str(uuid.uuid4())
        # The person acts with the form's request id: the idempotency key of the completion, as X-Request-ID.
        acting = Caller(org_id=caller.org_id, org_slug=caller.org_slug, role=caller.role, actor=caller.actor,
                        user_id=caller.user_id, session_id=caller.session_id,
                        context=sessions.request_context(request, s.settings, request_id))
        request.state.caller = acting
        outcome = await s.complete_task(acting, task_id, TaskCompletion(values=values, checklist=confirmed,
                                                                        evidence=evidence))
        if outcome.ok:
            return RedirectResponse(f"{PREFIX}/tasks/{task_id}?completed=1", status_code=303)
        place_reasons(view, outcome.reasons)
        # Reasons beside their fields need no repeating; the others (a claim, a hold, the role) are listed on top.
        message = "Not completed: " + ("see the reasons below." if view.general else "correct what is marked below.")
        return task_page(request, caller, t, subject, view, [], status=outcome.status, message=message,
                         evidence=evidence)

    from web import admin, analyst  # the auditor's, analyst's and admin's pages
    from web import audit as audit_pages

    for pages in (audit_pages.router, analyst.router, admin.router):
        app.include_router(pages)

    from web import approvals, protocols  # their pages use this module's helpers: imported once it is loaded
    from web import compliance as compliance_pages
    from web import records as record_pages
    from web import registry as registry_pages
    from web import reports as report_pages
    from web import runs as run_pages
    from web import samples as sample_pages
    for router in (compliance_pages.router, report_pages.router, run_pages.router, approvals.router, protocols.router,
                   registry_pages.router, sample_pages.router, record_pages.router):
        app.include_router(router)
    return app
