"""How the interpreter changes without stranding runs in flight (the rule: workflows/run.py's module doc), shown
on an example change: the run records one more event when it starts.

Unguarded, the change breaks the replay of every history recorded before it (tests/replay would fail).
Behind `workflow.patched`, the old histories replay as they ran, a new run takes the change, and its own
history replays too.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from domain.runs.messages import RunInput, StepEvent
from tests.run_workflow.conftest import Lab
from tests.run_workflow.scenarios import drive, shipped_input, start
from workflows.run import PATCHES, WORKFLOW_NAME, ProtocolRun

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "replay" / "histories").glob("*.json"))
EXAMPLE = "example-started-event"  # an example only: real ids are in workflows.run.PATCHES


@workflow.defn(name=WORKFLOW_NAME, sandboxed=False)
class Unguarded(ProtocolRun):
    @workflow.run
    async def run(self, inp: RunInput) -> str:
        await self._event("run", "run", "started", 0, {})
        return await super().run(inp)


@workflow.defn(name=WORKFLOW_NAME, sandboxed=False)
class Guarded(ProtocolRun):
    @workflow.run
    async def run(self, inp: RunInput) -> str:
        if workflow.patched(EXAMPLE):  # runs started before the change skip it, as they did
            await self._event("run", "run", "started", 0, {})
        return await super().run(inp)


def history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


async def replays(workflow_class: type, recorded: WorkflowHistory) -> bool:
    """Whether the code replays the history (a mismatch shows as nondeterminism or as a failed workflow task,
    e.g. a recorded result that does not decode as what the new code expects there)."""
    result = await Replayer(workflows=[workflow_class], data_converter=pydantic_data_converter,
                            workflow_runner=UnsandboxedWorkflowRunner()).replay_workflow(
        recorded, raise_on_replay_failure=False)
    return result.replay_failure is None


def test_the_example_id_is_not_a_real_patch():
    assert EXAMPLE not in PATCHES and len(set(PATCHES)) == len(PATCHES)


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_an_unguarded_change_breaks_the_runs_in_flight(path: Path):
    assert not await replays(Unguarded, history(path))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_patched_change_keeps_them(path: Path):
    assert await replays(Guarded, history(path))


async def test_a_new_run_takes_the_patched_change(lab: Lab):
    key = "fungal-culture-passage"
    inp = shipped_input(key)
    inp = inp.model_copy(update={"run": inp.run.model_copy(update={"run_id": str(uuid.uuid4())})})
    queue = f"patched-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=4) as pool:
        async with Worker(lab.env.client, task_queue=queue, workflows=[Guarded], activities=lab.records.all(),
                          activity_executor=pool, workflow_runner=UnsandboxedWorkflowRunner()):
            handle = await start(lab.env.client, inp, queue)
            await drive(lab.env, handle, key, inp.plan)
            assert await handle.result() == "completed"
            recorded = await handle.fetch_history()
    events = [e.event for e in lab.records.of_run(inp.run.run_id, StepEvent)]
    assert events[0] == "started"
    assert await replays(Guarded, recorded)
    assert not await replays(ProtocolRun, recorded)  # the code before the change cannot: roll forward only
