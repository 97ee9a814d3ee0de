"""A signature is recorded with the decision it signs, in one transaction, or not at all: a decision the run's
workflow does not take leaves no signature behind. The real API, worker and Temporal dev server."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from domain.roles import Role
from tests.runs.conftest import wait_for
from tests.runs.support import PASSWORD_OF, approve_protocol, open_tasks
from tests.support import make_org


def _signatures(owner, task_id: str) -> tuple[int, int]:
    with owner.begin(None) as s:
        rows = s.execute(text("SELECT id FROM signatures WHERE entity_type = 'task' AND entity_id = :t"),
                         {"t": task_id}).scalars().all()
        s.execute(text("SELECT audit_seal(org_id) FROM signatures WHERE entity_id = :t"), {"t": task_id})
        entries = s.execute(text("SELECT count(*) FROM audit_log WHERE entity_type = 'signature'"
                                 " AND entity_id = ANY(:ids)"), {"ids": [str(r) for r in rows]}).scalar_one()
    return len(rows), entries


def test_a_decision_the_workflow_refuses_records_no_signature(client, temporal_api, owner):
    org = make_org(owner, client)
    mgr = org.headers(Role.lab_manager)
    key = f"sign-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, {"key": key, "title": "Review only", "steps": [
        {"key": "review", "kind": "approval", "title": "Review", "roles": ["lab_manager"], "meaning": "reviewed"}]})
    runs = []
    for _ in range(2):
        r = client.post("/api/v1/runs", json={"protocol_key": key}, headers=mgr)
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        runs.append((run_id, wait_for(lambda rid=run_id: open_tasks(client, org, rid, Role.lab_manager),
                                      timeout=30)[0]))

    # The first run's workflow is stopped outside the platform (an operator in Temporal's UI): the database
    # still shows the approval open, the API checks the password, and the workflow cannot take the decision.
    (stopped, approval), (going, other) = runs
    handle = temporal_api.temporal.get_workflow_handle(stopped)
    asyncio.run(handle.terminate(reason="operator"))
    r = client.post(f"/api/v1/runs/{stopped}/approvals", json={"decision": "approve", "password": PASSWORD_OF},
                    headers=mgr)
    assert r.status_code == 409, r.text
    assert _signatures(owner, approval["id"]) == (0, 0)

    # A decision the workflow takes: its signature and the signature's audit entry, once.
    r = client.post(f"/api/v1/runs/{going}/approvals", json={"decision": "approve", "password": PASSWORD_OF},
                    headers=mgr)
    assert r.status_code == 200 and r.json()["result"] == "approved", r.text
    assert _signatures(owner, other["id"]) == (1, 1)
    with owner.begin(None) as s:
        sig = s.execute(text("SELECT id, meaning, signer_name FROM signatures WHERE entity_id = :t"),
                        {"t": other["id"]}).one()
    assert str(sig.id) == r.json()["signature_id"] and sig.meaning == "reviewed"
    assert sig.signer_name == f"lab_manager of {org.slug}"
