"""A run continued as new at root step boundaries keeps its place, its values and its records (the workflow
continues as new at every boundary here: its test variant, tests/run_workflow/standins.py)."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text
from temporalio.worker import Worker

from activities.runs import RunActivities
from domain.roles import Role
from domain.runs import service as runs
from domain.runs.messages import ActorRef, Completion, Outcome, RunInput, RunState
from domain.runs.models import RunLaunch
from tests.run_workflow.standins import ContinuingEveryStep
from tests.runs.support import approve_protocol, caller
from workflows.run import WORKFLOW_NAME


def _protocol(key: str) -> dict:
    form = key.replace("-", "_")

    def task(step: str, when: str | None = None) -> dict:
        t = {"key": step, "kind": "task", "title": step, "roles": ["technician"],
             "form": {"key": f"{form}_{step}", "fields": [{"key": "n", "label": "N", "type": "integer"}]}}
        if when:
            t["when"] = when
        return t

    return {"key": key, "title": "Three steps", "steps": [
        task("first"), task("second"), task("skipped", when="first.n == 99"), task("third", when="second.n == 2")]}


async def _work(client, inp: RunInput, queue: str, org_a) -> None:  # type: ignore[no-untyped-def]
    run_id = inp.run.run_id
    handle = await client.start_workflow(WORKFLOW_NAME, inp, id=run_id, task_queue=queue)
    first_run = handle.result_run_id
    for n, step in ((1, "first"), (2, "second"), (3, "third")):
        h = client.get_workflow_handle(run_id)

        async def open_task(step: str = step, h=h) -> str | None:
            state = await h.query("state", result_type=RunState)
            return next((t.task_id for t in state.open_tasks if t.step_key == step), None)

        task_id = None
        for _ in range(200):
            task_id = await open_task()
            if task_id:
                break
            await asyncio.sleep(0.05)
        assert task_id, step
        tech = caller(org_a, Role.technician)  # a new request id for each request
        done = await h.execute_update("complete_task", Completion(
            task_id=task_id, actor=ActorRef.of(tech), values={"n": n}, request=tech.context),
            result_type=Outcome)
        assert done.ok, done
    final = client.get_workflow_handle(run_id)
    assert await final.result() == "completed"
    desc = await final.describe()
    assert desc.run_id != first_run  # it did continue as new


async def test_continue_as_new_between_root_steps(dev_env, platform, owner, org_a):
    key = f"can-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, _protocol(key))
    with platform.sessions.begin(org_a.id) as s:
        run, plan, _ = runs.launch(s, caller(org_a, Role.lab_manager), RunLaunch(protocol_key=key))
    inp = RunInput(run=runs.ref(run), plan=plan)
    queue = f"can-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=4) as pool:
        async with Worker(dev_env.client, task_queue=queue, workflows=[ContinuingEveryStep],
                          activities=RunActivities(platform.sessions).all(), activity_executor=pool):
            await _work(dev_env.client, inp, queue, org_a)
    with owner.begin(None) as s:
        rows = s.execute(text("SELECT step_key, iteration, status FROM tasks WHERE run_id = :r ORDER BY opened_at"),
                         {"r": run.id}).all()
        skipped = s.execute(text("SELECT count(*) FROM step_events WHERE run_id = :r AND event = 'skipped'"),
                            {"r": run.id}).scalar_one()
    assert [(r.step_key, r.iteration, r.status) for r in rows] == [
        ("first", 0, "completed"), ("second", 0, "completed"), ("third", 0, "completed")]
    assert skipped == 1  # `skipped` read `first.n` from before the continue-as-new
