"""Record the event histories the replay tests check: each shipped protocol run through the workflow.

    .venv/bin/python tests/replay/record.py            # re-record every history under tests/replay/histories/

Runs on Temporal's time-skipping server with the stand-in records of tests/run_workflow/standins.py (the
workflow's records are not what replay checks: only its decisions are), each protocol worked as its scenario
in tests/run_workflow/scenarios.py says. Re-record after an intended workflow change that `workflow.patched`
does not cover, and keep the old files when runs of the old code may still be in flight (docs: workflows/run.py).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from domain.protocols.loader import example_protocols  # noqa: E402
from tests.run_workflow.scenarios import drive, shipped_input, start  # noqa: E402
from tests.run_workflow.standins import StandInRecords  # noqa: E402
from workflows.run import ProtocolRun  # noqa: E402

HISTORIES = Path(__file__).resolve().parent / "histories"


async def record(keys: list[str] | None = None) -> list[Path]:
    HISTORIES.mkdir(exist_ok=True)
    server = shutil.which("temporal-test-server") or str(Path(sys.executable).parent / "temporal-test-server")
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=server,
                                                        data_converter=pydantic_data_converter)
    written = []
    try:
        async with Worker(env.client, task_queue="replay", workflows=[ProtocolRun],
                          activities=StandInRecords().all(), activity_executor=ThreadPoolExecutor(4)):
            for key in example_protocols():
                if keys and key not in keys:
                    continue
                inp = shipped_input(key)
                handle = await start(env.client, inp, "replay")
                await drive(env, handle, key, inp.plan)
                assert await handle.result() == "completed"
                path = HISTORIES / f"{key}.json"
                path.write_text((await handle.fetch_history()).to_json())
                written.append(path)
    finally:
        await env.shutdown()
    return written


if __name__ == "__main__":
    for p in asyncio.run(record(sys.argv[1:] or None)):
        print(f"recorded {p.relative_to(ROOT)}")
