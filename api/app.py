"""The FastAPI application: routers, middleware, and the process's long-lived services."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import structlog
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import alerts as alerts_api
from api import audit, docs, errors, health, identity, openapi
from api import audits as audits_api
from api import compliance as compliance_api
from api import events as events_api
from api import evidence as evidence_api
from api import protocols as protocols_api
from api import registry as registry_api
from api import reports as reports_api
from api import runs as runs_api
from api import samples as samples_api
from api import tasks as tasks_api
from api import temporal as temporal_api
from api.deps import _REQUEST_ID, Platform, login_limits, request_id
from api.guards import BodyLimit, json_bodies, storable_parameters
from api.steps import completion, decision, submit_step_action
from core import metrics
from core.config import Settings, get_settings
from core.db import TenantSessions, app_url, make_engine
from core.storage import open_store
from domain.approvals.models import ApprovalRequest
from domain.audit.checkpoints import CheckpointStore, load_public_keys, load_signing_key
from domain.audit.sealer import Sealer
from domain.compliance.models import AuthorizationRead, AuthorizationSign
from domain.events.models import ActionDone, EventClose, EventCreate, EventDetail, Investigate, RootCause
from domain.events.models import Effectiveness as EventEffectiveness
from domain.identity.secrets import configure_hashing
from domain.roles import Caller
from domain.runs.messages import Outcome
from domain.runs.models import ControlResult, RunControl, RunHistory, RunLaunch, RunRead
from domain.tasks.models import TaskCompletion
from lake.query import LakeQueries
from web import PREFIX as WEB_PREFIX
from web import Services as WebServices
from web import create_web_app
from web.actions import ComplianceActions, ControlAction, EventAction, ReportActions, RunActions

log = structlog.get_logger("flasktrack.api")
T = TypeVar("T")


def build_platform(settings: Settings) -> Platform:
    configure_hashing(settings.password_hash_time_cost, settings.password_hash_memory_kib,
                      settings.password_hash_parallelism)
    engine = make_engine(app_url(settings))
    key = load_signing_key(settings.resolved_signing_key_path, settings.signing_key)
    keys_dir = settings.resolved_signing_key_path.parent
    return Platform(
        settings=settings,
        sessions=TenantSessions(engine),
        checkpoints=CheckpointStore(settings.resolved_checkpoint_dir),
        # Keys retired by rotation stay trusted from their files; the current one is trusted wherever it came from.
        public_keys={**(load_public_keys([keys_dir]) if keys_dir.is_dir() else {}), key.key_id: key.public},
        signing_key=key,
        objects=open_store(settings.resolved_objects_uri, settings.resolved_objects_storage_options),
    )


def web_services(p: Platform) -> WebServices:
    """The pages' services: the platform's, and the API's own paths for step actions and a run's workflow (one set
    of rules, one audit trail), each in a session of the person's organization."""

    @asynccontextmanager
    async def session(caller: Caller) -> AsyncIterator[Session]:
        s = p.sessions.open(caller.org_id)
        try:
            yield s
        finally:
            s.close()

    async def complete_task(caller: Caller, task_id: uuid.UUID, data: TaskCompletion) -> Outcome:
        async with session(caller) as s:
            return await submit_step_action(p, s, caller, completion(task_id, data))

    async def launch(caller: Caller, data: RunLaunch) -> RunRead:
        async with session(caller) as s:
            return (await runs_api.launch_run(p, s, caller, data))[0]

    async def control(caller: Caller, run_id: uuid.UUID, action: ControlAction, data: RunControl) -> ControlResult:
        async with session(caller) as s:
            return await runs_api.control_run(p, s, caller, action, run_id, data)

    async def decide(caller: Caller, run_id: uuid.UUID, data: ApprovalRequest) -> Outcome:
        async with session(caller) as s:
            return await submit_step_action(p, s, caller, decision(run_id, data, login_limits(p.settings)))

    async def history(caller: Caller, run_id: uuid.UUID) -> RunHistory:
        async with session(caller) as s:
            return (await runs_api.run_history(p, s, run_id))[0]

    async def sign_authorization(caller: Caller, auth_id: uuid.UUID, data: AuthorizationSign) -> AuthorizationRead:
        async with session(caller) as s:
            return await compliance_api.sign_authorization(auth_id, data, caller, s, p)

    async def raise_event(caller: Caller, data: EventCreate) -> EventDetail:
        async with session(caller) as s:
            return (await events_api.raise_and_start(p, s, caller, data))[0]

    steps: dict[str, tuple[type[BaseModel], Callable[..., Awaitable[EventDetail]]]] = {
        "investigate": (Investigate, events_api.investigate), "root_cause": (RootCause, events_api.root_cause),
        "effectiveness": (EventEffectiveness, events_api.effectiveness), "close": (EventClose, events_api.close)}

    async def event_step(caller: Caller, event_id: uuid.UUID, action: EventAction, data: BaseModel) -> EventDetail:
        model, handler = steps[action]
        if not isinstance(data, model):
            raise TypeError(f"{action} takes {model.__name__}")
        async with session(caller) as s:
            return await handler(event_id, data, caller, s, p)

    async def complete_action(caller: Caller, event_id: uuid.UUID, action_id: uuid.UUID,
                              data: ActionDone) -> EventDetail:
        async with session(caller) as s:
            return await events_api.complete_action(event_id, action_id, data, caller, s, p)

    settings = p.settings
    reports = ReportActions(
        tables=lambda caller: run_in_threadpool(reports_api.builder_tables, caller, p),
        validate=lambda caller, data: _with_session(caller, reports_api.builder_validate, data, caller, platform=p),
        preview=lambda caller, data: _with_session(caller, reports_api.builder_preview, data, caller, platform=p),
        save=lambda caller, data: _with_session(caller, reports_api.create_definition, data, caller, platform=p),
        create=lambda caller, data: _with_session(caller, reports_api.create_report, data, caller),
        update=lambda caller, rid, data: _with_session(caller, reports_api.update_report, rid, data, caller),
        execute=lambda caller, rid: _with_session(caller, reports_api.execute_report, rid, caller, platform=p),
        submit=lambda caller, rid, data: _with_session(caller, reports_api.submit_for_review, rid, data, caller),
        finalize=lambda caller, rid, data: _with_session(caller, reports_api.finalize_report, rid, data, caller,
                                                         platform=p))

    async def _with_session(caller: Caller, handler: Callable[..., Awaitable[T]], *args: Any,
                            platform: Platform | None = None) -> T:
        """One of api/reports.py's handlers as its route calls it: (…, caller, session[, platform])."""
        async with session(caller) as s:
            return await handler(*args, s, *([platform] if platform is not None else []))

    lake = LakeQueries(settings.resolved_lake_uri, storage_options=settings.resolved_lake_storage_options or None)
    return WebServices(settings=settings, sessions=p.sessions, complete_task=complete_task,
                       checkpoints=p.checkpoints, public_keys=p.public_keys, lake=lake,
                       runs=RunActions(launch=launch, control=control, decide=decide, history=history),
                       objects=p.objects, reports=reports,
                       compliance=ComplianceActions(sign_authorization=sign_authorization, raise_event=raise_event,
                                                    event_step=event_step, complete_action=complete_action))


def create_app(platform: Platform | None = None, *, background: bool = True) -> FastAPI:
    pages = create_web_app()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        p = platform or build_platform(get_settings())
        app.state.platform = p
        pages.state.services = web_services(p)
        sealer = None
        if background:
            sealer = Sealer(p.sessions, interval_s=p.settings.seal_interval_s,
                            signing_key=p.signing_key, store=p.checkpoints,
                            checkpoint_interval_s=p.settings.checkpoint_interval_s).start()
        close_temporal = await temporal_api.attach(p)  # lazy: the API starts even when Temporal is down
        try:
            yield
        finally:
            await close_temporal()
            if sealer:
                sealer.stop()

    app = FastAPI(
        title="Flask Track",
        version="0.1.0",
        description="Laboratory operations and compliance: protocols as durable workflows, "
        "a hash-chained audit log, and a lake analysts query over Flight SQL.",
        lifespan=lifespan,
        dependencies=[Depends(storable_parameters), Depends(json_bodies)],
        docs_url=None,  # served by api/docs.py from packaged assets, not a CDN
        redoc_url=None,
    )
    errors.install(app)
    docs.install(app)
    openapi.install(app)
    app.include_router(health.router, responses={**errors.error_responses(401),
                                                 503: {"description": "A dependency is down: the same body, "
                                                                      "each check with its status"}})
    # Every operation documents the one error model for each status it may answer (api/errors.py).
    for router in (identity.router, audit.router, protocols_api.router, runs_api.router, tasks_api.router,
                   samples_api.router, samples_api.batch_router, registry_api.router,
                   evidence_api.router, reports_api.router, events_api.router, audits_api.router,
                   alerts_api.router, compliance_api.router, compliance_api.surface_router):
        app.include_router(router, responses=errors.AUTHENTICATED, dependencies=[Depends(request_id)])
    # The web pages (web/): HTML, under their own error handling, outside the JSON API's guards.
    app.mount(WEB_PREFIX, pages, name="web")

    @app.get("/metrics", include_in_schema=False)
    def metrics_exposition() -> Response:
        """This API process's metrics for Prometheus (no organization's data: counts and timings only)."""
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(f"{WEB_PREFIX}/", status_code=303)

    app.add_middleware(BodyLimit)  # inside request_log: a 413 is logged with its request id

    @app.middleware("http")
    async def request_log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get("x-request-id") or ""
        if not _REQUEST_ID.fullmatch(rid):
            rid = str(uuid.uuid4())
        request.state.request_id = rid
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        elapsed = time.perf_counter() - start
        log.info("request", method=request.method, path=request.url.path, status=response.status_code,
                 ms=round(elapsed * 1000, 1))
        route = request.scope.get("route")  # the template (/api/v1/runs/{run_id}): one series per route, not per id
        metrics.HTTP_SECONDS.labels(request.method, getattr(route, "path", "unmatched"),
                                    str(response.status_code)).observe(elapsed)
        return response

    return app

