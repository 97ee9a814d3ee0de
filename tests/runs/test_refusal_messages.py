"""What a refused request says, over HTTP and in the audit log: each thing said once, in plain words."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from domain.roles import Role
from tests.runs.conftest import wait_for
from tests.runs.support import PASSWORD_OF, approve_protocol, open_tasks


def test_refusals_say_each_thing_once(client, temporal_api, owner, org_a):
    key = f"msg-{uuid.uuid4().hex[:6]}"
    mgr = org_a.headers(Role.lab_manager)
    r = client.post("/api/v1/runs", json={"protocol_key": key}, headers=mgr)
    assert r.status_code == 404 and r.json()["detail"] == f"no approved version of protocol '{key}'", r.text

    approve_protocol(owner, org_a.id, {"key": key, "title": "Review only", "steps": [
        {"key": "review", "kind": "approval", "title": "Review", "roles": ["lab_manager"], "meaning": "reviewed"}]})
    r = client.post("/api/v1/runs", json={"protocol_key": key}, headers=mgr)
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    wait_for(lambda: open_tasks(client, org_a, run_id, Role.lab_manager), timeout=30)
    r = client.post(f"/api/v1/runs/{run_id}/approvals", json={"decision": "reject", "password": PASSWORD_OF},
                    headers=mgr)
    assert r.status_code == 422 and r.json()["detail"] == "approval refused: reason: required when rejecting"
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_a.id})
        reasons = s.execute(text("SELECT reason FROM audit_log WHERE org_id = :o AND action = 'refuse'"
                                 " AND entity_id = :r"), {"o": org_a.id, "r": run_id}).scalars().all()
    assert reasons == ["approval refused: reason: required when rejecting"]
