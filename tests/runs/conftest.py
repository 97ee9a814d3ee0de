"""Fixtures for run tests: Temporal test servers from the wheels in .venv, workers, the API pointed at them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.runs import RunActivities
from api.app import create_app
from api.deps import Platform
from workflows import ProtocolRun
from workflows.run import SEARCH_ATTRIBUTES

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server: a 4-hour wait passes at once."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"), data_converter=pydantic_data_converter)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server (real clock), as `flasktrack up` runs it."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"), data_converter=pydantic_data_converter,
        dev_server_log_level="error", search_attributes=SEARCH_ATTRIBUTES)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def skipping_worker(skipping_env: WorkflowEnvironment, platform: Platform) -> AsyncIterator[str]:
    """An in-process worker on the time-skipping server; yields its task queue."""
    queue = f"skip-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=8) as pool:
        async with Worker(skipping_env.client, task_queue=queue, workflows=[ProtocolRun],
                          activities=RunActivities(platform.sessions).all(), activity_executor=pool):
            yield queue


class WorkerProcess:
    """`python -m flasktrack.cli worker` in a subprocess, as `flasktrack up` runs it; can be killed and restarted."""

    def __init__(self, env: dict[str, str], log: Path, queue: str) -> None:
        self.env, self.log, self.queue = env, log, queue
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "flasktrack.cli", "worker"], env=self.env, cwd=ROOT,
                                         stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as when a machine dies."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def worker_process(dev_env: WorkflowEnvironment, database_url: str, data_dir: Path) -> Iterator[WorkerProcess]:
    """The real worker against the test database and the dev server, serving a task queue of its own."""
    queue = f"e2e-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "FLASKTRACK_DATABASE_URL": database_url, "FLASKTRACK_DATA_DIR": str(data_dir),
           "FLASKTRACK_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
           "FLASKTRACK_TASK_QUEUE": queue, "FLASKTRACK_LOG_LEVEL": "WARNING"}
    w = WorkerProcess(env, data_dir / "worker.log", queue)
    w.start()
    yield w
    w.stop()


@pytest.fixture(scope="session")
def temporal_api(platform: Platform, dev_env: WorkflowEnvironment, worker_process: WorkerProcess) -> Platform:
    """The platform of this directory's API `client`: its Temporal client is the dev server's, and runs start on
    the worker's task queue."""
    settings = platform.settings.model_copy(update={"task_queue": worker_process.queue})
    return replace(platform, settings=settings, temporal=dev_env.client)


@pytest.fixture(scope="session")
def client(temporal_api: Platform) -> Iterator[TestClient]:
    """In run tests the API client's app talks to the dev server and the worker (its platform: `temporal_api`)."""
    with TestClient(create_app(temporal_api)) as c:
        yield c


def wait_for(check, timeout: float = 15.0, every: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {check}")
        time.sleep(every)


async def await_for(check, timeout: float = 15.0, every: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {check}")
        await asyncio.sleep(every)
