"""GET /healthz: each dependency up or down."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import API_KEY, SESSION_TOKEN, Credential, Platform, PlatformDep, authenticate
from domain.roles import Caller, Permission

router = APIRouter(tags=["health"])

HEARTBEAT_FRESH = dt.timedelta(seconds=20)
# Services that report liveness through service_heartbeats, with the component name shown.
HEARTBEAT_SERVICES = {"worker": "worker", "lake_sink": "sink", "flight": "flight"}


# A run whose activity failed this many times in a row, the last time within FAILING_WITHIN, is reported:
# its records are not being made (a request already answered 503, or the interpreter is stuck retrying).
FAILING_AFTER = 3
FAILING_WITHIN = dt.timedelta(minutes=15)


def _heartbeats(p: Platform) -> tuple[dict[str, dt.datetime], int]:
    with p.tx(None) as s:
        rows = s.execute(text("SELECT service, last_seen FROM service_liveness()")).all()
        # Without an organization only the count: which runs fail, and why, is the organizations' own business.
        failing = s.execute(text("SELECT failing_run_count(:n, :since)"),
                            {"n": FAILING_AFTER, "since": dt.datetime.now(dt.UTC) - FAILING_WITHIN}).scalar_one()
    return {r[0]: r[1] for r in rows}, int(failing)


def _own_failing_runs(p: Platform, caller: Caller) -> list[dict[str, Any]]:
    """The caller's organization's failing runs: row-level security keeps every other organization's out."""
    with p.tx(caller) as s:
        failing = s.execute(text(
            "SELECT run_id, activity, failures, error_type, last_failed_at FROM activity_failures"
            " WHERE failures >= :n AND last_failed_at > :since ORDER BY last_failed_at DESC LIMIT 100"),
            {"n": FAILING_AFTER, "since": dt.datetime.now(dt.UTC) - FAILING_WITHIN}).all()
    return [{"run_id": str(f.run_id), "activity": f.activity, "failures": f.failures, "error": f.error_type,
             "last_failed_at": f.last_failed_at.isoformat()} for f in failing]


def optional_caller(request: Request, p: PlatformDep, _session: Annotated[Credential, Security(SESSION_TOKEN)],
                    _api_key: Annotated[Credential, Security(API_KEY)]) -> Caller | None:
    """The caller when credentials are sent (wrong ones are 401, never silently anonymous); else None. In a
    transaction of its own: health answers while the database is down."""
    if "authorization" not in request.headers:
        return None
    with p.tx(None) as s:
        return authenticate(request, s)


@router.get("/healthz", openapi_extra={"security": [{}, {"sessionToken": []}, {"apiKey": []}]})
def healthz(p: PlatformDep, caller: Annotated[Caller | None, Depends(optional_caller)]) -> JSONResponse:
    """Each dependency: database, Temporal, worker, lake sink, Flight SQL; and runs whose activities keep failing
    (`runs`: degraded, with `failing_count` across the platform). Anonymous callers see only that count; a
    caller whose role reads runs also sees their own organization's failing runs (`failing`: each run, the
    activity, how many attempts failed and the error's type), never another organization's."""
    checks: dict[str, dict[str, Any]] = {}
    beats: dict[str, dt.datetime] = {}
    failing: int | None = None
    try:
        beats, failing = _heartbeats(p)
        checks["database"] = {"status": "up"}
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health check
        checks["database"] = {"status": "down", "error": type(exc).__name__}
    checks["temporal"] = dict(p.temporal_health.report())
    now = dt.datetime.now(dt.UTC)
    for name, service in HEARTBEAT_SERVICES.items():
        at = beats.get(service)
        if at is None:
            checks[name] = {"status": "down", "error": "never reported"}
        else:
            fresh = now - at <= HEARTBEAT_FRESH
            checks[name] = {"status": "up" if fresh else "down", "last_seen": at.isoformat()}
    if failing is not None:
        runs: dict[str, Any] = {"status": "degraded" if failing else "up", "failing_count": failing}
        if caller is not None and caller.can(Permission.runs_read):
            runs["failing"] = _own_failing_runs(p, caller)
        checks["runs"] = runs
    ok = all(c["status"] == "up" for c in checks.values())
    return JSONResponse(status_code=200 if ok else 503, content={"status": "ok" if ok else "degraded",
                                                                 "checks": checks})
