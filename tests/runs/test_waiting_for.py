"""A run says what it waits for and until when: tasks until due, timers until they fire, a hold until resumed;
an ended run waits for nothing."""

from __future__ import annotations

import datetime as dt
import uuid

from domain.roles import Role
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol, one_task


def _launch(client, org, key: str) -> dict:
    r = client.post("/api/v1/runs", json={"protocol_key": key}, headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    return r.json()


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_run_on_a_timer_says_until_when_and_a_cancel_leaves_nothing_open(client, temporal_api, owner, org_a):
    key = f"wait-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, {"key": key, "title": "Incubate, then weigh", "steps": [
        {"key": "incubate", "kind": "timer", "title": "Incubate", "duration": "PT2H"},
        *one_task(key)["steps"]]})
    mgr = org_a.headers(Role.lab_manager)
    run = _launch(client, org_a, key)
    detail = wait_for(lambda: (d := client.get(f"/api/v1/runs/{run['id']}", headers=mgr).json())["waiting_for"] and d,
                      timeout=30)
    [timer] = detail["waiting_for"]
    assert (timer["kind"], timer["step_key"], timer["title"]) == ("timer", "incubate", "Incubate")
    assert abs(_at(timer["until"]) - _at(run["launched_at"]) - dt.timedelta(hours=2)) < dt.timedelta(seconds=30)

    r = client.post(f"/api/v1/runs/{run['id']}/hold", json={"reason": "incubator door open"}, headers=mgr)
    assert r.status_code == 200, r.text
    kinds = [(w["kind"], w.get("reason"), w["title"], w["until"]) for w in r.json()["waiting_for"]]
    assert kinds == [("hold", "incubator door open", "", None),
                     ("timer", None, "Incubate", timer["until"])]  # timers keep running
    held = client.get(f"/api/v1/runs/{run['id']}", headers=mgr).json()["waiting_for"]
    assert [(w["kind"], w["until"]) for w in held] == [("hold", None), ("timer", timer["until"])]

    r = client.post(f"/api/v1/runs/{run['id']}/cancel", json={"reason": "contaminated"}, headers=mgr)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert (r.json()["open_tasks"], r.json()["waiting_for"]) == ([], [])
    ended = client.get(f"/api/v1/runs/{run['id']}", headers=mgr).json()
    assert (ended["open_tasks"], ended["waiting_for"]) == ([], [])


def test_a_cancel_answers_no_open_task(client, temporal_api, owner, org_a):
    key = f"wait-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due="PT30M"))
    mgr = org_a.headers(Role.lab_manager)
    run = _launch(client, org_a, key)
    detail = wait_for(lambda: (d := client.get(f"/api/v1/runs/{run['id']}", headers=mgr).json())["open_tasks"] and d,
                      timeout=30)
    [task] = detail["waiting_for"]
    assert (task["kind"], task["step_key"], task["task_id"]) == ("task", "weigh", detail["open_tasks"][0]["task_id"])
    assert task["until"] == detail["open_tasks"][0]["due_at"]
    r = client.post(f"/api/v1/runs/{run['id']}/cancel", json={"reason": "sample lost"}, headers=mgr)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert (r.json()["open_tasks"], r.json()["waiting_for"]) == ([], [])
