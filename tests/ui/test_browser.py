"""In real headless Chromium (Playwright driving Debian's `chromium`): a technician's work through the pages,
against the real worker and Temporal. Each test saves screenshots of the pages it visits into docs/ui/."""

from __future__ import annotations

import re
import uuid

import pytest

from domain.roles import Role
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol, launch_with_open_task, one_task
from tests.support import PASSWORD, make_org
from tests.ui.conftest import screenshot

pytestmark = pytest.mark.usefixtures("chromium")


def log_in(page, base: str, email: str, password: str = PASSWORD) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/ui/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def launch_two_steps(client, owner, org) -> dict:  # type: ignore[no-untyped-def]
    """A run on a sample of a protocol whose weighing is followed by a labelling step: its first task."""
    key = f"web-{uuid.uuid4().hex[:6]}"
    document = one_task(key, due="PT2H")
    document["steps"].append({"key": "label", "kind": "task", "title": "Label the tube", "roles": ["technician"],
                              "form": {"key": f"{key.replace('-', '_')}_label", "fields": [
                                  {"key": "tube", "label": "Tube", "type": "sample_ref"}]}})
    approve_protocol(owner, org.id, document)
    r = client.post("/api/v1/runs", headers=org.headers(Role.lab_manager),
                    json={"protocol_key": key, "subjects": [{"type": "sample", "id": "S-2024-0042"}]})
    assert r.status_code == 201, r.text
    return wait_for(lambda: client.get("/api/v1/tasks", params={"run_id": r.json()["id"]},
                                       headers=org.headers(Role.technician)).json(), timeout=30)[0]


def test_a_technician_completes_a_task_after_fixing_a_validation_error(page, web_url, client, owner, org_a):
    task = launch_two_steps(client, owner, org_a)
    page.goto(f"{web_url}/ui/login")
    screenshot(page, "login")
    log_in(page, web_url, org_a.users[Role.technician][1])
    page.wait_for_url(f"{web_url}/ui/inbox")
    row = page.locator(f"#task-{task['id']}")
    row.get_by_role("button", name="Claim Weigh the sample").click()  # htmx swaps the row in place
    row.get_by_role("button", name="Release Weigh the sample").wait_for()
    screenshot(page, "inbox")
    row.get_by_role("link", name="Weigh the sample").click()
    page.wait_for_url(re.compile(r"/ui/tasks/"))
    page.get_by_label("Mass (g)").fill("1500")
    page.get_by_label("Balance calibrated today").check()
    page.get_by_role("button", name="Complete").click()
    error = page.locator("#field-mass_g-error")
    error.wait_for()
    assert "above max 1000" in error.inner_text()  # the server's own message, beside the field
    assert page.get_by_label("Mass (g)").get_attribute("aria-invalid") == "true"
    screenshot(page, "task-refused")
    page.get_by_label("Mass (g)").fill("12.5")
    page.get_by_label("Balance calibrated today").check()
    page.get_by_role("button", name="Complete").click()
    page.get_by_role("heading", name="Completed").wait_for()
    page.get_by_role("link", name="Label the tube").wait_for()  # what opens next
    screenshot(page, "task-completed")
    done = client.get(f"/api/v1/tasks/{task['id']}", headers=org_a.headers(Role.technician)).json()
    assert done["status"] == "completed" and done["closed_by_display"] == f"technician of {org_a.slug}"


def test_a_technician_cannot_open_another_organizations_task(page, web_url, client, owner, org_a, org_b):
    _, task = launch_with_open_task(client, owner, org_a, "web-other")
    log_in(page, web_url, org_b.users[Role.technician][1])
    page.wait_for_url(f"{web_url}/ui/inbox")
    response = page.goto(f"{web_url}/ui/tasks/{task['id']}")
    assert response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()
    assert "Weigh the sample" not in page.content()
    screenshot(page, "not-found")
    entries = client.get("/api/v1/audit", params={"action": "deny", "entity_id": f"GET /ui/tasks/{task['id']}"},
                         headers=org_b.headers(Role.auditor)).json()["items"]
    assert entries, "the attempt is on record in the visitor's organization"


def test_a_post_without_a_csrf_token_is_refused_and_on_record(page, web_url, client, owner, org_a):
    _, task = launch_with_open_task(client, owner, org_a, "web-csrf")
    log_in(page, web_url, org_a.users[Role.technician][1])
    page.wait_for_url(f"{web_url}/ui/inbox")
    # The same browser, its session cookie sent, but a form without the page's token (as another site would post).
    r = page.request.post(f"{web_url}/ui/tasks/{task['id']}/claim", form={"from": "inbox"})
    assert r.status == 403 and "CSRF" in r.text()
    still = client.get(f"/api/v1/tasks/{task['id']}", headers=org_a.headers(Role.technician)).json()
    assert still["claimed_by"] is None
    entries = client.get("/api/v1/audit", params={"action": "deny", "entity_id": f"POST /ui/tasks/{task['id']}/claim"},
                         headers=org_a.headers(Role.auditor)).json()["items"]
    assert entries and "CSRF" in entries[0]["reason"]


def test_a_wrong_password_shows_an_error(page, web_url, client, owner):
    org = make_org(owner, client)  # its own accounts: the failed login counts towards their lockout only
    log_in(page, web_url, org.users[Role.technician][1], "not the password")
    alert = page.get_by_role("alert")
    assert alert.inner_text() == "Wrong email or password."
    assert page.url.endswith("/ui/login")
    screenshot(page, "login-refused")


def test_a_lab_manager_sees_what_each_run_waits_for(page, web_url, client, owner, org_a):
    task = launch_two_steps(client, owner, org_a)
    log_in(page, web_url, org_a.users[Role.lab_manager][1])
    page.wait_for_url(f"{web_url}/ui/inbox")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Runs").click()
    page.wait_for_url(f"{web_url}/ui/runs")
    row = page.locator(f"#run-{task['run_id']}")
    assert "sample S-2024-0042" in row.inner_text() and "running" in row.inner_text()
    row.get_by_role("link", name="Weigh the sample").wait_for()  # what it waits for, until its due time
    assert "until" in row.inner_text()
    screenshot(page, "runs-board")
    page.set_viewport_size({"width": 600, "height": 900})  # a tablet held upright: one card per run
    screenshot(page, "runs-board-narrow")
