"""Filters and idempotency keys over HTTP, on the Temporal dev server with the real worker."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from domain.roles import Role
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol, complete, one_task, open_tasks
from tests.support import make_org

FAST = 0.000001


def _protocol(owner, org, roles: list[str]) -> str:  # type: ignore[no-untyped-def]
    key = f"ids-{uuid.uuid4().hex[:6]}"
    document = one_task(key, due=None)
    document["steps"][0]["roles"] = roles
    approve_protocol(owner, org.id, document)
    return key


def _launch(client, org, key: str, subject: str) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/runs", json={"protocol_key": key, "time_scale": FAST,
                                          "subjects": [{"type": "sample", "id": subject}]},
                    headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_tasks_filter_by_subject(client, temporal_api, owner):  # type: ignore[no-untyped-def]
    org = make_org(owner, client)
    key = _protocol(owner, org, ["technician"])
    on_a, on_b = _launch(client, org, key, "S-A-1"), _launch(client, org, key, "S-B-2")
    for run_id in (on_a, on_b):
        wait_for(lambda run_id=run_id: open_tasks(client, org, run_id))
    h = org.headers(Role.technician)
    r = client.get("/api/v1/tasks", params={"subject": "S-A-1"}, headers=h)
    assert r.status_code == 200 and {t["run_id"] for t in r.json()} == {on_a}, r.text
    assert client.get("/api/v1/tasks", params={"subject": "S-C-3"}, headers=h).json() == []
    # A value no subject can have says so instead of matching nothing.
    r = client.get("/api/v1/tasks", params={"subject": "S A"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "subject", r.text


def test_a_request_id_replayed_by_someone_else_is_refused(client, temporal_api, owner):  # type: ignore[no-untyped-def]
    org = make_org(owner, client)
    key = _protocol(owner, org, ["technician", "scientist"])
    run_id = _launch(client, org, key, "S-R-1")
    task = wait_for(lambda: open_tasks(client, org, run_id))[0]
    rid = str(uuid.uuid4())
    values, checklist = {"mass_g": "3.14"}, ["balance_calibrated"]
    first = complete(client, org, task["id"], values, checklist, role=Role.technician, request_id=rid)
    assert first.status_code == 200, first.text

    other = complete(client, org, task["id"], values, checklist, role=Role.scientist, request_id=rid)
    assert other.status_code == 409, other.text
    assert "already used by someone else" in other.json()["detail"]
    assert first.json()["submission_id"] not in other.text
    # The person who sent it still gets their first answer on a retry.
    again = complete(client, org, task["id"], values, checklist, role=Role.technician, request_id=rid)
    assert again.status_code == 200 and again.json()["submission_id"] == first.json()["submission_id"]
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org.id})
        refusals = s.execute(text("SELECT actor_id FROM audit_log WHERE org_id = :o AND entity_id = :t"
                                  " AND action = 'refuse'"), {"o": org.id, "t": task["id"]}).scalars().all()
    assert refusals == [str(org.users[Role.scientist][0])]


def test_one_request_id_on_different_controls_of_a_run_answers_each_its_own(client, temporal_api, owner):  # type: ignore[no-untyped-def]
    """A client that reuses its X-Request-ID for another kind of request on the same run (a hold, then a resume,
    then a completion) gets that request done and its own answer: never the first request's answer, which made a
    resume look done while the run stayed on hold, and a completion answer 500."""
    org = make_org(owner, client)
    key = _protocol(owner, org, ["technician"])
    run_id = _launch(client, org, key, "S-C-1")
    task = wait_for(lambda: open_tasks(client, org, run_id))[0]
    rid = str(uuid.uuid4())
    manager = {**org.headers(Role.lab_manager), "X-Request-ID": rid}

    held = client.post(f"/api/v1/runs/{run_id}/hold", json={"reason": "incubator alarm"}, headers=manager)
    assert held.status_code == 200 and held.json()["status"] == "on_hold", held.text
    resumed = client.post(f"/api/v1/runs/{run_id}/resume", json={"reason": "alarm cleared"}, headers=manager)
    assert resumed.status_code == 200 and resumed.json()["status"] == "running", resumed.text
    assert client.get(f"/api/v1/runs/{run_id}", headers=manager).json()["status"] == "running"

    done = complete(client, org, task["id"], {"mass_g": "3.14"}, ["balance_calibrated"], request_id=rid)
    assert done.status_code == 200 and done.json()["result"] == "completed", done.text


def test_a_retried_launch_answers_a_documented_status(client, temporal_api, owner):  # type: ignore[no-untyped-def]
    """A launch retried with its X-Request-ID answers 200 with the same run: /openapi.json says so, next to 201."""
    org = make_org(owner, client)
    key = _protocol(owner, org, ["technician"])
    headers = {**org.headers(Role.lab_manager), "X-Request-ID": str(uuid.uuid4())}
    body = {"protocol_key": key, "time_scale": FAST, "subjects": [{"type": "sample", "id": "S-L-1"}]}
    first, again = (client.post("/api/v1/runs", json=body, headers=headers) for _ in range(2))
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json()["id"] == first.json()["id"]
    documented = client.get("/openapi.json").json()["paths"]["/api/v1/runs"]["post"]["responses"]
    for r in (first, again):
        assert documented[str(r.status_code)]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/RunRead"}


def _refusals(owner, org, entity_id: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org.id})
        return [tuple(r) for r in s.execute(text(
            "SELECT actor_id, reason FROM audit_log WHERE org_id = :o AND entity_id = :e AND action = 'refuse'"
            " ORDER BY seq"), {"o": org.id, "e": entity_id}).all()]


def test_a_launch_replayed_by_someone_else_is_refused(client, temporal_api, owner):  # type: ignore[no-untyped-def]
    """The launch's X-Request-ID is the launcher's key: another person sending it launches nothing and is not
    told about the first person's run (409, on record); the launcher's own retry still answers their run."""
    org = make_org(owner, client)
    key = _protocol(owner, org, ["technician"])
    rid = str(uuid.uuid4())
    body = {"protocol_key": key, "time_scale": FAST, "subjects": [{"type": "sample", "id": "S-L-2"}]}
    first = client.post("/api/v1/runs", json=body, headers={**org.headers(Role.lab_manager), "X-Request-ID": rid})
    assert first.status_code == 201, first.text
    run_id = first.json()["id"]

    other = client.post("/api/v1/runs", json=body, headers={**org.headers(Role.admin), "X-Request-ID": rid})
    assert other.status_code == 409, other.text
    assert "already used by someone else" in other.json()["detail"] and run_id not in other.text, other.text
    again = client.post("/api/v1/runs", json=body, headers={**org.headers(Role.lab_manager), "X-Request-ID": rid})
    assert again.status_code == 200 and again.json()["id"] == run_id, again.text
    assert [a for a, _ in _refusals(owner, org, run_id)] == [str(org.users[Role.admin][0])]


def test_a_run_control_replayed_by_someone_else_is_refused(client, temporal_api, owner):  # type: ignore[no-untyped-def]
    """A hold's X-Request-ID sent by another person for a hold (or a cancel by another for a cancel) is refused
    409 and on record, not answered with the first person's answer; the first person's retry still is."""
    org = make_org(owner, client)
    key = _protocol(owner, org, ["technician"])
    run_id = _launch(client, org, key, "S-H-1")
    wait_for(lambda: open_tasks(client, org, run_id))
    rid = str(uuid.uuid4())
    manager = {**org.headers(Role.lab_manager), "X-Request-ID": rid}
    admin = {**org.headers(Role.admin), "X-Request-ID": rid}

    held = client.post(f"/api/v1/runs/{run_id}/hold", json={"reason": "incubator alarm"}, headers=manager)
    assert held.status_code == 200 and held.json()["status"] == "on_hold", held.text
    other = client.post(f"/api/v1/runs/{run_id}/hold", json={"reason": "my own hold"}, headers=admin)
    assert other.status_code == 409 and "already used by someone else" in other.json()["detail"], other.text
    again = client.post(f"/api/v1/runs/{run_id}/hold", json={"reason": "incubator alarm"}, headers=manager)
    assert again.status_code == 200 and again.json()["status"] == "on_hold", again.text

    cancel_rid = str(uuid.uuid4())
    cancelled = client.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "batch lost"},
                            headers={**org.headers(Role.lab_manager), "X-Request-ID": cancel_rid})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    other = client.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "mine"},
                        headers={**org.headers(Role.admin), "X-Request-ID": cancel_rid})
    assert other.status_code == 409 and "already used by someone else" in other.json()["detail"], other.text
    refusals = _refusals(owner, org, run_id)
    assert [a for a, _ in refusals] == [str(org.users[Role.admin][0])] * 2, refusals


def test_subject_filters_take_the_type_and_id_form(client, temporal_api, owner):  # type: ignore[no-untyped-def]
    """`sample:S-1`, as Temporal's search attributes and the README show a subject, filters tasks and runs to
    that sample (it matched nothing); the bare id still matches any subject with it."""
    org = make_org(owner, client)
    key = _protocol(owner, org, ["technician"])
    run_id = _launch(client, org, key, "S-T-1")
    wait_for(lambda: open_tasks(client, org, run_id))
    h = org.headers(Role.lab_manager)
    for value in ("sample:S-T-1", "S-T-1"):
        tasks = client.get("/api/v1/tasks", params={"subject": value}, headers=h)
        assert tasks.status_code == 200 and {t["run_id"] for t in tasks.json()} == {run_id}, (value, tasks.text)
        runs = client.get("/api/v1/runs", params={"subject": value}, headers=h)
        assert runs.status_code == 200 and [r["id"] for r in runs.json()] == [run_id], (value, runs.text)
    assert client.get("/api/v1/tasks", params={"subject": "batch:S-T-1"}, headers=h).json() == []
    assert client.get("/api/v1/runs", params={"subject": "batch:S-T-1"}, headers=h).json() == []
