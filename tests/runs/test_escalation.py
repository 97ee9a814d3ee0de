"""Escalation timing on Temporal's time-skipping server, with the real activities and database."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import text

from domain.roles import Role
from domain.runs import service as runs
from domain.runs.messages import ActorRef, Completion, Outcome, RunInput
from domain.runs.models import RunLaunch
from tests.runs.conftest import await_for
from tests.runs.support import approve_protocol, caller, one_task
from workflows.run import WORKFLOW_NAME


def _launch(platform, org, key: str, time_scale: float = 1.0):
    with platform.sessions.begin(org.id) as s:
        run, plan, _ = runs.launch(s, caller(org, Role.lab_manager), RunLaunch(protocol_key=key, time_scale=time_scale))
    return run, RunInput(run=runs.ref(run), plan=plan, time_scale=time_scale)


def _events(owner, run_id, event: str):
    with owner.begin(None) as s:
        return s.execute(text("SELECT detail FROM step_events WHERE run_id = :r AND event = :e ORDER BY occurred_at"),
                         {"r": run_id, "e": event}).scalars().all()


async def test_escalation_levels_fire_at_due_plus_each_delay(skipping_env, skipping_worker, platform, owner, org_a):
    key = f"esc-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due="PT30M", levels=[("PT15M", "lab_manager"), ("PT1H", "admin")]))
    run, inp = _launch(platform, org_a, key)
    handle = await skipping_env.client.start_workflow(WORKFLOW_NAME, inp, id=str(run.id), task_queue=skipping_worker)
    opened = await await_for(lambda: _events(owner, run.id, "opened"))
    assert opened[0]["due_at"]

    await skipping_env.sleep(dt.timedelta(minutes=29))
    assert _events(owner, run.id, "escalated") == []  # not yet due
    await skipping_env.sleep(dt.timedelta(hours=2))
    fired = await await_for(lambda: (e := _events(owner, run.id, "escalated")) and len(e) == 3 and e)
    due = dt.datetime.fromisoformat(fired[0]["due_at"].replace("Z", "+00:00"))
    scheduled = [dt.datetime.fromisoformat(f["scheduled_at"].replace("Z", "+00:00")) for f in fired]
    assert [f["level"] for f in fired] == [0, 1, 2]
    assert [f["notify_roles"] for f in fired] == [["technician"], ["lab_manager"], ["admin"]]
    assert [(at - due).total_seconds() for at in scheduled] == [0, 15 * 60, 60 * 60]
    # Each fired at its time, never before; how much after is the worker's pick-up delay (the machine's load).
    assert all(dt.datetime.fromisoformat(f["fired_at"].replace("Z", "+00:00")) >= at for f, at in zip(fired, scheduled,
                                                                                                       strict=True))

    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_a.id})
        actions = s.execute(text("SELECT actor_id, action FROM audit_log WHERE org_id = :o AND entity_type = 'task'"
                                 " AND action = 'escalate' AND entity_id = :t"),
                            {"o": org_a.id, "t": fired[0]["task_id"]}).all()
        notified = s.execute(text("SELECT recipient_role FROM notifications WHERE run_id = :r ORDER BY created_at"),
                             {"r": run.id}).scalars().all()
        overdue = s.execute(text("SELECT escalation_level, status FROM tasks WHERE run_id = :r"), {"r": run.id}).one()
    assert [a.actor_id for a in actions] == ["flasktrack"] * 3
    assert notified == ["technician", "lab_manager", "admin"]
    assert overdue.escalation_level == 2 and overdue.status == "open"  # the run keeps waiting

    tech = caller(org_a, Role.technician)
    done = await handle.execute_update("complete_task", Completion(
        task_id=fired[0]["task_id"], actor=ActorRef.of(tech), values={"mass_g": "12.5"},
        checklist={"balance_calibrated": True}, request=tech.context), result_type=Outcome)
    assert done.ok and done.run_status == "completed" and done.values == {"mass_g": "12.50", "balance": None}
    assert await handle.result() == "completed"


async def test_time_scale_shortens_due_times_and_escalations(skipping_env, skipping_worker, platform, owner, org_a):
    key = f"scaled-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due="PT30M", levels=[("PT15M", "lab_manager")]))
    run, inp = _launch(platform, org_a, key, time_scale=0.01)
    assert run.time_scale == 0.01
    await skipping_env.client.start_workflow(WORKFLOW_NAME, inp, id=str(run.id), task_queue=skipping_worker)
    await await_for(lambda: _events(owner, run.id, "opened"))
    await skipping_env.sleep(dt.timedelta(seconds=30))
    fired = await await_for(lambda: (e := _events(owner, run.id, "escalated")) and len(e) == 2 and e)
    opened = dt.datetime.fromisoformat(_events(owner, run.id, "opened")[0]["due_at"].replace("Z", "+00:00"))
    assert round((dt.datetime.fromisoformat(fired[1]["fired_at"].replace("Z", "+00:00")) - opened).total_seconds()) == 9
