"""The platform's metrics, in Prometheus's format: one definition per figure, imported by the service that moves it.

Each process exposes its own registry: the API at `GET /metrics`, the worker, the sink and the Flight SQL server
on their own metrics port (`FLASKTRACK_<SERVICE>_METRICS_PORT`; `flasktrack up` sets 9464–9466, unset = off, so
tests and replicas never fight over a port). Replicas are told apart by the scrape's `instance` label. Labels
take a small fixed set of values (route templates, never paths with ids), so no client can grow a series set.
`docs/operations.md` says what each figure means and `docs/grafana/flasktrack.json` charts them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest, start_http_server

__all__ = ["CONTENT_TYPE_LATEST", "exposition", "serve", "timed"]

# --- API
HTTP_SECONDS = Histogram(
    "flasktrack_http_request_duration_seconds", "Time to answer an HTTP request, by route template",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
STEP_ACTIONS = Counter(
    "flasktrack_step_actions_total", "Step actions (task completions, approval decisions) by outcome",
    ["action", "outcome"])  # action: completion | approval; outcome: accepted | refused | unavailable

RUN_CONTROLS = Counter("flasktrack_run_controls_total", "Runs held, resumed and cancelled", ["action"])

# --- worker (the workflow's activities)
ESCALATIONS = Counter("flasktrack_escalations_total", "Escalations fired on late tasks (level 0: the due time)",
                      ["level"])

# --- audit (every process that seals: API and worker)
SEAL_LAG = Gauge("flasktrack_audit_seal_lag_seconds",
                 "Age of the oldest audit entry waiting to be sealed into its chain, at the last sealing round")
VERIFY_OK = Gauge("flasktrack_audit_last_verification_ok",
                  "1 if the last verification before a checkpoint passed, 0 if it found a problem")
VERIFY_AT = Gauge("flasktrack_audit_last_verification_timestamp_seconds",
                  "When the last verification before a checkpoint ran (Unix time)")

# --- sink
OUTBOX_DEPTH = Gauge("flasktrack_outbox_depth", "Outbox rows not yet in the lake")
OUTBOX_AGE = Gauge("flasktrack_outbox_oldest_age_seconds",
                   "Age of the oldest outbox row not yet in the lake (the sink's lag)")
DELTA_COMMIT_SECONDS = Histogram(
    "flasktrack_delta_commit_seconds", "Time to commit one outbox batch to its Delta tables",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
LAKE_ROWS = Counter("flasktrack_lake_rows_total", "Outbox rows committed to the lake")

# --- Flight SQL
FLIGHT_QUERIES = Counter("flasktrack_flight_queries_total", "Flight SQL statements by outcome",
                         ["outcome"])  # flight/auth.py Outcome: ok | refused | error | denied | unauthenticated


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe the time the block takes (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


def exposition() -> bytes:
    """This process's metrics in the Prometheus text format."""
    return generate_latest()


def serve(host: str, port: int | None) -> bool:
    """Expose this process's metrics on `host:port` from a daemon thread; nothing when the port is unset. A port
    that is taken is logged, not fatal: a service without its metrics still does the lab's work."""
    if not port:
        return False
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        structlog.get_logger("flasktrack.metrics").warning("metrics not exposed", host=host, port=port,
                                                            error=str(exc))
        return False
    return True
