"""Runs work on real material: subjects and `sample_ref` / `batch_ref` values name existing, usable records of the
organization (a disposed sample is refused with the reason, nothing launched or completed), and the trace of a
sample or batch shows the runs and steps that used it, with its movements and evidence, in time order."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from sqlalchemy import text

from domain.roles import Role
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol, complete
from tests.samples.material import batch, location, sample, status


def _protocol(key: str) -> dict:
    return {"key": key, "title": "Subculture onto fresh plates", "steps": [{
        "key": "subculture", "kind": "task", "title": "Subculture", "roles": ["technician"],
        "form": {"key": f"{key.replace('-', '_')}_subculture", "fields": [
            {"key": "parent_plate", "label": "Parent plate", "type": "sample_ref"},
            {"key": "medium", "label": "Medium batch", "type": "batch_ref", "required": False}]}}]}


def test_runs_and_forms_take_only_usable_material_and_the_trace_shows_them(client, temporal_api, owner, org_a):
    key = f"material-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, _protocol(key))
    plate = sample(client, org_a, sample_type="plate", name="Trichoderma plate P1")
    medium = batch(client, org_a, name="PDA plates")
    gone = sample(client, org_a, sample_type="plate", name="old plate")
    assert status(client, org_a, gone["id"], "disposed", "autoclaved").status_code == 200
    manager = org_a.headers(Role.lab_manager)

    # A disposed subject: 422 with the reason, and no run.
    r = client.post("/api/v1/runs", json={"protocol_key": key, "subjects": [
        {"type": "sample", "id": plate["id"]}, {"type": "sample", "id": gone["code"]},
        {"type": "batch", "id": "B-999999"}]}, headers=manager)
    assert r.status_code == 422, r.text
    assert r.json()["reasons"] == [f"subjects[1]: sample {gone['code']} is disposed: autoclaved",
                                   "subjects[2]: no batch 'B-999999' in this organization"]
    assert client.get("/api/v1/runs", params={"subject": gone["code"]}, headers=manager).json() == []

    # Named by id or code, recorded by code.
    r = client.post("/api/v1/runs", json={"protocol_key": key, "subjects": [
        {"type": "sample", "id": plate["id"]}, {"type": "batch", "id": medium["code"]}]}, headers=manager)
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    assert r.json()["subjects"] == [{"type": "sample", "id": plate["code"]}, {"type": "batch", "id": medium["code"]}]
    task = wait_for(lambda: client.get("/api/v1/tasks", params={"run_id": run_id},
                                       headers=org_a.headers(Role.technician)).json(), timeout=30)[0]

    r = complete(client, org_a, task["id"], {"parent_plate": gone["code"], "medium": medium["id"]}, [])
    assert r.status_code == 422, r.text
    assert f"values.parent_plate: sample {gone['code']} is disposed: autoclaved" in r.json()["reasons"]
    r = complete(client, org_a, task["id"], {"parent_plate": "S-000000", "medium": medium["id"]}, [])
    assert r.status_code == 422 and "values.parent_plate: no sample 'S-000000' in this organization" in r.text

    # Moved to the bench, photographed (the evidence engineer's table), then used in the step.
    bench = location(owner, org_a.id, "Laminar flow hood 1")
    r = client.post(f"/api/v1/samples/{plate['id']}/moves",
                    json={"to_location_id": str(bench), "reason": "to the hood"},
                    headers=org_a.headers(Role.technician))
    assert r.status_code == 201
    _evidence(owner, org_a.id, "sample", plate["code"])
    r = complete(client, org_a, task["id"], {"parent_plate": plate["code"], "medium": medium["id"]}, [])
    assert r.status_code == 200, r.text

    trace = client.get(f"/api/v1/samples/{plate['id']}/trace", headers=org_a.headers(Role.auditor)).json()
    entries = trace["entries"]
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "created" and kinds.index("run") < kinds.index("evidence") < len(kinds)
    assert {"movement", "evidence", "step", "run"} <= set(kinds)
    named = [e for e in entries if e["kind"] == "step" and "parent_plate" in e["summary"]]
    assert named and named[0]["run_id"] == run_id and named[0]["actor"] == f"technician of {org_a.slug}"
    assert any(e["kind"] == "movement" and "to the hood" in e["summary"] for e in entries)

    btrace = client.get(f"/api/v1/batches/{medium['id']}/trace", headers=org_a.headers(Role.auditor)).json()
    assert {e["kind"] for e in btrace["entries"]} >= {"created", "run", "step"}
    assert any("field medium" in e["summary"] for e in btrace["entries"])


def _evidence(owner, org_id: uuid.UUID, target_type: str, target_id: str) -> None:
    data = b"photo of the plate"
    file_id = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    with owner.begin(org_id) as s:
        s.execute(text("INSERT INTO evidence_files (id, org_id, sha256, size_bytes, content_type, filename,"
                       " uploaded_at, uploaded_by, uploaded_by_display)"
                       " VALUES (:i, :o, :h, :n, 'image/png', 'plate.png', :t, 'test', 'technician')"),
                  {"i": file_id, "o": org_id, "h": hashlib.sha256(data).hexdigest(), "n": len(data), "t": now})
        s.execute(text("INSERT INTO evidence_links (id, org_id, evidence_id, target_type, target_id, linked_at,"
                       " linked_by) VALUES (:i, :o, :f, :tt, :ti, :t, 'test')"),
                  {"i": uuid.uuid4(), "o": org_id, "f": file_id, "tt": target_type, "ti": target_id, "t": now})


def test_a_step_produces_child_plates_and_consumes_its_parent_once(client, temporal_api, owner, org_a):
    key = f"produce-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, {"key": key, "title": "Subculture", "steps": [{
        "key": "subculture", "kind": "task", "title": "Subculture onto fresh plates", "roles": ["technician"],
        "form": {"key": f"{key.replace('-', '_')}_sub", "fields": [
            {"key": "parent_plate", "label": "Parent plate", "type": "sample_ref"},
            {"key": "n_plates", "label": "New plates", "type": "integer", "min": 0}]},
        "produces": {"type": "plate", "count_field": "n_plates", "operation": "subculture",
                     "from_field": "parent_plate"},
        "consumes": ["parent_plate"]}]})
    parent = sample(client, org_a, sample_type="plate", name="Callus line 7 plate")
    r = client.post("/api/v1/runs", json={"protocol_key": key, "subjects": [{"type": "sample", "id": parent["code"]}]},
                    headers=org_a.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    task = wait_for(lambda: client.get("/api/v1/tasks", params={"run_id": run_id},
                                       headers=org_a.headers(Role.technician)).json(), timeout=30)[0]
    r = complete(client, org_a, task["id"], {"parent_plate": parent["code"], "n_plates": 501}, [])
    assert r.status_code == 422 and "values.n_plates: between 0 and 500 samples per step" in r.json()["reasons"]
    rid = str(uuid.uuid4())
    r = complete(client, org_a, task["id"], {"parent_plate": parent["code"], "n_plates": 3}, [], request_id=rid)
    assert r.status_code == 200, r.text
    again = complete(client, org_a, task["id"], {"parent_plate": parent["code"], "n_plates": 3}, [], request_id=rid)
    assert again.status_code == 200, again.text

    h = org_a.headers(Role.auditor)
    after = client.get(f"/api/v1/samples/{parent['id']}", headers=h).json()
    assert after["status"] == "consumed" and f"step 'subculture' of run {run_id}" in after["status_reason"]
    assert len(after["children"]) == 3
    down = client.get(f"/api/v1/samples/{parent['id']}/lineage", params={"direction": "descendants"}, headers=h).json()
    assert {(e["operation"], e["run_id"], e["step_key"], e["task_id"]) for e in down["edges"]} == {
        ("subculture", run_id, "subculture", task["id"])}
    kids = [n for n in down["nodes"] if n["depth"] == 1]
    assert len(kids) == 3 and {k["sample_type"] for k in kids} == {"plate"} and {k["status"] for k in kids} == {
        "received"}
    child = client.get(f"/api/v1/samples/{kids[0]['id']}", headers=h).json()
    assert child["created_in_run"] == run_id and child["created_in_step"] == "subculture"
    assert child["owner_display"] == f"technician of {org_a.slug}"
