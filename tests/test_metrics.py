"""Each service's figures in Prometheus's format: the API at /metrics, the others on their metrics port."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import uuid
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from core.db import TenantSessions
from domain import audit
from domain.audit.sealer import Sealer
from domain.roles import SYSTEM_ACTOR, Role
from tests.support import make_org


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_api_metrics_name_routes_by_template_and_count_step_actions(client: TestClient, owner: TenantSessions) -> None:
    org = make_org(owner, client)
    run_id = uuid.uuid4()
    assert client.get(f"/api/v1/runs/{run_id}", headers=org.headers(Role.lab_manager)).status_code == 404
    refused_before = value("flasktrack_step_actions_total", action="completion", outcome="refused")
    unavailable_before = value("flasktrack_step_actions_total", action="completion", outcome="unavailable")
    r = client.post(f"/api/v1/tasks/{uuid.uuid4()}/complete", json={"values": {}},
                    headers=org.headers(Role.technician))
    assert r.status_code in (404, 503)  # no such task, or no Temporal for this app: either way not accepted
    assert (value("flasktrack_step_actions_total", action="completion", outcome="refused") - refused_before
            + value("flasktrack_step_actions_total", action="completion", outcome="unavailable")
            - unavailable_before) == 1

    page = client.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(page.text)}
    routes = {s.labels["route"] for s in families["flasktrack_http_request_duration_seconds"].samples}
    assert "/api/v1/runs/{run_id}" in routes
    assert not any(str(run_id) in route for route in routes)  # ids never become series
    assert "flasktrack_step_actions" in families


def test_the_sealer_reports_how_long_the_oldest_pending_entry_has_waited(owner: TenantSessions,
                                                                         client: TestClient) -> None:
    org = make_org(owner, client)
    with owner.begin(org.id) as s:  # an entry written five minutes ago and not sealed yet
        audit.record(s, org_id=org.id, actor=SYSTEM_ACTOR, action="check", entity_type="test", entity_id="lag",
                     occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    sealer = Sealer(owner)
    sealer.measure_lag()
    assert value("flasktrack_audit_seal_lag_seconds") >= 300


def test_a_service_exposes_its_metrics_on_its_port_and_a_taken_port_is_not_fatal() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        taken = s.getsockname()[1]
        s.listen()
        assert metrics.serve("127.0.0.1", taken) is False  # logged; the service goes on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert metrics.serve("127.0.0.1", free) is True
    body = httpx.get(f"http://127.0.0.1:{free}/metrics", timeout=5).text
    assert "flasktrack_outbox_oldest_age_seconds" in body and "flasktrack_flight_queries_total" in body
    assert metrics.serve("127.0.0.1", None) is False


def test_the_dashboard_charts_only_figures_the_services_export() -> None:
    dashboard = json.loads((Path(__file__).parents[1] / "docs/grafana/flasktrack.json").read_text())
    exported = {m.name for m in REGISTRY.collect() if m.name.startswith("flasktrack_")}
    charted = {name for p in dashboard["panels"] for t in p["targets"]
               for name in re.findall(r"flasktrack_[a-z_]+", t["expr"])}
    base = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in charted}
    assert base <= exported, base - exported
    assert {re.sub(r"_total$", "", n) for n in exported} <= base  # and every figure has a chart
