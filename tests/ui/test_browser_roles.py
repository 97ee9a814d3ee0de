"""In real headless Chromium: the auditor's, analyst's and admin's pages, and axe-core (vendored in tests/ui/vendor,
run in the same browser) over every main page, with no serious or critical violation. Screenshots into docs/ui/."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from domain.roles import Role
from tests.support import PASSWORD
from tests.ui.conftest import screenshot
from tests.ui.test_browser import launch_two_steps
from tests.ui.test_role_pages import lake_table, sealed

pytestmark = pytest.mark.usefixtures("chromium")
VENDOR = Path(__file__).resolve().parent / "vendor"


def axe_source() -> str:
    manifest = json.loads((VENDOR / "ASSETS.json").read_text())
    (asset,) = manifest["assets"]
    content = (VENDOR / asset["file"]).read_bytes()
    assert hashlib.sha256(content).hexdigest() == asset["sha256"], "axe.min.js is the pinned file"
    return content.decode()


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations of the page as it is, one line each."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=axe_source())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes'][:3]]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def log_in(page: Any, base: str, email: str, landing: str) -> None:
    page.goto(f"{base}/ui/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(landing))


def test_an_auditor_filters_by_a_persons_email_verifies_and_exports(page, web_url, client, owner, org_a, tmp_path):
    admin = client.get("/api/v1/members", headers=org_a.headers(Role.admin))
    assert admin.status_code == 200
    key = client.post("/api/v1/apikeys", json={"name": "browser audit", "role": "analyst"},
                      headers=org_a.headers(Role.admin))
    assert key.status_code == 201
    sealed(owner, org_a)
    log_in(page, web_url, org_a.users[Role.auditor][1], r"/ui/(runs|audit)")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    page.wait_for_url(f"{web_url}/ui/audit")
    page.get_by_label("Person (name or email)").fill(org_a.users[Role.admin][1])
    page.get_by_label("Entity type").fill("api_key")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"person="))
    rows = page.locator("table.audit > tbody > tr[id^=entry-]")
    assert rows.count() >= 1
    assert all(f"admin of {org_a.slug}" in rows.nth(i).inner_text() for i in range(rows.count()))
    changes = page.locator("table.audit tr.changes").first
    changes.get_by_text("Changes").click()
    assert "browser audit" in changes.locator("table.diff").inner_text()
    screenshot(page, "audit-log")
    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    path = tmp_path / "audit.csv"
    info.value.save_as(path)
    exported = list(csv.DictReader(path.open()))
    assert exported and {r["actor_id"] for r in exported} == {str(org_a.users[Role.admin][0])}
    page.get_by_role("link", name="Verify the chain").click()
    result = page.locator("#verify-result")
    result.wait_for()
    assert result.inner_text().startswith("Intact.")
    screenshot(page, "audit-verified")


def test_an_analyst_runs_a_query_and_downloads_csv(page, web_url, settings, org_a, tmp_path):
    name = lake_table(settings, org_a, rows=5)
    log_in(page, web_url, org_a.users[Role.analyst][1], r"/ui/lake")
    page.locator(f"#table-{name} summary").click()
    assert "AU" in page.locator(f"#table-{name}").inner_text()  # the unit beside the label
    page.get_by_label(re.compile("^SQL")).fill(f"SELECT strain, od600 FROM {name} ORDER BY strain")
    page.get_by_role("button", name="Run").click()
    page.locator("#query-status").wait_for()
    assert page.locator("#query-status").inner_text().startswith("5 rows")
    assert page.get_by_role("img", name=re.compile("od600 by strain")).is_visible()
    screenshot(page, "lake-console")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download CSV").click()
    path = tmp_path / "q.csv"
    info.value.save_as(path)
    assert [r["strain"] for r in csv.DictReader(path.open())] == [f"AGL{i}" for i in range(5)]


def test_a_technician_cannot_open_the_admin_pages_and_it_is_on_record(page, web_url, client, owner, org_a):
    log_in(page, web_url, org_a.users[Role.technician][1], r"/ui/inbox")
    assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").count() == 0
    response = page.goto(f"{web_url}/ui/admin/members")
    assert response.status == 403
    assert page.get_by_role("heading", name="Not allowed").is_visible()
    sealed(owner, org_a)
    entries = client.get("/api/v1/audit", params={"action": "deny", "entity_id": "GET /ui/admin/members",
                                                  "actor": org_a.users[Role.technician][1]},
                         headers=org_a.headers(Role.auditor)).json()["items"]
    assert entries and "members.read" in entries[0]["reason"]


def test_an_auditor_cannot_see_another_organizations_record(page, web_url, org_a, org_b):
    log_in(page, web_url, org_b.users[Role.auditor][1], r"/ui/(runs|audit)")
    member = org_a.users[Role.technician][0]
    response = page.goto(f"{web_url}/ui/audit/state?entity_type=membership&entity_id={member}")
    assert response.status == 404
    assert org_a.slug not in page.content()


def test_every_main_page_has_no_serious_accessibility_violation(page, web_url, client, owner, org_a, settings):
    task = launch_two_steps(client, owner, org_a)
    lake_table(settings, org_a)
    page.set_content('<html lang="en"><title>t</title><main><img src="x.png"><input type="text"></main></html>')
    assert serious_violations(page), "the checker finds an unlabelled image and field"
    found: dict[str, list[str]] = {}
    page.goto(f"{web_url}/ui/login")
    found["login"] = serious_violations(page)
    for role, paths in ((Role.technician, ["/ui/inbox", f"/ui/tasks/{task['id']}"]),
                        (Role.lab_manager, ["/ui/runs"]),
                        (Role.auditor, ["/ui/audit", "/ui/audit/verify",
                                        f"/ui/audit/state?entity_type=membership&entity_id="
                                        f"{org_a.users[Role.technician][0]}"]),
                        (Role.analyst, ["/ui/lake"]),
                        (Role.admin, ["/ui/admin/members", "/ui/admin/keys"])):
        page.context.clear_cookies()
        log_in(page, web_url, org_a.users[role][1], r"/ui/")
        for path in paths:
            response = page.goto(web_url + path)
            assert response.status == 200, path
            if path == "/ui/lake":
                page.get_by_label(re.compile("^SQL")).fill("SELECT range AS n, range * range AS square FROM range(8)")
                page.get_by_role("button", name="Run").click()
                page.locator("#query-status").wait_for()
            found[path] = serious_violations(page)
            if path.startswith("/ui/audit/state"):
                screenshot(page, "audit-state")
            elif path == "/ui/admin/members":
                screenshot(page, "admin-members")
            elif path == "/ui/admin/keys":
                screenshot(page, "admin-keys")
    assert {p: v for p, v in found.items() if v} == {}
