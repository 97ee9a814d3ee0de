"""GET /healthz: each dependency up or down."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import Platform, platform

router = APIRouter(tags=["health"])

HEARTBEAT_FRESH = dt.timedelta(seconds=20)
# Services that report liveness through service_heartbeats, with the component name shown.
HEARTBEAT_SERVICES = {"worker": "worker", "lake_sink": "sink", "flight": "flight"}


# A run whose activity failed this many times in a row, the last time within FAILING_WITHIN, is reported:
# its records are not being made (a request already answered 503, or the interpreter is stuck retrying).
FAILING_AFTER = 3
FAILING_WITHIN = dt.timedelta(minutes=15)


def _heartbeats(p: Platform) -> tuple[dict[str, dt.datetime], list[dict[str, Any]]]:
    with p.tx(None) as s:
        rows = s.execute(text("SELECT service, last_seen FROM service_liveness()")).all()
        failing = s.execute(text("SELECT run_id, activity, failures, error_type, last_failed_at"
                                 " FROM failing_runs(:n, :since)"),
                            {"n": FAILING_AFTER, "since": dt.datetime.now(dt.UTC) - FAILING_WITHIN}).all()
    runs = [{"run_id": str(f.run_id), "activity": f.activity, "failures": f.failures, "error": f.error_type,
             "last_failed_at": f.last_failed_at.isoformat()} for f in failing]
    return {r[0]: r[1] for r in rows}, runs


@router.get("/healthz")
def healthz(p: Platform = Depends(platform)) -> JSONResponse:
    """Each dependency: database, Temporal, worker, lake sink, Flight SQL; and runs whose activities keep failing
    (`runs`: degraded, naming each run, the activity, how many attempts failed and the error's type)."""
    checks: dict[str, dict[str, Any]] = {}
    beats: dict[str, dt.datetime] = {}
    failing: list[dict[str, Any]] | None = None
    try:
        beats, failing = _heartbeats(p)
        checks["database"] = {"status": "up"}
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health check
        checks["database"] = {"status": "down", "error": type(exc).__name__}
    probe: Callable[[], dict[str, Any]] | None = p.extras.get("temporal_probe")
    checks["temporal"] = probe() if probe else {"status": "down", "error": "not configured"}
    now = dt.datetime.now(dt.UTC)
    for name, service in HEARTBEAT_SERVICES.items():
        at = beats.get(service)
        if at is None:
            checks[name] = {"status": "down", "error": "never reported"}
        else:
            fresh = now - at <= HEARTBEAT_FRESH
            checks[name] = {"status": "up" if fresh else "down", "last_seen": at.isoformat()}
    if failing is not None:
        checks["runs"] = {"status": "degraded", "failing": failing} if failing else {"status": "up"}
    ok = all(c["status"] == "up" for c in checks.values())
    return JSONResponse(status_code=200 if ok else 503, content={"status": "ok" if ok else "degraded",
                                                                 "checks": checks})
