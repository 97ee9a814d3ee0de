"""An auditor's package for one run: the run's entries, its task's and its evidence's, proven offline against the
signed tree head, with the evidence files' bytes; another organization cannot ask for it."""

from __future__ import annotations

import io
import uuid
import zipfile
from typing import Any

import orjson
import pypdf

from domain.audit.package_verify import verify_package
from domain.roles import Role
from tests.evidence.support import CSV, png, uploaded
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol, one_task, open_tasks
from tests.support import make_org


def test_a_run_package_holds_the_run_its_task_and_evidence_and_verifies_offline(client, temporal_api, owner,
                                                                                 org_b) -> None:
    org = make_org(owner, client)
    key = f"pkg-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, one_task(key, due=None))
    r = client.post("/api/v1/runs", json={"protocol_key": key}, headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    task = wait_for(lambda: next(iter(open_tasks(client, org, run_id)), None), timeout=30)
    photo = uploaded(client, org, png(77), filename="balance.png")
    readings = uploaded(client, org, CSV, filename="readings.csv", content_type="text/csv")
    unrelated = uploaded(client, org, png(78), filename="other.png")
    done = client.post(f"/api/v1/tasks/{task['id']}/complete",
                       json={"values": {"mass_g": "12.5"}, "checklist": ["balance_calibrated"],
                             "evidence": [photo["id"], readings["id"]]},
                       headers={**org.headers(Role.technician), "X-Request-ID": str(uuid.uuid4())})
    assert done.status_code == 200, done.text

    made = client.post("/api/v1/audit/packages", json={"scope": "run", "id": run_id, "include_files": True},
                       headers=org.headers(Role.auditor))
    assert made.status_code == 201, made.text
    data = client.get(made.json()["download"], headers=org.headers(Role.auditor)).content
    pem = client.get("/api/v1/audit/public-key", headers=org.headers(Role.auditor)).content
    from cryptography.hazmat.primitives import serialization

    key_obj: Any = serialization.load_pem_public_key(pem)
    result = verify_package(io.BytesIO(data), key_obj)
    assert result.ok, result.problems
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        bodies = [orjson.loads(orjson.loads(x)["body"]) for x in z.read("entries.jsonl").splitlines()]
        evidence = orjson.loads(z.read("evidence/manifest.json"))["files"]
        record = z.read("run-record.pdf")  # listed in the signed manifest, so verified above with the rest
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(record)).pages)
    assert "12.5" in text and key in text, text[:400]
    about = {(b["entity"]["type"], b["entity"]["id"]) for b in bodies}
    assert ("run", run_id) in about and ("task", task["id"]) in about
    assert ("task", task["id"]) in {(b["entity"]["type"], b["entity"]["id"]) for b in bodies
                                   if b["action"] == "complete"}
    assert {("evidence", photo["id"]), ("evidence", readings["id"])} <= about
    assert ("evidence", unrelated["id"]) not in about
    assert {e["sha256"] for e in evidence} == {photo["sha256"], readings["sha256"]}
    assert all(e["included"] for e in evidence)
    other = client.post("/api/v1/audit/packages", json={"scope": "run", "id": run_id},
                        headers=org_b.headers(Role.auditor))
    assert other.status_code == 404, other.text
