"""The report builder: the organization's tables with labels and units, a query refused by the sandbox with its
reason, a preview, a definition saved with a parameter and a chart and shared by role; technicians refused (on
record); another organization's reports are not found."""

from __future__ import annotations

from sqlalchemy import text

from domain.roles import Role
from tests.reports.support import drain, subculture
from tests.support import make_org

SQL = ("SELECT s.submitted_by_display AS operator, sum(c.contaminated_vessels) / sum(s.vessels) AS rate\n"
       "FROM form_plant_subculture s JOIN form_shoot_count c USING (run_id, iteration)\n"
       "WHERE s.vessels >= $min_vessels GROUP BY ALL ORDER BY operator")
CHART = {"mark": "bar", "encoding": {"x": {"field": "operator", "type": "nominal"},
                                     "y": {"field": "rate", "type": "quantitative"}}}


def test_an_analyst_builds_shares_and_runs_a_report(client, owner, platform) -> None:
    org, other = make_org(owner, client), make_org(owner, client)
    subculture(owner, org, line="SR1", medium="MS-SEL-7", operator="Ana", vessels=40, contaminated=4)
    subculture(owner, org, line="SR1", medium="MS-SEL-7", operator="Ben", vessels=5, contaminated=5)
    subculture(owner, other, line="X", medium="Y", operator="Zed", vessels=99, contaminated=1)
    drain(owner, platform.settings.resolved_lake_uri)
    ana, sci = org.headers(Role.analyst), org.headers(Role.scientist)

    tables = {t["name"]: t for t in client.get("/api/v1/reports/builder/tables", headers=sci).json()}
    assert {"form_plant_subculture", "form_shoot_count", "runs", "runs_current"} <= set(tables)
    assert "audit_log" not in tables  # a scientist does not read the whole audit log
    temp = {c["name"]: c for c in tables["form_shoot_count"]["columns"]}["growth_room_temp_c"]
    assert (temp["label"], temp["unit"]) == ("Growth room temperature", "°C")

    for sql, words in (("DELETE FROM runs", "read-only"), ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
                       ("SELECT 1; SELECT 2", "one statement")):
        r = client.post("/api/v1/reports/builder/validate", headers=ana, json={"sql": sql})
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is False and r.json()["outcome"] == "refused" and words in r.json()["reason"], r.json()
        preview = client.post("/api/v1/reports/builder/preview", headers=ana, json={"sql": sql})
        assert preview.status_code == 422 and words in preview.text
    ok = client.post("/api/v1/reports/builder/validate", headers=ana, json={"sql": "SELECT * FROM form_shoot_count"})
    assert ok.json()["ok"] is True and ok.json()["tables"] == ["form_shoot_count"]
    params = [{"name": "min_vessels", "type": "integer", "label": "At least this many vessels", "default": 1}]
    preview = client.post("/api/v1/reports/builder/preview", headers=ana,
                          json={"sql": SQL, "parameters": params, "values": {"min_vessels": 10}, "limit": 5})
    assert preview.status_code == 200, preview.text
    assert preview.json()["rows"] == [["Ana", 0.1]]  # Ben's 5 vessels are below the parameter; Zed is elsewhere

    bad = client.post("/api/v1/reports/definitions", headers=ana, json={
        "key": "bad", "title": "Bad", "sql": "SELECT * FROM pg_catalog.pg_tables"})
    assert bad.status_code == 422 and "does not exist" in bad.text
    r = client.post("/api/v1/reports/definitions", headers=ana, json={
        "key": "rate-by-operator", "title": "Contamination by operator", "sql": SQL, "parameters": params,
        "chart": CHART, "layout": {"columns": [{"name": "operator", "label": "Operator"},
                                               {"name": "rate", "label": "Rate", "format": ".1%"}]}})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["version"] == 1 and d["kind"] == "custom"
    # Not shared yet: the scientist does not see it.
    assert client.get(f"/api/v1/reports/definitions/{d['id']}", headers=sci).status_code == 404
    shared = client.put("/api/v1/reports/definitions/by-key/rate-by-operator/sharing", headers=ana,
                        json={"shared_roles": ["scientist"]})
    assert shared.status_code == 200 and shared.json()["shared_roles"] == ["scientist"]
    assert client.get(f"/api/v1/reports/definitions/{d['id']}", headers=sci).status_code == 200
    v2 = client.post("/api/v1/reports/definitions/by-key/rate-by-operator/versions", headers=ana,
                     json={"title": "Contamination rate by operator", "reason": "clearer title"})
    assert v2.status_code == 201 and v2.json()["version"] == 2 and v2.json()["sql"] == SQL
    assert client.post("/api/v1/reports/definitions/by-key/rate-by-operator/versions", headers=sci,
                       json={"title": "mine now", "reason": "x"}).status_code == 403

    report = client.post("/api/v1/reports", headers=sci, json={"definition_id": v2.json()["id"],
                                                               "parameters": {"min_vessels": 1}})
    assert report.status_code == 201, report.text
    run = client.post(f"/api/v1/reports/{report.json()['id']}/execute", headers=sci)
    assert run.status_code == 200, run.text
    assert run.json()["rows"] == [["Ana", 0.1], ["Ben", 1.0]]
    wrong = client.post("/api/v1/reports", headers=sci, json={"definition_id": v2.json()["id"],
                                                              "parameters": {"min_vessels": "ten"}})
    assert wrong.status_code == 422 and "min_vessels" in wrong.text

    # Another organization: not found, whatever the id.
    foreign = other.headers(Role.analyst)
    assert client.get(f"/api/v1/reports/{report.json()['id']}", headers=foreign).status_code == 404
    assert client.get(f"/api/v1/reports/definitions/{d['id']}", headers=foreign).status_code == 404
    assert client.get(f"/api/v1/reports/executions/{run.json()['id']}", headers=foreign).status_code == 404
    assert client.get(f"/api/v1/reports/executions/{run.json()['id']}/export", params={"format": "csv"},
                      headers=foreign).status_code == 404
    assert client.post(f"/api/v1/reports/{report.json()['id']}/execute", headers=foreign).status_code == 404


def test_technicians_do_not_report_and_the_refusal_is_on_record(client, owner) -> None:
    org = make_org(owner, client)
    tech = org.headers(Role.technician)
    for method, path in (("GET", "/api/v1/reports/builder/tables"), ("GET", "/api/v1/reports/definitions"),
                         ("GET", "/api/v1/reports")):
        assert client.request(method, path, headers=tech).status_code == 403
    r = client.post("/api/v1/reports/builder/preview", headers=tech, json={"sql": "SELECT 1"})
    assert r.status_code == 403
    with owner.begin(org.id) as s:
        denied = s.execute(text(
            "SELECT count(*) FROM (SELECT entity_id FROM audit_pending WHERE org_id = :o AND action = 'deny'"
            " UNION ALL SELECT entity_id FROM audit_log WHERE org_id = :o AND action = 'deny') d"
            " WHERE entity_id LIKE '%/api/v1/reports%'"), {"o": org.id}).scalar_one()
    assert denied == 4
