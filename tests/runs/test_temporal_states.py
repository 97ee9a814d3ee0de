"""What an operator sees in Temporal: runs end in a state that says how (cancelled → CANCELED, rejected → FAILED
with RunRejected), carry search attributes to find them by, and a cancellation requested in Temporal becomes a
platform cancel, on record."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from temporalio.client import WorkflowExecutionStatus

from domain.roles import Role
from tests.runs.conftest import await_for
from tests.runs.support import PASSWORD_OF, approve_protocol, one_task, open_tasks
from tests.support import seed_material
from workflows.run import ORG_ATTR, PROTOCOL_ATTR, STATUS_ATTR, SUBJECT_ATTR


async def _launch(client, org, key: str, subject: str) -> dict:
    r = await asyncio.to_thread(client.post, "/api/v1/runs", json={
        "protocol_key": key, "subjects": [{"type": "sample", "id": subject}]}, headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    return r.json()


async def _ended(dev_env, run_id: str):
    handle = dev_env.client.get_workflow_handle(run_id)

    async def closed():
        d = await handle.describe()
        return d if d.status != WorkflowExecutionStatus.RUNNING else None

    deadline = asyncio.get_running_loop().time() + 30
    while (d := await closed()) is None:
        assert asyncio.get_running_loop().time() < deadline, "the workflow did not end"
        await asyncio.sleep(0.1)
    return d


async def test_cancelled_and_rejected_runs_end_so_in_temporal_and_can_be_found(client, temporal_api, dev_env, owner,
                                                                             org_a):
    key = f"ops-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due=None))
    subject = f"S-{uuid.uuid4().hex[:6]}"
    seed_material(owner, org_a.id, [subject], [])
    run = await _launch(client, org_a, key, subject)
    d = await dev_env.client.get_workflow_handle(run["id"]).describe()
    attrs = d.typed_search_attributes
    assert (attrs.get(ORG_ATTR), attrs.get(PROTOCOL_ATTR), attrs.get(SUBJECT_ATTR), attrs.get(STATUS_ATTR)) == (
        org_a.slug, f"{key} v1", [f"sample:{subject}"], "running")
    query = f"FlasktrackSubject = 'sample:{subject}' AND FlasktrackOrg = '{org_a.slug}'"

    async def listed() -> list[str]:
        return [w.id async for w in dev_env.client.list_workflows(query)]

    deadline = asyncio.get_running_loop().time() + 30
    while await listed() != [run["id"]]:  # visibility is eventually consistent
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)

    r = await asyncio.to_thread(client.post, f"/api/v1/runs/{run['id']}/cancel", json={"reason": "sample lost"},
                                headers=org_a.headers(Role.lab_manager))
    assert r.status_code == 200, r.text
    d = await _ended(dev_env, run["id"])
    assert d.status == WorkflowExecutionStatus.CANCELED
    assert d.typed_search_attributes.get(STATUS_ATTR) == "cancelled"

    reject = f"ops-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, {"key": reject, "title": "Review", "steps": [
        {"key": "review", "kind": "approval", "title": "Review", "roles": ["lab_manager"], "meaning": "reviewed"}]})
    run = await _launch(client, org_a, reject, subject)
    await await_for(lambda: open_tasks(client, org_a, run["id"], Role.lab_manager), timeout=30)
    r = await asyncio.to_thread(client.post, f"/api/v1/runs/{run['id']}/approvals", headers=org_a.headers(
        Role.lab_manager), json={"decision": "reject", "password": PASSWORD_OF, "reason": "wrong construct"})
    assert r.status_code == 200 and r.json()["run_status"] == "rejected", r.text
    d = await _ended(dev_env, run["id"])
    assert d.status == WorkflowExecutionStatus.FAILED
    assert d.typed_search_attributes.get(STATUS_ATTR) == "rejected"
    try:
        await dev_env.client.get_workflow_handle(run["id"]).result()
        raise AssertionError("a rejected run does not complete")
    except Exception as exc:  # noqa: BLE001 - WorkflowFailureError, its cause says why
        assert "RunRejected" in repr(exc.__cause__) or "rejected" in str(exc.__cause__), exc


async def test_a_cancel_from_the_temporal_ui_is_a_platform_cancel_on_record(client, temporal_api, dev_env, owner,
                                                                           org_a):
    key = f"ui-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due=None))
    run = await _launch(client, org_a, key, "S-UI")
    [task] = await await_for(lambda: open_tasks(client, org_a, run["id"]), timeout=30)
    await dev_env.client.get_workflow_handle(run["id"]).cancel(reason="operator: wrong sample")
    d = await _ended(dev_env, run["id"])
    assert d.status == WorkflowExecutionStatus.CANCELED
    detail = (await asyncio.to_thread(client.get, f"/api/v1/runs/{run['id']}",
                                      headers=org_a.headers(Role.lab_manager))).json()
    assert detail["status"] == "cancelled" and detail["open_tasks"] == [] and detail["waiting_for"] == []
    assert detail["status_reason"] == "cancellation requested in Temporal: operator: wrong sample"
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_a.id})
        entries = s.execute(text("SELECT action, actor_id, reason FROM audit_log WHERE entity_type = 'run'"
                                 " AND entity_id = :r ORDER BY seq"), {"r": run["id"]}).all()
        task_status = s.execute(text("SELECT status FROM tasks WHERE id = :t"), {"t": task["id"]}).scalar_one()
    assert [(e.action, e.actor_id) for e in entries] == [("launch", str(org_a.users[Role.lab_manager][0])),
                                                          ("cancel", "temporal")]
    assert "operator: wrong sample" in entries[-1].reason and task_status == "cancelled"
