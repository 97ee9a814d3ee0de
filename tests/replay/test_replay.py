"""The recorded histories of the shipped protocols replay against the current workflow code.

A failure means the interpreter now decides differently for runs already in flight: guard the change with
`workflow.patched(...)`, or, if no such run can exist, re-record with `.venv/bin/python tests/replay/record.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows import ProtocolRun

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_shipped_protocol_has_a_history():
    from domain.protocols.loader import example_protocols

    assert {p.stem for p in HISTORIES} == set(example_protocols())


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replays(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[ProtocolRun], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
