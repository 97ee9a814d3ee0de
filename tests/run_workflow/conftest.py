"""Fast workflow tests: the run workflow on Temporal's time-skipping server against stand-in records, no
PostgreSQL. A worker for the workflow as it ships, and one for its continue-as-new test variant."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.run_workflow.standins import ContinuingEveryStep, StandInRecords
from workflows.run import ProtocolRun


@dataclass
class Lab:
    """The time-skipping server, the task queues of its two workers, and what the stand-ins recorded."""

    env: WorkflowEnvironment
    queue: str  # ProtocolRun as it ships
    continuing_queue: str  # ContinuingEveryStep
    records: StandInRecords


@pytest.fixture(scope="session")
async def lab() -> AsyncIterator[Lab]:
    server = shutil.which("temporal-test-server") or str(Path(sys.executable).parent / "temporal-test-server")
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=server,
                                                        data_converter=pydantic_data_converter)
    records = StandInRecords()
    queue, continuing = f"fast-{uuid.uuid4().hex[:8]}", f"fast-can-{uuid.uuid4().hex[:8]}"
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            async with Worker(env.client, task_queue=queue, workflows=[ProtocolRun], activities=records.all(),
                              activity_executor=pool), \
                    Worker(env.client, task_queue=continuing, workflows=[ContinuingEveryStep],
                           activities=records.all(), activity_executor=pool):
                yield Lab(env, queue, continuing, records)
    finally:
        await env.shutdown()
