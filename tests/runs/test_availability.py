"""Without Temporal or without a worker, run endpoints answer 503 with what to do, at once."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import replace

from fastapi.testclient import TestClient
from sqlalchemy import text
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from api import temporal as api_temporal
from api.app import create_app
from domain.roles import Role
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol, complete, one_task


async def test_api_starts_when_temporal_is_down_and_answers_503(platform, owner, org_a):
    key = f"down-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due=None))
    nowhere = await Client.connect("127.0.0.1:1", lazy=True, data_converter=pydantic_data_converter)
    down = replace(platform, temporal=nowhere)  # this test's app alone
    with TestClient(create_app(down, background=False)) as c:
        start = time.monotonic()
        r = c.post("/api/v1/runs", json={"protocol_key": key}, headers=org_a.headers(Role.lab_manager))
        assert r.status_code == 503 and "Temporal is not reachable" in r.json()["detail"], r.text
        assert time.monotonic() - start < 5
        probe = wait_for(lambda: (report := down.temporal_health.report()).get("checked_at") and report)
        assert probe["status"] == "down"
        assert c.get("/healthz").json()["checks"]["temporal"]["status"] == "down"
    # The run that could not start is on record as failed, with the reason.
    with owner.begin(org_a.id) as s:
        row = s.execute(text("SELECT status, status_reason FROM runs WHERE protocol_key = :k"), {"k": key}).one()
    assert row.status == "failed" and "Temporal is not reachable" in row.status_reason


def test_no_worker_answers_503_not_a_hang(client, temporal_api, worker_process, owner, org_a, monkeypatch):
    monkeypatch.setattr(api_temporal, "UPDATE_TIMEOUT", dt.timedelta(seconds=2))
    key = f"noworker-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due=None))
    r = client.post("/api/v1/runs", json={"protocol_key": key}, headers=org_a.headers(Role.lab_manager))
    run_id = r.json()["id"]
    task = wait_for(lambda: client.get("/api/v1/tasks", params={"run_id": run_id},
                                       headers=org_a.headers(Role.technician)).json())[0]
    assert platform_probe(client)["status"] == "up"
    worker_process.stop()
    try:
        rid = str(uuid.uuid4())
        start = time.monotonic()
        r = complete(client, org_a, task["id"], {"mass_g": "1"}, ["balance_calibrated"], request_id=rid)
        assert r.status_code == 503 and "flasktrack worker" in r.json()["detail"], r.text
        # Not a hang: without the API's rpc timeout an update waits for a worker indefinitely. The bound is
        # loose on purpose (a loaded CI machine took 6 s for the 2 s timeout plus the database checks).
        assert time.monotonic() - start < 20
    finally:
        worker_process.start()
    # The same request, once a worker is back: done once.
    r = wait_for(lambda: (x := complete(client, org_a, task["id"], {"mass_g": "1"}, ["balance_calibrated"],
                                        request_id=rid)).status_code == 200 and x, timeout=30)
    assert r.json()["run_status"] == "completed"


def platform_probe(client) -> dict:  # type: ignore[no-untyped-def]
    return wait_for(lambda: (p := client.app.state.platform.temporal_health.report())["status"] == "up" and p,
                    timeout=10)
