"""Runs started by an older platform still start and replay: fields their input carried that RunInput no
longer has are ignored (`continue_every`, a test hook until issue 8)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from domain.runs.messages import RunInput
from workflows import ProtocolRun

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
RETIRED = {"continue_every": None}  # as every run the API started before issue 8 carries it


def with_retired_fields(history: dict) -> dict:
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    payload = started["input"]["payloads"][0]
    payload["data"] = base64.b64encode(
        json.dumps({**json.loads(base64.b64decode(payload["data"])), **RETIRED}).encode()).decode()
    return history


def test_an_input_with_a_retired_field_is_read():
    inp = json.loads(base64.b64decode(json.loads(HISTORIES[0].read_text())["events"][0][
        "workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]["data"]))
    payload = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({**inp, "continue_every": 1}).encode())
    (read,) = pydantic_data_converter.payload_converter.from_payloads([payload], [RunInput])
    assert isinstance(read, RunInput) and read.run.protocol_key == inp["run"]["protocol_key"]
    assert "continue_every" not in read.model_dump()


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_run_started_with_a_retired_field_replays(path: Path):
    history = WorkflowHistory.from_json(path.stem, with_retired_fields(json.loads(path.read_text())))
    await Replayer(workflows=[ProtocolRun], data_converter=pydantic_data_converter).replay_workflow(history)
