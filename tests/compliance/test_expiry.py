"""An authorization hold is a durable wait in the run's workflow: on Temporal's time-skipping server, with the real
activities and database, a run is held at launch, goes on when the authorization is signed, and is held again
when that authorization expires, with nobody awake but the workflow's timer."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import text

from domain.compliance import authorizations
from domain.compliance.models import AuthorizationCreate, AuthorizationSign, RuleCreate
from domain.identity.service import LoginLimits
from domain.roles import Role
from domain.runs import service as runs
from domain.runs.messages import RunInput, RunState
from domain.runs.models import RunLaunch, Subject
from tests.compliance.support import agro_material, tag
from tests.runs.conftest import await_for
from tests.runs.support import PASSWORD_OF, approve_protocol, caller
from tests.support import make_org
from workflows.run import AUTHORIZATION_RECHECK, WORKFLOW_NAME

LIMITS = LoginLimits()


def _compliance(owner, run_id):
    with owner.begin(None) as s:
        return s.execute(text("SELECT held, reasons, next_expiry, checked_at FROM run_compliance WHERE run_id = :r"),
                         {"r": run_id}).first()


async def test_hold_at_launch_lifted_when_signed_and_placed_again_on_expiry(skipping_env, skipping_worker, platform,
                                                                              owner, client):
    org = make_org(owner, client)
    m = agro_material(client, org)
    tag(client, org, "recombinant_dna", "plasmid", m["plasmid"]["id"])
    manager, admin = caller(org, Role.lab_manager), caller(org, Role.admin)
    with platform.sessions.begin(org.id) as s:
        authorizations.create_rule(s, manager, RuleCreate(tags=["recombinant_dna"], authorization_type="IBC approval"))
    key = f"exp-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, {"key": key, "title": "Subculture", "steps": [
        {"key": "transfer", "kind": "task", "title": "Transfer", "roles": ["technician"]}]})
    with platform.sessions.begin(org.id) as s:
        run, plan, _ = runs.launch(s, manager, RunLaunch(protocol_key=key, subjects=[
            Subject(type="sample", id=m["plate"]["code"])]))
    handle = await skipping_env.client.start_workflow(
        WORKFLOW_NAME, RunInput(run=runs.ref(run), plan=plan), id=str(run.id), task_queue=skipping_worker)

    first = await await_for(lambda: _compliance(owner, run.id))
    assert first.held and first.reasons == [f"recombinant_dna needs IBC approval covering protocol {key}"]
    state = await handle.query("state", result_type=RunState)
    assert state.status == "on_hold" and state.open_tasks == []
    assert [w.reason for w in state.waiting_for] == [f"authorization hold: {first.reasons[0]}"]

    # Valid for two hours of the workflow's time (the time-skipping server's clock runs ahead of the wall clock).
    start = first.checked_at
    with platform.sessions.begin(org.id) as s:
        auth = authorizations.create(s, manager, AuthorizationCreate(
            authorization_type="IBC approval", title="IBC-2026-14", issuer="IBC",
            valid_from=start - dt.timedelta(hours=1), valid_until=start + dt.timedelta(hours=2)))
    with platform.sessions.begin(org.id) as s:
        authorizations.sign(s, admin, auth.id, AuthorizationSign(password=PASSWORD_OF), LIMITS)
    await handle.signal(AUTHORIZATION_RECHECK)
    lifted = await await_for(lambda: (c := _compliance(owner, run.id)) and not c.held and c)
    assert lifted.next_expiry == start + dt.timedelta(hours=2)
    state = await handle.query("state", result_type=RunState)
    assert state.status == "running"

    await skipping_env.sleep(dt.timedelta(hours=3))
    again = await await_for(lambda: (c := _compliance(owner, run.id)) and c.held and c)
    assert again.reasons == first.reasons and again.checked_at >= start + dt.timedelta(hours=2)
    state = await handle.query("state", result_type=RunState)
    assert state.status == "on_hold"
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org.id})
        trail = s.execute(text("SELECT action FROM audit_log WHERE org_id = :o AND entity_id = :r"
                               " AND action LIKE 'authorization_%' ORDER BY seq"), {"o": org.id, "r": str(run.id)})
        assert trail.scalars().all() == ["authorization_hold", "authorization_release", "authorization_hold"]
        status = s.execute(text("SELECT status, status_reason FROM runs WHERE id = :r"), {"r": run.id}).one()
    assert status.status == "on_hold" and status.status_reason.startswith("authorization hold: ")
    await handle.cancel()
