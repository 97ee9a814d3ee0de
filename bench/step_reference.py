"""The bare Temporal reference for bench/step_latency.py: a workflow whose Update runs one regular activity.

No platform code, only temporalio: `python bench/step_reference.py ADDRESS` serves it on `bench-reference`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

QUEUE = "bench-reference"


@activity.defn(name="reference_step")
async def reference_step(n: int) -> int:
    return n + 1


@workflow.defn(name="ReferenceRun")
class ReferenceRun:
    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.update
    async def step(self, n: int) -> int:
        result: int = await workflow.execute_activity(reference_step, n,
                                                      start_to_close_timeout=dt.timedelta(seconds=30))
        return result

    @workflow.signal
    def finish(self) -> None:
        self.done = True


async def serve(address: str) -> None:
    client = await Client.connect(address)
    async with Worker(client, task_queue=QUEUE, workflows=[ReferenceRun], activities=[reference_step]):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
