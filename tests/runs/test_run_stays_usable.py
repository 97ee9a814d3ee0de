"""A request whose record fails never wedges its run: a refusal comes back at once as the API's 4xx, any other
failure is retried a few times and then answered 503 while the run takes further requests, the database and
Temporal agree about the run throughout, and /healthz names the run meanwhile.
The real API, the real worker (a subprocess), the Temporal dev server, real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.runs import RunActivities
from api import temporal as api_temporal
from domain.errors import Invalid
from domain.roles import RequestContext, Role
from domain.runs.messages import ActorRef, Control, ControlRun, RunRef
from tests.runs.conftest import wait_for
from tests.runs.support import complete, launch_with_open_task
from tests.support import Org, make_org
from workflows.run import ProtocolRun

CHECKLIST = ["balance_calibrated"]


@pytest.fixture(scope="module")
def org(owner, client) -> Org:
    return make_org(owner, client)


def _status(owner, run_id: str) -> str:
    with owner.begin(None) as s:
        return str(s.execute(text("SELECT status FROM runs WHERE id = :r"), {"r": run_id}).scalar_one())


def _failures(owner, run_id: str) -> list[Any]:
    with owner.begin(None) as s:
        return s.execute(text("SELECT activity, failures FROM activity_failures WHERE run_id = :r"),
                         {"r": run_id}).all()


def _control(org: Org, action: str, reason: str) -> Control:
    user_id, _ = org.users[Role.lab_manager]
    return Control(action=action, reason=reason, request=RequestContext(request_id=str(uuid.uuid4())),  # type: ignore[arg-type]
                   actor=ActorRef(type="user", id=str(user_id), display="lab manager", user_id=str(user_id),
                                  role="lab_manager"))


def test_a_domain_error_in_an_activity_is_final_and_carries_its_status(platform, owner, org):
    """The activity itself: NotFound becomes a non-retryable failure with the API's status."""
    ghost = RunRef(org_id=str(org.id), run_id=str(uuid.uuid4()), protocol_key="ghost", protocol_version=1)
    env = ActivityEnvironment()
    with pytest.raises(ApplicationError) as info:
        env.run(RunActivities(platform.sessions).control_run, ControlRun(run=ghost, control=_control(org, "hold", "x")))
    assert info.value.non_retryable and info.value.type == "NotFound"
    assert info.value.details[0]["status"] == 404


def test_a_value_the_database_refuses_answers_422_at_the_first_attempt(client, temporal_api, owner, org):
    """A hold whose reason PostgreSQL cannot hold, sent straight to the workflow (as an API without the
    validation layer would): refused at once, never retried; the run goes on."""
    run_id, task = launch_with_open_task(client, owner, org, "usable")
    control = _control(org, "hold", "contamination\x00suspected")

    async def hold() -> Any:
        return await api_temporal.update(temporal_api, run_id, ProtocolRun.hold, control,
                                         request_id=control.request.request_id)

    with pytest.raises(Invalid) as info:
        asyncio.run(hold())
    assert info.value.status == 422 and "cannot be stored" in info.value.message
    assert _failures(owner, run_id) == []  # a refusal is not a failure: no attempt was retried
    assert _status(owner, run_id) == "running"
    r = client.post(f"/api/v1/runs/{run_id}/hold", json={"reason": "contamination suspected"},
                    headers=org.headers(Role.lab_manager))
    assert r.status_code == 200 and r.json()["status"] == "on_hold", r.text
    r = client.post(f"/api/v1/runs/{run_id}/resume", json={"reason": "cleared"}, headers=org.headers(Role.lab_manager))
    assert r.status_code == 200 and r.json()["status"] == "running", r.text
    r = complete(client, org, task["id"], {"mass_g": "2"}, CHECKLIST)
    assert r.status_code == 200 and r.json()["run_status"] == "completed", r.text


def _temporal_closed(client, org: Org, run_id: str) -> bool:
    h = client.get(f"/api/v1/runs/{run_id}/history", headers=org.headers(Role.auditor)).json()
    kinds = {t["kind"] for t in h["timeline"] if t["source"] == "temporal"}
    return any(k.startswith("EVENT_TYPE_WORKFLOW_EXECUTION_") and k.endswith(
        ("COMPLETED", "CANCELED", "FAILED", "TERMINATED")) for k in kinds)


def test_a_failing_record_fails_the_request_clearly_and_the_run_stays_usable(client, temporal_api, owner, org):
    run_id, task = launch_with_open_task(client, owner, org, "usable")
    marker = f"fails-{uuid.uuid4().hex[:8]}"
    fn = f"test_fail_{uuid.uuid4().hex[:8]}"
    with owner.begin(None) as s:  # storage that keeps failing for this one hold, as a full disk would
        s.execute(text(f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                       f" IF NEW.status_reason = '{marker}' THEN RAISE EXCEPTION 'storage failure'; END IF;"
                       f" RETURN NEW; END $$"))
        s.execute(text(f"CREATE TRIGGER {fn} BEFORE UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION {fn}()"))
    try:
        r = client.post(f"/api/v1/runs/{run_id}/hold", json={"reason": marker}, headers=org.headers(Role.lab_manager))
        assert r.status_code == 503, r.text
        assert "could not be recorded" in r.json()["detail"] and "new X-Request-ID" in r.json()["detail"], r.text

        # /healthz names the run to its own organization while its record keeps failing.
        health = client.get("/healthz", headers=org.headers(Role.lab_manager)).json()
        failing = health["checks"]["runs"]
        assert health["status"] == "degraded" and failing["status"] == "degraded", health
        assert failing["failing_count"] >= 1, health
        assert {"run_id": run_id, "activity": "control_run"}.items() <= next(
            f for f in failing["failing"] if f["run_id"] == run_id).items()
        # Anonymous callers learn only that runs fail and how many; another organization not even which.
        anonymous = client.get("/healthz")
        assert anonymous.json()["checks"]["runs"]["status"] == "degraded", anonymous.text
        assert anonymous.json()["checks"]["runs"]["failing_count"] >= 1, anonymous.text
        assert run_id not in anonymous.text and "control_run" not in anonymous.text, anonymous.text
        elsewhere = client.get("/healthz", headers=make_org(owner, client).headers(Role.admin))
        assert elsewhere.json()["checks"]["runs"]["failing_count"] >= 1, elsewhere.text
        assert run_id not in elsewhere.text and "control_run" not in elsewhere.text, elsewhere.text
        assert client.get("/healthz", headers={"Authorization": "Bearer ftk_not-a-token"}).status_code == 401
    finally:
        with owner.begin(None) as s:
            s.execute(text(f"DROP TRIGGER {fn} ON runs"))
            s.execute(text(f"DROP FUNCTION {fn}()"))

    # Nothing changed, in the database or in the workflow: the run takes the next requests.
    assert _status(owner, run_id) == "running"
    r = client.post(f"/api/v1/runs/{run_id}/hold", json={"reason": "contamination suspected"},
                    headers=org.headers(Role.lab_manager))
    assert r.status_code == 200 and r.json()["status"] == "on_hold", r.text
    assert _failures(owner, run_id) == []  # the success cleared the count
    assert all(f["run_id"] != run_id for f in client.get("/healthz", headers=org.headers(Role.lab_manager))
               .json()["checks"]["runs"]["failing"])
    r = complete(client, org, task["id"], {"mass_g": "2"}, CHECKLIST)
    assert r.status_code == 409 and "on hold" in r.text, r.text

    # Cancel: committed in PostgreSQL and taken by Temporal, whose workflow ends.
    r = client.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "batch lost"},
                    headers=org.headers(Role.lab_manager))
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert _status(owner, run_id) == "cancelled"
    wait_for(lambda: _temporal_closed(client, org, run_id), timeout=30)
