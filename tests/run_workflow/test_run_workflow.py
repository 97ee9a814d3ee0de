"""The run workflow as people meet it, on the time-skipping server with stand-in records (no PostgreSQL):
completing steps, approving and rejecting, timers, escalations, hold and resume, cancelling, continuing as
new; and the look-ahead against what the interpreter opens over each shipped protocol."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError

from domain.protocols.compiler import compile_protocol
from domain.runs.messages import (
    CompleteTask,
    Completion,
    Control,
    ControlRun,
    DecideApproval,
    Decision,
    Escalate,
    FinishRun,
    OpenStep,
    Outcome,
    RunInput,
    RunRef,
    RunState,
    StepEvent,
)
from tests.run_workflow.conftest import Lab
from tests.run_workflow.scenarios import MANAGER, ORG, SCENARIOS, TECH, drive, shipped_plan, start
from workflows.run import ProtocolRun

Handle = WorkflowHandle[ProtocolRun, str]


def task(key: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "kind": "task", "title": f"Step {key}", "roles": ["technician"],
            "form": {"key": f"wf_{key}", "fields": [{"key": "n", "label": "N", "type": "integer"}]}, **extra}


def approval(key: str, on_reject: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "kind": "approval", "title": f"Review {key}", "roles": ["lab_manager"],
            "meaning": "reviewed", "on_reject": on_reject}


async def launch(lab: Lab, steps: list[dict[str, Any]], *, queue: str | None = None) -> tuple[Handle, RunInput]:
    key = f"wf-{uuid.uuid4().hex[:6]}"
    compiled = compile_protocol({"key": key, "title": "Fast workflow test", "steps": steps}, 1)
    assert compiled.plan is not None, compiled.problems
    run_id = str(uuid.uuid4())
    inp = RunInput(run=RunRef(org_id=ORG, run_id=run_id, protocol_key=key, protocol_version=1), plan=compiled.plan)
    return await start(lab.env.client, inp, queue or lab.queue), inp


async def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll `check()` (sync or async) until it answers something truthy; that answer."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {check}"
        await asyncio.sleep(0.05)


async def open_step(handle: Handle, step_key: str) -> str:
    """The task id of `step_key` once the run waits on it."""
    async def find() -> str | None:
        state = await handle.query(ProtocolRun.state)
        return next((t.task_id for t in state.open_tasks if t.step_key == step_key), None)
    return str(await eventually(find))


async def complete(handle: Handle, step_key: str, n: int = 1) -> Outcome:
    task_id = await open_step(handle, step_key)
    return await handle.execute_update(ProtocolRun.complete_task, Completion(task_id=task_id, actor=TECH,
                                                                             values={"n": n}))


async def decide(handle: Handle, step_key: str, decision: str) -> Outcome:
    task_id = await open_step(handle, step_key)
    return await handle.execute_update(ProtocolRun.decide, Decision(
        task_id=task_id, actor=MANAGER, decision="approve" if decision == "approve" else "reject",
        signature_id=str(uuid.uuid4()), content_hash="0" * 64, reason="fast test"))


async def control(handle: Handle, action: Literal["hold", "resume", "cancel"], reason: str) -> RunState:
    update = {"hold": ProtocolRun.hold, "resume": ProtocolRun.resume, "cancel": ProtocolRun.cancel}[action]
    return await handle.execute_update(update, Control(action=action, actor=MANAGER, reason=reason))


# ---------------------------------------------------------------- completing steps


async def test_a_completion_answers_with_the_step_it_opens_and_the_last_one_completes_the_run(lab: Lab):
    handle, inp = await launch(lab, [task("weigh"), task("label")])
    first = await complete(handle, "weigh", 12)
    assert first.ok and first.result == "completed" and first.values == {"n": 12}
    assert [t.step_key for t in first.open_tasks] == ["label"] and first.run_status == "running"
    # The completion's own record opened the next step: no second record for it.
    (recorded,) = lab.records.of_run(inp.run.run_id, CompleteTask)
    assert [o.step.key for o in recorded.open_next] == ["label"]
    assert [m.step.key for m in lab.records.of_run(inp.run.run_id, OpenStep)] == ["weigh"]

    last = await complete(handle, "label", 3)
    assert last.open_tasks == [] and last.run_status == "completed"
    assert await handle.result() == "completed"
    (finished,) = lab.records.of_run(inp.run.run_id, FinishRun)
    assert finished.status == "completed"


async def test_a_step_that_is_not_open_is_refused_and_nothing_is_recorded(lab: Lab):
    handle, inp = await launch(lab, [task("weigh")])
    await open_step(handle, "weigh")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(ProtocolRun.complete_task, Completion(task_id=str(uuid.uuid4()), actor=TECH))
    assert isinstance(refused.value.cause, ApplicationError) and refused.value.cause.type == "WrongStep"
    with pytest.raises(WorkflowUpdateFailedError) as wrong_kind:  # a task is completed, not decided
        await handle.execute_update(ProtocolRun.decide, Decision(
            task_id=await open_step(handle, "weigh"), actor=MANAGER, decision="approve", signature_id="s",
            content_hash="0" * 64))
    assert "use POST /api/v1/tasks/{task_id}/complete" in str(wrong_kind.value.cause)
    assert lab.records.of_run(inp.run.run_id, CompleteTask) == []
    await complete(handle, "weigh")
    assert await handle.result() == "completed"


# ---------------------------------------------------------------- approvals


async def test_a_rejection_reopens_the_steps_it_repeats_and_an_approval_completes_the_run(lab: Lab):
    handle, inp = await launch(lab, [task("prepare"), approval("review", {"action": "repeat", "from_step": "prepare"})])
    await complete(handle, "prepare")
    rejected = await decide(handle, "review", "reject")
    assert rejected.result == "rejected"
    assert [(t.step_key, t.iteration) for t in rejected.open_tasks] == [("prepare", 1)]
    await complete(handle, "prepare", 2)
    approved = await decide(handle, "review", "approve")
    assert approved.result == "approved" and approved.run_status == "completed"
    assert await handle.result() == "completed"
    decisions = lab.records.of_run(inp.run.run_id, DecideApproval)
    assert [d.decision.decision for d in decisions] == ["reject", "approve"]


async def test_a_rejection_that_ends_the_run_ends_it_rejected(lab: Lab):
    handle, inp = await launch(lab, [task("prepare"), approval("review", {"action": "end_run"}), task("never")])
    await complete(handle, "prepare")
    answer = await decide(handle, "review", "reject")
    assert answer.run_status == "rejected" and answer.open_tasks == []
    with pytest.raises(WorkflowFailureError) as failed:  # Temporal shows it failed, with why
        await handle.result()
    assert isinstance(failed.value.cause, ApplicationError) and failed.value.cause.type == "RunRejected"
    assert (await handle.query(ProtocolRun.state)).status == "rejected"
    (finished,) = lab.records.of_run(inp.run.run_id, FinishRun)
    assert finished.status == "rejected"
    assert "never" not in {m.step.key for m in lab.records.of_run(inp.run.run_id, OpenStep)}


# ---------------------------------------------------------------- time: timers and escalations


async def test_a_timer_holds_the_next_step_back_until_it_fires(lab: Lab):
    timer = {"key": "incubate", "kind": "timer", "title": "Incubate two days", "duration": "P2D"}
    handle, inp = await launch(lab, [task("inoculate"), timer, task("check")])
    answer = await complete(handle, "inoculate")
    assert answer.open_tasks == []  # nothing for people while the timer runs
    state = await handle.query(ProtocolRun.state)
    (waiting,) = state.waiting_for
    assert waiting.kind == "timer" and waiting.title == "Incubate two days" and waiting.until is not None
    await lab.env.sleep(dt.timedelta(days=2))
    await open_step(handle, "check")
    events = [e.event for e in lab.records.of_run(inp.run.run_id, StepEvent)]
    assert events == ["timer_started", "timer_fired"]
    await complete(handle, "check")
    assert await handle.result() == "completed"


async def test_an_overdue_step_escalates_each_level_once_in_order(lab: Lab):
    step = task("weigh", due="PT30M", escalation={"levels": [{"after": "PT1H", "notify_role": "lab_manager"}]})
    handle, inp = await launch(lab, [step])
    await open_step(handle, "weigh")

    def escalations() -> list[Escalate]:
        return lab.records.of_run(inp.run.run_id, Escalate)

    await lab.env.sleep(dt.timedelta(minutes=31))
    await eventually(escalations)
    assert [(e.level, e.notify_roles) for e in escalations()] == [(0, ["technician"])]  # due: those who do it
    await lab.env.sleep(dt.timedelta(hours=1))
    await eventually(lambda: len(escalations()) == 2)
    assert [(e.level, e.notify_roles) for e in escalations()] == [(0, ["technician"]), (1, ["lab_manager"])]
    await lab.env.sleep(dt.timedelta(days=1))  # after the last level, nothing more
    assert len(escalations()) == 2
    await complete(handle, "weigh")
    assert await handle.result() == "completed"


# ---------------------------------------------------------------- hold, resume, cancel


async def test_a_held_run_escalates_nothing_and_opens_nothing_until_it_resumes(lab: Lab):
    handle, inp = await launch(lab, [task("weigh", due="PT30M"), task("label")])
    await open_step(handle, "weigh")
    held = await control(handle, "hold", "balance out of calibration")
    assert held.status == "on_hold" and held.actor_id == MANAGER.id
    assert held.waiting_for[0].kind == "hold" and held.waiting_for[0].reason == "balance out of calibration"
    await lab.env.sleep(dt.timedelta(hours=2))
    assert lab.records.of_run(inp.run.run_id, Escalate) == []
    done = await complete(handle, "weigh")  # work done before the hold may still be recorded
    assert done.open_tasks == [] and done.run_status == "on_hold"  # ...but the next step waits for the resume
    resumed = await control(handle, "resume", "balance calibrated")
    assert resumed.status == "running"
    await open_step(handle, "label")
    assert lab.records.of_run(inp.run.run_id, Escalate) == []  # the overdue step was done meanwhile
    await complete(handle, "label")
    assert await handle.result() == "completed"
    actions = [c.control.action for c in lab.records.of_run(inp.run.run_id, ControlRun)]
    assert actions == ["hold", "resume"]


async def test_a_held_overdue_step_escalates_once_the_run_resumes(lab: Lab):
    handle, inp = await launch(lab, [task("weigh", due="PT30M")])
    await open_step(handle, "weigh")
    await control(handle, "hold", "waiting for reagents")
    await lab.env.sleep(dt.timedelta(hours=1))
    assert lab.records.of_run(inp.run.run_id, Escalate) == []
    await control(handle, "resume", "reagents arrived")
    await eventually(lambda: lab.records.of_run(inp.run.run_id, Escalate))
    await complete(handle, "weigh")
    assert await handle.result() == "completed"


async def test_a_cancelled_run_takes_no_more_work_and_ends_cancelled_in_temporal(lab: Lab):
    handle, _ = await launch(lab, [task("weigh"), task("label")])
    task_id = await open_step(handle, "weigh")
    cancelled = await control(handle, "cancel", "sample lost")
    assert cancelled.status == "cancelled" and cancelled.open_tasks == []
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(ProtocolRun.complete_task, Completion(task_id=task_id, actor=TECH,
                                                                          values={"n": 1}))
    await handle.cancel()  # what the API asks after a platform cancel
    with pytest.raises(WorkflowFailureError) as ended:
        await handle.result()
    assert isinstance(ended.value.cause, CancelledError)


# ---------------------------------------------------------------- continue-as-new


async def test_a_run_continued_as_new_keeps_its_place_and_its_values(lab: Lab):
    steps = [task("first"), task("second"), task("skipped", when="first.n == 99"), task("third", when="second.n == 2")]
    handle, inp = await launch(lab, steps, queue=lab.continuing_queue)
    first_run = handle.result_run_id
    for n, step in ((1, "first"), (2, "second"), (3, "third")):
        # Each step is opened again by the run that continued (it knows nothing of what its predecessor opened
        # ahead): wait for that, so no query reaches a run as it continues as new (the time-skipping server
        # never answers one, and stops skipping time while it waits).
        await eventually(lambda step=step: step in {m.step.key for m in lab.records.of_run(inp.run.run_id, OpenStep)})
        latest = lab.env.client.get_workflow_handle_for(ProtocolRun.run, inp.run.run_id)
        assert (await complete(latest, step, n)).ok
    final = lab.env.client.get_workflow_handle_for(ProtocolRun.run, inp.run.run_id)
    assert await final.result() == "completed"
    assert (await final.describe()).run_id != first_run  # it did continue as new
    events = [(e.step_key, e.event) for e in lab.records.of_run(inp.run.run_id, StepEvent)]
    assert events == [("skipped", "skipped")]  # `skipped` read `first.n` from before the continue-as-new
    completed = [c.step.key for c in lab.records.of_run(inp.run.run_id, CompleteTask)]
    assert completed == ["first", "second", "third"]


# ---------------------------------------------------------------- the look-ahead against the interpreter


@pytest.mark.parametrize("key", sorted(SCENARIOS))
async def test_what_a_completion_opens_ahead_is_what_the_interpreter_opens_next(lab: Lab, key: str):
    plan = shipped_plan(key)
    inp = RunInput(run=RunRef(org_id=ORG, run_id=str(uuid.uuid4()), protocol_key=key, protocol_version=1),
                   plan=plan)
    handle = await start(lab.env.client, inp, lab.queue)
    checked: list[str] = []

    def on_answer(before: RunState, answer: Outcome) -> None:
        recorded = [m for m in lab.records.of_run(inp.run.run_id, CompleteTask | DecideApproval)
                    if (m.completion.task_id if isinstance(m, CompleteTask) else m.decision.task_id) == answer.task_id
                    and m.iteration == answer.iteration]
        ahead = {o.task_id for o in recorded[-1].open_next}
        opened = {t.task_id for t in answer.open_tasks} - {t.task_id for t in before.open_tasks}
        if ahead:  # told ahead: exactly what the interpreter then waits on
            assert ahead == opened, (answer.step_key, ahead, opened)
            checked.append(answer.step_key)

    await drive(lab.env, handle, key, plan, on_answer)
    assert await handle.result() == "completed"
    assert checked  # the look-ahead did open steps in this protocol
    # An opening told ahead is never recorded a second time by the interpreter.
    ahead_ids = {o.task_id for m in lab.records.of_run(inp.run.run_id, CompleteTask | DecideApproval)
                 for o in m.open_next}
    opened_ids = [m.task_id for m in lab.records.of_run(inp.run.run_id, OpenStep)]
    assert not ahead_ids & set(opened_ids) and len(opened_ids) == len(set(opened_ids))
