"""A report through its lifecycle on tissue-culture data: the contamination rate checked by hand, reviewed and
finalized by someone other than its author, locked even for the database owner, reproduced exactly after new data
arrived and after the lake's vacuum, and exported in every format, each file opened by its own reader."""

from __future__ import annotations

import io
import json

import openpyxl
import pyarrow.parquet as pq
import pypdf
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain.reports.exports import CONTEXT_KEY
from domain.reports.service import pinned_versions
from domain.roles import Role
from lake.maintain import maintain_lake
from lake.writer import Lake
from tests.reports.support import drain, new_report, sign, subculture
from tests.support import make_org

KEY = "science-tc-contamination"


def test_a_finalized_contamination_report_is_locked_and_reproduced_after_new_data(client, owner, platform) -> None:
    lake_uri = platform.settings.resolved_lake_uri
    org = make_org(owner, client)
    # By hand: Ana subcultured 40 + 20 vessels of SR1 on MS-SEL-7 in October, 4 + 1 contaminated: 5/60 = 0.0833;
    # Ben 50 vessels of SR1 on MS-SEL-8, 10 contaminated: 0.2.
    run = subculture(owner, org, line="SR1", medium="MS-SEL-7", operator="Ana", vessels=40, contaminated=4)
    subculture(owner, org, line="SR1", medium="MS-SEL-7", operator="Ana", vessels=20, contaminated=1,
               iteration=1, run_id=run)
    subculture(owner, org, line="SR1", medium="MS-SEL-8", operator="Ben", vessels=50, contaminated=10)
    drain(owner, lake_uri)

    sci, mgr = org.headers(Role.scientist), org.headers(Role.lab_manager)
    report = new_report(client, org, Role.scientist, KEY, {"since": "2026-10-01", "until": "2026-11-01"})
    assert report["status"] == "created"
    r = client.post(f"/api/v1/reports/{report['id']}/execute", headers=sci)
    assert r.status_code == 200, r.text
    first = r.json()
    rows = [dict(zip(first["columns"], row, strict=True)) for row in first["rows"]]
    assert [(x["operator"], x["medium"], x["vessels"], x["contaminated_vessels"], x["contamination_rate"])
            for x in rows] == [("Ana", "MS-SEL-7", 60, 5, 0.0833), ("Ben", "MS-SEL-8", 50, 10, 0.2)]
    assert {x["line"] for x in rows} == {"SR1"} and {x["month"] for x in rows} == {"2026-10"}
    assert set(first["table_versions"]) == {"form_plant_subculture", "form_shoot_count", "runs"}
    assert first["row_count"] == 2 and first["parameters"] == {"since": "2026-10-01", "until": "2026-11-01"}

    rid = report["id"]
    assert client.post(f"/api/v1/reports/{rid}/finalize", headers=mgr, json=sign()).status_code == 409  # not in review
    assert client.post(f"/api/v1/reports/{rid}/review", headers=sci, json={}).json()["status"] == "in_review"
    assert client.post(f"/api/v1/reports/{rid}/execute", headers=sci).status_code == 409
    # The author does not finalize their own report (403, on record).
    denied = client.post(f"/api/v1/reports/{rid}/finalize", headers=sci, json=sign())
    assert denied.status_code == 403, denied.text
    wrong = client.post(f"/api/v1/reports/{rid}/finalize", headers=mgr, json={"signature": {
        "password": "not it", "meaning": "approved"}})
    assert wrong.status_code == 403
    done = client.post(f"/api/v1/reports/{rid}/finalize", headers=mgr, json=sign())
    assert done.status_code == 200, done.text
    final = done.json()
    assert final["status"] == "finalized" and final["locked"]
    assert final["signature"]["signer_name"] == f"lab_manager of {org.slug}"
    assert final["signature"]["meaning"] == "approved"
    assert final["signature"]["content_hash"] == final["content_hash"]

    with owner.begin(org.id) as s:  # the content hash is in the audit chain with the finalize entry
        entry = s.execute(text("SELECT body FROM audit_pending WHERE org_id = :o AND entity_type = 'report'"
                               " AND action = 'finalize' UNION ALL SELECT body FROM audit_log WHERE org_id = :o"
                               " AND entity_type = 'report' AND action = 'finalize'"), {"o": org.id}).scalar_one()
        assert final["content_hash"] in bytes(entry).decode()
    for statement in ("UPDATE reports SET title = 'doctored' WHERE id = :i", "DELETE FROM reports WHERE id = :i"):
        with pytest.raises(DBAPIError, match="finalized and locked"), owner.begin(org.id) as s:
            s.execute(text(statement), {"i": rid})
    assert client.patch(f"/api/v1/reports/{rid}", headers=sci, json={"title": "x"}).status_code == 409

    # New data arrives: a fresh execution sees it, the finalized report still reproduces exactly.
    subculture(owner, org, line="SR1", medium="MS-SEL-8", operator="Ben", vessels=10, contaminated=10)
    drain(owner, lake_uri)
    fresh = new_report(client, org, Role.scientist, KEY, {"since": "2026-10-01", "until": "2026-11-01"})
    now = client.post(f"/api/v1/reports/{fresh['id']}/execute", headers=sci).json()
    assert now["rows"][1][-1] == 0.3333 and now["result_sha256"] != first["result_sha256"]
    again = client.post(f"/api/v1/reports/{rid}/reproduce", headers=org.headers(Role.auditor))
    assert again.status_code == 200, again.text
    assert again.json()["reproduces"] is True and again.json()["rows"] == first["rows"]
    assert again.json()["table_versions"] == first["table_versions"]

    # The lake's vacuum keeps what finalized reports pinned (a zero retention would remove it otherwise).
    with owner.begin(None) as s:
        pinned = pinned_versions(s)
    assert pinned["form_shoot_count"] <= first["table_versions"]["form_shoot_count"]
    maintain_lake(Lake(lake_uri), tables=["form_shoot_count", "form_plant_subculture", "runs"], retention_hours=0,
                  enforce_retention=False, pinned=pinned)
    assert client.post(f"/api/v1/reports/{rid}/reproduce", headers=sci).json()["reproduces"] is True

    # Exports of the finalized execution, each opened by its own reader, each carrying its context.
    eid = final["execution_id"]

    def export(fmt: str) -> bytes:
        r = client.get(f"/api/v1/reports/executions/{eid}/export", params={"format": fmt}, headers=sci)
        assert r.status_code == 200, r.text
        return r.content

    table = pq.read_table(io.BytesIO(export("parquet")))
    assert table.column("contamination_rate").to_pylist() == [0.0833, 0.2]
    context = json.loads(table.schema.metadata[CONTEXT_KEY])
    assert context["table_versions"] == first["table_versions"] and context["definition"]["key"] == KEY
    book = openpyxl.load_workbook(io.BytesIO(export("xlsx")))
    assert [c.value for c in book["Report"][1]][:3] == ["line", "medium", "operator"]
    assert book["Report"]["G3"].value == 0.2
    assert {r[0].value for r in book["Context"].iter_rows()} >= {"table_versions", "executed_by", "parameters"}
    csv_text = export("csv").decode()
    assert "# table_versions:" in csv_text and "Ben,2026-10,50,10,0.2" in csv_text
    lines = export("jsonl").decode().splitlines()
    assert json.loads(lines[0])["context"]["execution_id"] == eid and json.loads(lines[2])["operator"] == "Ben"
    pdf = pypdf.PdfReader(io.BytesIO(export("pdf")))
    words = " ".join(page.extract_text() for page in pdf.pages)
    assert "Tissue culture contamination rate" in words and "form_shoot_count@v" in words
    assert f"lab_manager of {org.slug}" in words and final["content_hash"] in words

    # Reports, executions and exports reach the lake: analysts report on reporting (their own organization only).
    drain(owner, lake_uri)
    r = client.post("/api/v1/reports/builder/preview", headers=org.headers(Role.analyst), json={
        "sql": "SELECT purpose, count(*) AS n, count(DISTINCT definition_key) AS keys FROM report_executions"
               " GROUP BY ALL ORDER BY purpose"})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [["execute", 2, 1], ["reproduce", 2, 1]]
    r = client.post("/api/v1/reports/builder/preview", headers=org.headers(Role.analyst), json={
        "sql": "SELECT format FROM report_exports ORDER BY format"})
    assert [row[0] for row in r.json()["rows"]] == ["csv", "jsonl", "parquet", "pdf", "xlsx"]
    r = client.post("/api/v1/reports/builder/preview", headers=org.headers(Role.analyst), json={
        "sql": f"SELECT status, content_hash FROM reports WHERE entity = 'report' AND id = '{rid}'"
               " ORDER BY changed_at"})
    assert r.status_code == 200, r.text
    assert [row[0] for row in r.json()["rows"]][-1] == "finalized"
    assert r.json()["rows"][-1][1] == final["content_hash"]

    # Every action is on record.
    with owner.begin(org.id) as s:
        actions = {(a, e) for a, e in s.execute(text(
            "SELECT action, entity_type FROM audit_pending WHERE org_id = :o UNION SELECT action, entity_type"
            " FROM audit_log WHERE org_id = :o"), {"o": org.id}).all()}
    assert {("create", "report"), ("execute", "report_execution"), ("review", "report"), ("finalize", "report"),
            ("export", "report_export"), ("download", "report_export"), ("deny", "endpoint"),
            ("sign", "signature")} <= actions, actions


def test_a_pdf_is_only_for_a_finalized_report(client, owner, platform) -> None:
    org = make_org(owner, client)
    subculture(owner, org, line="SR1", medium="MS-SEL-7", operator="Ana", vessels=10, contaminated=1)
    drain(owner, platform.settings.resolved_lake_uri)
    report = new_report(client, org, Role.analyst, KEY)
    eid = client.post(f"/api/v1/reports/{report['id']}/execute", headers=org.headers(Role.analyst)).json()["id"]
    r = client.get(f"/api/v1/reports/executions/{eid}/export", params={"format": "pdf"},
                   headers=org.headers(Role.analyst))
    assert r.status_code == 409
    assert client.post(f"/api/v1/reports/{report['id']}/reproduce",
                       headers=org.headers(Role.analyst)).status_code == 409
