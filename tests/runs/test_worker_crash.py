"""Kill the worker (SIGKILL) in the middle of runs, restart it: every run completes, nothing is recorded twice."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from api import temporal as api_temporal
from domain.roles import Role
from tests.runs.support import approve_protocol, complete, open_tasks

RUNS = 6
STEPS = ["receive", "label", "store"]


def _protocol(key: str) -> dict:
    form = key.replace("-", "_")
    steps = []
    for i, step in enumerate(STEPS):
        steps.append({"key": step, "kind": "task", "title": step.title(), "roles": ["technician"],
                      "form": {"key": f"{form}_{step}", "fields": [{"key": "n", "label": "N", "type": "integer"}]},
                      "checklist": [{"key": "done", "text": "Done as written"}]})
        if i == 0:
            steps.append({"key": "settle", "kind": "timer", "title": "Let it settle", "duration": "PT1H"})
    return {"key": key, "title": "Receive, label, store", "steps": steps}


def _work_through(client, org, run_id: str) -> int:
    """Complete the run's tasks one by one, retrying each request (same X-Request-ID) until it is answered."""
    done = 0
    deadline = time.monotonic() + 120
    while done < len(STEPS):
        assert time.monotonic() < deadline, f"run {run_id} stuck after {done} steps"
        tasks = open_tasks(client, org, run_id)
        if not tasks:
            time.sleep(0.1)
            continue
        task = tasks[0]
        rid = str(uuid.uuid5(uuid.UUID(task["id"]), "complete"))
        while True:
            r = complete(client, org, task["id"], {"n": done}, ["done"], request_id=rid)
            if r.status_code == 200:
                break
            assert r.status_code == 503, r.text  # no worker just now: retry the same request
            time.sleep(0.3)
        done += 1
    return done


def test_worker_killed_mid_runs(client, temporal_api, worker_process, owner, org_a, monkeypatch):
    monkeypatch.setattr(api_temporal, "UPDATE_TIMEOUT", dt.timedelta(seconds=3))
    key = f"crash-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, _protocol(key))
    run_ids = []
    for _ in range(RUNS):
        r = client.post("/api/v1/runs", json={"protocol_key": key, "time_scale": 0.0001},
                        headers=org_a.headers(Role.lab_manager))
        assert r.status_code == 201, r.text
        run_ids.append(r.json()["id"])

    stop = threading.Event()

    def completed() -> int:
        with owner.begin(None) as s:
            return s.execute(text("SELECT count(*) FROM tasks WHERE run_id = ANY(CAST(:r AS uuid[]))"
                                  " AND status = 'completed'"), {"r": run_ids}).scalar_one()

    kills = []

    def chaos() -> None:
        # Twice, each time once the (restarted) worker is busy completing tasks.
        for at_least in (3, 3 * RUNS // 2 + 2):
            while completed() < at_least:
                if stop.wait(0.02):
                    return
            worker_process.kill()
            kills.append(completed())
            time.sleep(0.5)
            worker_process.start()

    killer = threading.Thread(target=chaos)
    killer.start()
    try:
        with ThreadPoolExecutor(max_workers=RUNS) as pool:
            assert list(pool.map(lambda rid: _work_through(client, org_a, rid), run_ids)) == [len(STEPS)] * RUNS
    finally:
        stop.set()
        killer.join()

    def statuses() -> list[str]:
        return [client.get(f"/api/v1/runs/{r}", headers=org_a.headers(Role.lab_manager)).json()["status"]
                for r in run_ids]

    deadline = time.monotonic() + 60
    while statuses() != ["completed"] * RUNS:
        assert time.monotonic() < deadline, statuses()
        time.sleep(0.2)

    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_a.id})
        task_ids = [str(t) for t in s.execute(text("SELECT id FROM tasks WHERE run_id = ANY(CAST(:r AS uuid[]))"),
                                              {"r": run_ids}).scalars()]
        duplicates = s.execute(text(
            "SELECT entity_id, action, count(*) FROM audit_log WHERE org_id = :o AND entity_id = ANY(:ids)"
            " GROUP BY 1, 2 HAVING count(*) > 1"), {"o": org_a.id, "ids": task_ids + run_ids}).all()
        forms = s.execute(text("SELECT count(*) FROM form_submissions WHERE run_id = ANY(CAST(:r AS uuid[]))"),
                          {"r": run_ids}).scalar_one()
        events = s.execute(text("SELECT payload->>'event_id' AS id, count(*) FROM outbox WHERE topic = 'step_event'"
                                " AND payload->>'run_id' = ANY(:r) GROUP BY 1 HAVING count(*) > 1"),
                           {"r": run_ids}).all()
        completions = s.execute(text("SELECT count(*) FROM audit_log WHERE org_id = :o AND action = 'complete'"
                                     " AND entity_id = ANY(:ids)"), {"o": org_a.id, "ids": task_ids}).scalar_one()
    assert len(kills) == 2 and all(k < RUNS * len(STEPS) for k in kills), kills  # both kills hit runs mid-way
    assert len(task_ids) == RUNS * len(STEPS)
    assert duplicates == [] and events == []
    assert forms == completions == RUNS * len(STEPS)
