"""The reports pages without a browser: a scientist builds a contamination-rate definition (the sandbox's reason
shown for a query it refuses), starts a report of it, executes it with a parameter, sees the rows and the chart,
downloads it, submits it for review; as its author they are refused finalizing it (with the reason, on record); a
lab manager signs it with their password. A technician has no reports (refused, on record); another
organization's report is not found."""

from __future__ import annotations

import json
import re

from domain.roles import Role
from tests.reports.support import drain, subculture
from tests.support import PASSWORD, make_org
from tests.ui.conftest import csrf_of
from tests.ui.test_role_pages import sealed, signed_in

SQL = """SELECT s.submitted_by_display AS operator,
       CAST(sum(s.vessels) AS BIGINT) AS vessels,
       CAST(sum(c.contaminated_vessels) AS BIGINT) AS contaminated_vessels,
       round(sum(c.contaminated_vessels) / sum(s.vessels), 4) AS contamination_rate
FROM form_plant_subculture s
JOIN form_shoot_count c ON c.run_id = s.run_id AND c.iteration = s.iteration
WHERE s.vessels >= $min_vessels
GROUP BY ALL ORDER BY operator"""
CHART = {"mark": "bar", "encoding": {"x": {"field": "operator", "type": "nominal"},
                                     "y": {"field": "contamination_rate", "type": "quantitative"}}}
REPORT = re.compile(r"/ui/reports/([0-9a-f-]{36})$")


def contamination_lab(client, owner, platform):  # type: ignore[no-untyped-def]
    """An organization whose lake has Ana's 60 vessels (5 contaminated) and Ben's 50 (10 contaminated)."""
    org = make_org(owner, client)
    run = subculture(owner, org, line="SR1", medium="MS-SEL-7", operator="Ana", vessels=40, contaminated=4)
    subculture(owner, org, line="SR1", medium="MS-SEL-7", operator="Ana", vessels=20, contaminated=1, iteration=1,
               run_id=run)
    subculture(owner, org, line="SR1", medium="MS-SEL-8", operator="Ben", vessels=50, contaminated=10)
    drain(owner, platform.settings.resolved_lake_uri)
    return org


def builder_form(page: str, action: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": csrf_of(page), "action": action, "sql": SQL, "parameters": "min_vessels integer 0",
            **fields}


def test_save_execute_review_and_finalize_by_another_reviewer(client, owner, platform) -> None:
    org = contamination_lab(client, owner, platform)
    web = signed_in(client, org, Role.scientist)
    listing = web.get("/ui/reports")
    assert listing.status_code == 200 and 'href="/ui/reports">Reports</a>' in listing.text
    assert "Tissue culture contamination rate" in listing.text  # the system reports are there

    builder = web.get("/ui/reports/builder")
    assert builder.status_code == 200 and "form_shoot_count" in builder.text
    assert "Contaminated vessels discarded" in builder.text  # the columns' labels from the forms
    refused = web.post("/ui/reports/builder", data=builder_form(
        builder.text, "validate", sql="SELECT * FROM read_csv('/etc/passwd')"))
    assert refused.status_code == 422 and "The sandbox refuses this query" in refused.text
    preview = web.post("/ui/reports/builder", data=builder_form(builder.text, "preview"))
    assert preview.status_code == 200 and 'id="preview"' in preview.text and "0.0833" in preview.text
    undeclared = web.post("/ui/reports/builder", data=builder_form(builder.text, "save", parameters="",
                                                                   key="tc-rate", title="Contamination by operator"))
    assert undeclared.status_code == 422 and "$min_vessels is not a declared parameter" in undeclared.text
    saved = web.post("/ui/reports/builder", data=builder_form(builder.text, "save", key="tc-rate",
                                                              title="Contamination by operator",
                                                              chart=json.dumps(CHART), shared_roles="lab_manager"))
    assert saved.status_code == 303 and saved.headers["location"] == "/ui/reports?saved=tc-rate"
    listing = web.get("/ui/reports?saved=tc-rate")
    assert 'id="def-tc-rate"' in listing.text

    definition = next(d for d in client.get("/api/v1/reports/definitions", headers=org.headers(Role.scientist)).json()
                      if d["key"] == "tc-rate")
    assert definition["chart"] == CHART and definition["parameters"][0]["default"] == 0
    created = web.post("/ui/reports", data={"csrf_token": csrf_of(listing.text), "definition_id": definition["id"],
                                            "title": "October contamination"})
    assert created.status_code == 303
    match = REPORT.search(created.headers["location"])
    assert match
    rid = match.group(1)
    page = web.get(f"/ui/reports/{rid}")
    assert page.status_code == 200 and "Not executed yet." in page.text
    wrong = web.post(f"/ui/reports/{rid}/execute", data={"csrf_token": csrf_of(page.text),
                                                          "param.min_vessels": "many"})
    assert wrong.status_code == 422 and "should be an integer" in wrong.text
    done = web.post(f"/ui/reports/{rid}/execute", data={"csrf_token": csrf_of(page.text),
                                                         "param.min_vessels": "25"})
    assert done.status_code == 303, done.text
    page = web.get(done.headers["location"])
    # Ana's 20-vessel subculture is below 25: 40 vessels, 4 contaminated; Ben 50 and 10.
    rows = re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td><td>(\d+)</td><td>([\d.]+)</td></tr>", page.text)
    assert rows == [("Ana", "40", "4", "0.1"), ("Ben", "50", "10", "0.2")]
    assert 'id="chart"' in page.text and 'src="data:image/svg+xml;base64,' in page.text
    assert "min_vessels</span> = 25" in page.text
    execution = re.search(r"/ui/reports/executions/([0-9a-f-]{36})/export\?format=csv", page.text)
    assert execution
    csv = web.get(f"/ui/reports/executions/{execution.group(1)}/export?format=csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "Ana,40,4,0.1" in csv.text and "# definition:" in csv.text
    assert web.get(f"/ui/reports/executions/{execution.group(1)}/export?format=pdf").status_code == 409  # not final

    submitted = web.post(f"/ui/reports/{rid}/review", data={"csrf_token": csrf_of(page.text), "reason": "October"})
    assert submitted.status_code == 303
    page = web.get(submitted.headers["location"])
    assert "in review" in page.text and "You are this report's author" in page.text
    own = web.post(f"/ui/reports/{rid}/finalize", data={"csrf_token": csrf_of(page.text), "password": PASSWORD,
                                                         "meaning": "approved"})
    assert own.status_code == 403 and "cannot be its author" in own.text and 'id="refusal"' in own.text

    manager = signed_in(client, org, Role.lab_manager)
    page = manager.get(f"/ui/reports/{rid}")
    assert page.status_code == 200 and "Sign and finalize" in page.text
    bad = manager.post(f"/ui/reports/{rid}/finalize", data={"csrf_token": csrf_of(page.text), "password": "not it",
                                                            "meaning": "approved"})
    assert bad.status_code == 403 and 'id="refusal"' in bad.text
    signed = manager.post(f"/ui/reports/{rid}/finalize", data={
        "csrf_token": csrf_of(page.text), "password": PASSWORD, "meaning": "reviewed", "reason": "checked by hand"})
    assert signed.status_code == 303, signed.text
    page = manager.get(signed.headers["location"])
    assert "finalized" in page.text and f"by lab_manager of {org.slug}, meaning <strong>reviewed</strong>" in page.text
    assert "Sign and finalize" not in page.text and "Execute</button>" not in page.text
    pdf = manager.get(f"/ui/reports/executions/{execution.group(1)}/export?format=pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    report = client.get(f"/api/v1/reports/{rid}", headers=org.headers(Role.lab_manager)).json()
    assert report["status"] == "finalized" and report["signature"]["meaning"] == "reviewed"
    sealed(owner, org)
    entries = client.get("/api/v1/audit", params={"action": "deny", "entity_id": f"POST /ui/reports/{rid}/finalize"},
                         headers=org.headers(Role.auditor)).json()["items"]
    assert any(e["actor"]["id"] == str(org.users[Role.scientist][0]) and "cannot be its author" in e["reason"]
               for e in entries)
    done_by = {(e["action"], e["entity_type"]) for e in client.get(
        "/api/v1/audit", params={"limit": 200}, headers=org.headers(Role.auditor)).json()["items"]}
    assert {("create", "report_definition"), ("create", "report"), ("execute", "report_execution"),
            ("review", "report"), ("finalize", "report"), ("export", "report_export")} <= done_by


def test_a_technician_has_no_reports_and_is_refused_on_record(client, owner) -> None:
    org = make_org(owner, client)
    web = signed_in(client, org, Role.technician)
    assert 'href="/ui/reports"' not in web.get("/ui/inbox").text
    for path in ("/ui/reports", "/ui/reports/builder"):
        r = web.get(path)
        assert r.status_code == 403 and "may not" in r.text, path
    sealed(owner, org)
    entries = client.get("/api/v1/audit", params={"action": "deny", "entity_id": "GET /ui/reports"},
                         headers=org.headers(Role.auditor)).json()["items"]
    assert entries and entries[0]["actor"]["id"] == str(org.users[Role.technician][0])


def test_another_organizations_report_and_export_are_not_found(client, owner, platform) -> None:
    org = contamination_lab(client, owner, platform)
    sci = org.headers(Role.scientist)
    definition = next(d for d in client.get("/api/v1/reports/definitions", headers=sci).json()
                      if d["key"] == "science-tc-contamination")
    rid = client.post("/api/v1/reports", headers=sci, json={"definition_id": definition["id"]}).json()["id"]
    execution = client.post(f"/api/v1/reports/{rid}/execute", headers=sci).json()["id"]
    other = make_org(owner, client)
    web = signed_in(client, other, Role.scientist)
    for path in (f"/ui/reports/{rid}", f"/ui/reports/executions/{execution}/export?format=csv"):
        r = web.get(path)
        assert r.status_code == 404 and "Not found" in r.text, path
    page = web.get("/ui/reports")
    assert rid not in page.text
    r = web.post(f"/ui/reports/{rid}/execute", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 404
    assert web.get("/ui/reports/not-a-report").status_code == 404


def test_a_chart_that_names_a_url_is_not_drawn_and_fetches_nothing(client, owner, platform) -> None:
    org = contamination_lab(client, owner, platform)
    sci = org.headers(Role.scientist)
    chart = {"layer": [{"mark": "bar", "encoding": {"x": {"field": "operator", "type": "nominal"}}},
                       {"mark": "point", "data": {"url": "http://127.0.0.1:9/internal.json"},
                        "encoding": {"x": {"field": "a", "type": "nominal"}}}]}
    d = client.post("/api/v1/reports/definitions", headers=sci, json={
        "key": "tc-url", "title": "With a URL", "sql": SQL.replace("$min_vessels", "0"), "chart": chart})
    assert d.status_code == 201, d.text
    rid = client.post("/api/v1/reports", headers=sci, json={"definition_id": d.json()["id"]}).json()["id"]
    assert client.post(f"/api/v1/reports/{rid}/execute", headers=sci).status_code == 200
    page = signed_in(client, org, Role.scientist).get(f"/ui/reports/{rid}")
    assert page.status_code == 200 and 'id="chart-problem"' in page.text
    assert "External data url not allowed" in page.text and 'id="result"' in page.text
