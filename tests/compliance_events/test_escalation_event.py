"""A step still open at its last escalation level raises a deviation by the system, linked to the run and the step;
each level is an alert to the roles it notifies (time-skipping server, real activities and database)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from temporalio.worker import Worker

from activities.runs import RunActivities
from domain.roles import Role
from domain.runs import service as runs
from domain.runs.messages import RunInput
from domain.runs.models import RunLaunch
from tests.runs.conftest import await_for
from tests.runs.support import approve_protocol, caller, one_task
from workflows import ProtocolRun


@pytest.fixture(scope="module")
async def run_queue(skipping_env, platform) -> AsyncIterator[str]:
    queue = f"esc-events-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=4) as pool:
        async with Worker(skipping_env.client, task_queue=queue, workflows=[ProtocolRun],
                          activities=RunActivities(platform.sessions).all(), activity_executor=pool):
            yield queue


def _events_of(owner, run_id) -> list:
    with owner.begin(None) as s:
        return s.execute(text(
            "SELECT e.kind, e.source, e.reporter_id, l2.target_id AS step FROM compliance_events e"
            " JOIN compliance_event_links l ON l.event_id = e.id AND l.target_type = 'run'"
            " JOIN compliance_event_links l2 ON l2.event_id = e.id AND l2.target_type = 'step'"
            " WHERE l.target_id = :r"), {"r": run_id}).all()


async def test_the_last_escalation_level_raises_a_deviation(skipping_env, run_queue, platform, owner, org_a):
    key = f"late-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due="PT30M", levels=[("PT1H", "lab_manager")]))
    with platform.sessions.begin(org_a.id) as s:
        run, plan, _ = runs.launch(s, caller(org_a, Role.lab_manager), RunLaunch(protocol_key=key))
    await skipping_env.client.start_workflow(ProtocolRun.run, RunInput(run=runs.ref(run), plan=plan), id=str(run.id),
                                             task_queue=run_queue)
    await skipping_env.sleep(dt.timedelta(minutes=45))  # due, not yet at the last level
    with owner.begin(None) as s:
        alerts = await await_for(lambda: s.execute(text(
            "SELECT dedupe_key, addressed_roles FROM alerts WHERE org_id = :o AND kind = 'escalation'"
            " AND body LIKE :r"),
            {"o": org_a.id, "r": f"%{run.id}%"}).all())
    assert [(a.dedupe_key.rsplit(":", 1)[1], list(a.addressed_roles)) for a in alerts] == [("0", ["technician"])]
    assert _events_of(owner, run.id) == []

    await skipping_env.sleep(dt.timedelta(hours=1))
    [event] = await await_for(lambda: _events_of(owner, run.id))
    assert (event.kind, event.source, event.reporter_id) == ("deviation", "escalation", "flasktrack")
    with owner.begin(None) as s:
        task = s.execute(text("SELECT id FROM tasks WHERE run_id = :r"), {"r": run.id}).scalar_one()
    assert event.step == task
