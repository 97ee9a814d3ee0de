"""One poisoned request never wedges a run: what cannot be stored is refused at the door (422 naming the field),
bodies are bounded (413), and the run goes on afterwards. The real API, the real worker, the Temporal dev server."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from domain.roles import Role
from tests.runs.support import approve_protocol, complete, launch_with_open_task, one_task
from tests.support import Org, make_org

CHECKLIST = ["balance_calibrated"]


@pytest.fixture(scope="module")
def org(owner, client) -> Org:
    return make_org(owner, client)


def _fields(r) -> set[str]:  # type: ignore[no-untyped-def]
    return {e["field"] for e in r.json()["errors"]}


def _records(owner, org: Org) -> tuple[int, ...]:
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org.id})
        return tuple(s.execute(text(f"SELECT count(*) FROM {t} WHERE org_id = :o"), {"o": org.id}).scalar_one()
                     for t in ("runs", "audit_log", "step_events", "form_submissions"))


def test_a_nul_in_a_hold_reason_is_422_and_the_run_completes_afterwards(client, temporal_api, owner, org):
    run_id, task = launch_with_open_task(client, owner, org, "poison")
    r = client.post(f"/api/v1/runs/{run_id}/hold", json={"reason": "contamination\x00suspected"},
                    headers=org.headers(Role.lab_manager))
    assert r.status_code == 422 and _fields(r) == {"reason"}, r.text
    r = complete(client, org, task["id"], {"mass_g": "1.5"}, CHECKLIST)
    assert r.status_code == 200 and r.json()["run_status"] == "completed", r.text


def test_a_nul_in_a_checklist_key_or_a_value_is_422_and_the_task_completes_afterwards(client, temporal_api, owner,
                                                                                       org):
    run_id, task = launch_with_open_task(client, owner, org, "poison")
    before = _records(owner, org)
    for values, checklist, field in [({"mass_g": "1"}, [*CHECKLIST, "x\x00"], "checklist"),
                                     ({"mass_g": "1"}, {"balance_calibrated": True, "\x00": True}, "checklist"),
                                     ({"mass_g": "1", "balance": "B\x00-7"}, CHECKLIST, "values"),
                                     ({"mass_g": 10**30}, CHECKLIST, "values"),
                                     ({"mass_g": "1", "n\x00te": "x"}, CHECKLIST, "values")]:
        r = client.post(f"/api/v1/tasks/{task['id']}/complete", headers=org.headers(Role.technician),
                        json={"values": values, "checklist": checklist})
        assert r.status_code == 422 and _fields(r) == {field}, r.text
    assert _records(owner, org) == before
    r = complete(client, org, task["id"], {"mass_g": "1", "balance": "B-7"}, CHECKLIST)
    assert r.status_code == 200 and r.json()["run_status"] == "completed", r.text


@pytest.mark.parametrize("parameters", [
    '{"od": 1e308}', '{"od": 1e309}', '{"cells": 1000000000000000000000000000000}', '{"note": "a\\u0000b"}',
    '{"note\\u0000": 1}', '{"note": "\\ud800"}', '{"note": "\\u001b[2J"}',
    json.dumps({"deep": json.loads("[" * 30 + "]" * 30)}), json.dumps({"many": list(range(1001))}),
    json.dumps({f"k{i}": i for i in range(101)}), json.dumps({"long": "x" * 10_001}),
])
def test_launch_refuses_parameters_the_record_cannot_hold(client, temporal_api, owner, org, parameters):
    key = f"params-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, one_task(key, due=None))
    before = _records(owner, org)
    body = f'{{"protocol_key": "{key}", "parameters": {parameters}}}'
    r = client.post("/api/v1/runs", content=body,
                    headers={**org.headers(Role.lab_manager), "Content-Type": "application/json"})
    assert r.status_code == 422 and _fields(r) == {"parameters"}, r.text
    assert _records(owner, org) == before


def test_query_and_path_values_the_database_cannot_hold_are_422(client, org):
    h = org.headers(Role.auditor)
    r = client.get("/api/v1/runs", params={"status": "running\x00"}, headers=h)
    assert r.status_code == 422 and _fields(r) == {"status"}, r.text
    r = client.get("/api/v1/audit", params={"actor": "\x00"}, headers=h)
    assert r.status_code == 422 and _fields(r) == {"actor"}, r.text
    r = client.get("/api/v1/audit/entities/run/x%00y/state", params={"at": "2024-01-01T00:00:00Z"}, headers=h)
    assert r.status_code == 422, r.text


MiB = 1 << 20


def test_a_body_over_the_limit_is_413_before_anything_is_stored(client, temporal_api, owner, org):
    run_id, task = launch_with_open_task(client, owner, org, "poison")
    before = _records(owner, org)
    big = "x" * (10 * MiB)
    r = client.post("/api/v1/runs", json={"protocol_key": "any", "parameters": {"blob": big}},
                    headers=org.headers(Role.lab_manager))
    assert r.status_code == 413 and "larger than 1048576 bytes" in r.json()["detail"], r.text[:300]
    r = client.post(f"/api/v1/tasks/{task['id']}/complete", headers=org.headers(Role.technician),
                    json={"values": {"mass_g": "1", "balance": big}, "checklist": CHECKLIST})
    assert r.status_code == 413, r.text[:300]

    # Streamed without a Content-Length (chunked): cut off at the limit, answered the same.
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"values": {"balance": "'
        for _ in range(20):
            yield b"x" * (MiB // 8)
        yield b'"}, "checklist": []}'

    r = client.post(f"/api/v1/tasks/{task['id']}/complete", content=chunks(),
                    headers={**org.headers(Role.technician), "Content-Type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    assert _records(owner, org) == before
    r = complete(client, org, task["id"], {"mass_g": "1"}, CHECKLIST)
    assert r.status_code == 200 and r.json()["run_status"] == "completed", r.text


def test_the_body_limit_is_a_setting(platform, org):
    small = replace(platform, settings=platform.settings.model_copy(update={"max_body_bytes": 4096}))
    with TestClient(create_app(small, background=False)) as client:  # this test's app alone
        r = client.post("/api/v1/runs/00000000-0000-0000-0000-000000000000/hold", json={"reason": "y" * 5000},
                        headers=org.headers(Role.lab_manager))
    assert r.status_code == 413 and "larger than 4096 bytes" in r.json()["detail"], r.text


def _document(key: str, title: str) -> str:
    return (f'key: {key}\ntitle: "{title}"\nsteps:\n  - key: weigh\n    kind: task\n    title: Weigh\n'
            '    roles: [technician]\n')


@pytest.mark.parametrize("title", ["Media\\0check", "Media\\x1bcheck", "\\uD800"])
def test_protocol_documents_the_record_cannot_hold_are_422_as_json_or_yaml(client, owner, org, title):
    before = _records(owner, org)
    h = org.headers(Role.scientist)
    key = f"doc-{uuid.uuid4().hex[:6]}"
    r = client.post("/api/v1/protocols", json={"yaml": _document(key, title)}, headers=h)
    assert r.status_code == 422 and "title" in r.text, r.text
    as_json = title.replace("\\0", "\\u0000").replace("\\x1b", "\\u001b")  # the same escape in JSON
    r = client.post("/api/v1/protocols", headers={**h, "Content-Type": "application/json"},
                    content=f'{{"definition": {{"key": "{key}", "title": "{as_json}", "steps": []}}}}')
    assert r.status_code == 422 and _fields(r) == {"definition"}, r.text
    big = ("    form:\n      key: w\n      fields:\n        - {key: mass, label: Mass, type: number,"
           " max: 100000000000000000000000000000}\n")
    r = client.post("/api/v1/protocols", json={"yaml": _document(key, "Media check") + big}, headers=h)
    assert r.status_code == 422, r.text
    assert _records(owner, org) == before
