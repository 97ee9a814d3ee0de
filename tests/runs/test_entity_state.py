"""An entity's past state from the audit log, over HTTP, for a real run and its task."""

from __future__ import annotations

import datetime as dt
import uuid

from domain.roles import Role
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol, complete, one_task, open_tasks
from tests.support import make_org


def test_state_is_folded_from_every_entry_and_refusals_are_not_state(client, temporal_api, owner):
    org = make_org(owner, client)
    key = f"state-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, one_task(key, due=None))
    mgr = org.headers(Role.lab_manager)
    r = client.post("/api/v1/runs", json={"protocol_key": key, "subjects": [{"type": "sample", "id": "S-7"}],
                                          "parameters": {"medium": "MS"}}, headers=mgr)
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    task = wait_for(lambda: next(iter(open_tasks(client, org, run_id)), None), timeout=30)
    assert client.post(f"/api/v1/tasks/{task['id']}/claim", headers=org.headers(Role.technician)).status_code == 200
    r = client.post(f"/api/v1/runs/{run_id}/hold", json={"reason": "balance out of calibration"}, headers=mgr)
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/runs/{run_id}/hold", json={"reason": "again"}, headers=mgr)
    assert r.status_code == 409  # a refused control: on record, not state
    r = complete(client, org, task["id"], {"mass_g": "2"}, [])
    assert r.status_code == 409  # a refused completion: on record, not state
    at = {"at": dt.datetime.now(dt.UTC).isoformat()}
    aud = org.headers(Role.auditor)

    run = client.get(f"/api/v1/audit/entities/run/{run_id}/state", params=at, headers=aud).json()
    assert run["exists"] and run["last_action"] == "hold"
    assert run["state"]["status"] == "on_hold"  # the hold's own entry…
    assert run["state"]["protocol_key"] == key and run["state"]["subjects"] == [{"type": "sample", "id": "S-7"}]
    assert run["state"]["parameters"] == {"medium": "MS"}  # …over everything the launch recorded

    state = client.get(f"/api/v1/audit/entities/task/{task['id']}/state", params=at, headers=aud).json()
    assert state["last_action"] == "claim"
    assert state["state"]["status"] == "open" and state["state"]["step_key"] == "weigh"
    assert state["state"]["claimed_by"] == str(org.users[Role.technician][0])
    assert "reasons" not in state["state"] and "doing" not in state["state"]
