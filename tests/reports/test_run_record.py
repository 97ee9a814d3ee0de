"""The run record of a run (the electronic batch record): every step with its values and units, checklist, who and
when, the signature with its meaning, the evidence with its SHA-256, the hold and the escalation; finalized by a
lab manager through the report lifecycle and read back from its PDF with a text extractor."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid

import pypdf
from sqlalchemy import text

from core.db import TenantSessions
from domain.roles import Role
from tests.reports.support import new_report, sign
from tests.runs.support import approve_protocol, one_task
from tests.support import Org, make_org

T0 = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)
PHOTO = hashlib.sha256(b"plate photo").hexdigest()


def seed_run(owner: TenantSessions, org: Org) -> uuid.UUID:
    """A finished one-task run as the run engine leaves it: task, form, checklist, evidence, escalation, a hold
    and its resumption, an approval signature."""
    doc = one_task("weigh-record")
    version_id, version = approve_protocol(owner, org.id, doc)
    run_id, task_id, evidence_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    tech_id, _ = org.users[Role.technician]
    mgr_id, _ = org.users[Role.lab_manager]
    tech, mgr = f"technician of {org.slug}", f"lab_manager of {org.slug}"
    step = doc["steps"][0]
    with owner.begin(org.id) as s:
        s.execute(text(
            "INSERT INTO runs (id, org_id, protocol_version_id, protocol_key, protocol_version, protocol_title, status,"
            " subjects, parameters, launched_by, launched_by_display, launched_at, updated_at, ended_at) VALUES"
            " (:i, :o, :pv, :k, :v, :t, 'completed', CAST(:sub AS jsonb), CAST(:par AS jsonb), :by, :byd, :t0, :t1,"
            " :t1)"), {"i": run_id, "o": org.id, "pv": version_id, "k": doc["key"], "v": version, "t": doc["title"],
                       "sub": json.dumps([{"type": "sample", "id": "S-1"}]), "par": json.dumps({"lot": "L-7"}),
                       "by": str(mgr_id), "byd": mgr, "t0": T0, "t1": T0 + dt.timedelta(hours=2)})
        s.execute(text(
            "INSERT INTO tasks (id, org_id, run_id, step_key, iteration, kind, title, roles, spec, status, opened_at,"
            " due_at, escalation_level, closed_at, closed_by, closed_by_display) VALUES (:i, :o, :r, 'weigh', 0,"
            " 'task', :title, ARRAY['technician'], CAST(:spec AS jsonb), 'completed', :t0, :due, 1, :t1, :by, :byd)"),
            {"i": task_id, "o": org.id, "r": run_id, "title": step["title"], "spec": json.dumps(step), "t0": T0,
             "due": T0 + dt.timedelta(minutes=30), "t1": T0 + dt.timedelta(hours=1), "by": str(tech_id), "byd": tech})
        s.execute(text(
            "INSERT INTO evidence_files (id, org_id, sha256, size_bytes, content_type, filename, uploaded_at,"
            " uploaded_by, uploaded_by_display) VALUES (:i, :o, :h, 11, 'image/png', 'balance.png', :t, :by, :byd)"),
            {"i": evidence_id, "o": org.id, "h": PHOTO, "t": T0, "by": str(tech_id), "byd": tech})
        fields = [{"key": f["key"], "label": f["label"], "type": f["type"], "unit": f.get("unit")}
                  for f in step["form"]["fields"]]
        s.execute(text(
            "INSERT INTO form_submissions (id, org_id, run_id, task_id, step_key, form_key, iteration, submitted_by,"
            " submitted_by_display, submitted_at, fields, field_values, checklist, evidence) VALUES (:i, :o, :r, :t,"
            " 'weigh', :fk, 0, :by, :byd, :at, CAST(:f AS jsonb), CAST(:v AS jsonb), CAST(:c AS jsonb),"
            " CAST(:e AS jsonb))"),
            {"i": uuid.uuid4(), "o": org.id, "r": run_id, "t": task_id, "fk": step["form"]["key"], "by": str(tech_id),
             "byd": tech, "at": T0 + dt.timedelta(hours=1), "f": json.dumps(fields),
             "v": json.dumps({"mass_g": 12.34, "balance": "XS205"}), "c": json.dumps(["balance_calibrated"]),
             "e": json.dumps([str(evidence_id)])})
        events = [("opened", "task", "weigh", "system", {}, T0),
                  ("escalated", "task", "weigh", "system", {"level": 1, "notify_role": "lab_manager"},
                   T0 + dt.timedelta(minutes=31)),
                  ("held", "run", "", mgr, {"reason": "balance out of calibration"}, T0 + dt.timedelta(minutes=40)),
                  ("resumed", "run", "", mgr, {"reason": "balance recalibrated"}, T0 + dt.timedelta(minutes=50)),
                  ("completed", "task", "weigh", tech, {"checklist": ["balance_calibrated"],
                                                        "evidence": [str(evidence_id)]}, T0 + dt.timedelta(hours=1))]
        for event, kind, key, actor, detail, at in events:
            s.execute(text(
                "INSERT INTO step_events (id, org_id, run_id, task_id, step_key, step_kind, event, iteration,"
                " actor_type, actor_id, actor_display, occurred_at, detail) VALUES (:i, :o, :r, :t, :k, :kind, :e, 0,"
                " 'user', :a, :a, :at, CAST(:d AS jsonb))"),
                {"i": uuid.uuid4(), "o": org.id, "r": run_id, "t": task_id if kind == "task" else None, "k": key,
                 "kind": kind, "e": event, "a": actor, "at": at, "d": json.dumps(detail)})
        s.execute(text(
            "INSERT INTO signatures (id, org_id, signer_id, signer_name, meaning, reason, entity_type, entity_id,"
            " content_hash, signed_at) VALUES (:i, :o, :s, :n, 'verified', 'weights checked', 'task', :t, :h, :at)"),
            {"i": uuid.uuid4(), "o": org.id, "s": mgr_id, "n": mgr, "t": str(task_id), "h": "ab" * 32,
             "at": T0 + dt.timedelta(hours=1, minutes=5)})
    return run_id


def test_a_lab_manager_finalizes_the_run_record_and_its_pdf_reads_as_the_record(client, owner) -> None:
    org, other = make_org(owner, client), make_org(owner, client)
    run_id = seed_run(owner, org)
    sci, mgr = org.headers(Role.scientist), org.headers(Role.lab_manager)

    report = new_report(client, org, Role.scientist, "run-record", {"run_id": str(run_id)})
    r = client.post(f"/api/v1/reports/{report['id']}/execute", headers=sci)
    assert r.status_code == 200, r.text
    rows = [dict(zip(r.json()["columns"], row, strict=True)) for row in r.json()["rows"]]
    by = {(x["section"], x["item"]): x for x in rows}
    assert by[("value", "Mass")]["value"] == "12.34" and by[("value", "Mass")]["unit"] == "g"
    assert by[("checklist", "Balance calibrated today")]["actor"] == f"technician of {org.slug}"
    assert by[("evidence", "balance.png")]["value"] == PHOTO
    assert by[("signature", "verified")]["value"] == f"lab_manager of {org.slug}"
    assert {x["item"] for x in rows if x["section"] == "hold"} == {"held", "resumed"}
    assert [x["value"] for x in rows if x["section"] == "escalation"] == ["1"]
    assert r.json()["table_versions"] == {}  # read from the operational database

    client.post(f"/api/v1/reports/{report['id']}/review", headers=sci, json={"reason": "run closed"})
    done = client.post(f"/api/v1/reports/{report['id']}/finalize", headers=mgr, json=sign())
    assert done.status_code == 200, done.text
    pdf = client.get(f"/api/v1/reports/executions/{done.json()['execution_id']}/export", params={"format": "pdf"},
                     headers=org.headers(Role.auditor))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    words = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    for expected in ("Run record", str(run_id), "Weigh the sample", "Mass", "12.34", "Balance calibrated today",
                     PHOTO, "verified", "balance out of calibration", "Escalations (1)", "Holds (2)",
                     f"lab_manager of {org.slug}", done.json()["content_hash"], "Deviations and CAPA"):
        assert expected in words, expected

    # Read now, without the lifecycle (the auditor's package uses the same function); not across organizations.
    now = client.get(f"/api/v1/reports/runs/{run_id}/record.pdf", headers=mgr)
    assert now.status_code == 200 and now.content.startswith(b"%PDF")
    assert client.get(f"/api/v1/reports/runs/{run_id}/record.pdf", headers=other.headers(Role.lab_manager)) \
        .status_code == 404
    foreign = client.post("/api/v1/reports", headers=other.headers(Role.scientist), json={
        "definition_id": report["definition_id"], "parameters": {"run_id": str(run_id)}})
    assert foreign.status_code == 404  # the definition id is this organization's
