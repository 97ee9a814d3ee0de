"""The run's records by name: the workflow calls RunRecords methods (workflows/records.py); the database
implementation and the stand-ins must answer to the same activity names, and those names are the ones the
recorded histories carry (a renamed record would strand every run in flight)."""

from __future__ import annotations

import base64
import inspect
import json
from pathlib import Path

from temporalio import activity

from activities.runs import RunActivities
from tests.run_workflow.standins import StandInRecords
from workflows.records import RunRecords

HISTORIES = Path(__file__).resolve().parents[1] / "replay" / "histories"


def names(methods: list) -> set[str]:
    return {activity._Definition.must_from_callable(m).name for m in methods}


def interface() -> dict[str, str]:
    """Method name → activity name, for every record of the interface."""
    return {name: activity._Definition.must_from_callable(fn).name
            for name, fn in inspect.getmembers(RunRecords, inspect.isfunction)
            if activity._Definition.from_callable(fn) is not None}


def test_every_implementation_answers_to_every_record_by_its_name():
    records = interface()
    assert records == {n: n for n in ("open_step", "complete_task", "decide_approval", "escalate", "record_event",
                                      "control_run", "finish_run", "check_authorizations")}
    database = RunActivities.__new__(RunActivities)  # no database needed to read its activities
    for implementation in (database, StandInRecords()):
        assert names(implementation.all()) == set(records.values())
        for method, name in records.items():  # each overrides the record of the same name
            assert activity._Definition.must_from_callable(getattr(implementation, method)).name == name


def test_the_recorded_histories_call_records_by_these_names():
    called = set()
    for path in HISTORIES.glob("*.json"):
        for event in json.loads(path.read_text())["events"]:
            marker = event.get("markerRecordedEventAttributes")
            if marker and marker["markerName"] == "core_local_activity":
                data = json.loads(base64.b64decode(marker["details"]["data"]["payloads"][0]["data"]))
                called.add(data["activity_type"])
    assert called and called <= set(interface().values())
