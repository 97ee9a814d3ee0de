"""In real headless Chromium: the lab manager's and approver's pages against the real worker and Temporal — launch
and hold a run, sign an approval with the password re-entered (a wrong one refused), a new task in the inbox
without a reload, another organization's run not found. Each test saves screenshots of the pages it visits."""

from __future__ import annotations

import re
import uuid

import pytest

from domain.roles import Role
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol, one_task
from tests.support import PASSWORD, make_org
from tests.ui.conftest import screenshot
from tests.ui.test_browser import log_in

pytestmark = pytest.mark.usefixtures("chromium")


def reviewed_protocol(owner, org) -> str:  # type: ignore[no-untyped-def]
    """A protocol whose weighing a lab manager reviews (meaning `reviewed`): its key."""
    key = f"rev-{uuid.uuid4().hex[:6]}"
    document = one_task(key, due="PT2H")
    document["steps"].append({"key": "review", "kind": "approval", "title": "Review the weighing",
                              "roles": ["lab_manager"], "meaning": "reviewed"})
    approve_protocol(owner, org.id, document)
    return key


def open_task(client, org, run_id: str, step: str, role: Role = Role.technician) -> dict:  # type: ignore[no-untyped-def]
    return wait_for(lambda: [t for t in client.get("/api/v1/tasks", params={"run_id": run_id},
                                                   headers=org.headers(role)).json()
                             if t["step_key"] == step], timeout=30)[0]


def test_a_manager_launches_a_run_and_holds_it(page, web_url, client, owner, org_a):
    key = f"mgr-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due="PT2H"))
    log_in(page, web_url, org_a.users[Role.lab_manager][1])
    page.wait_for_url(f"{web_url}/ui/inbox")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Runs").click()
    page.get_by_role("link", name="Launch a run").click()
    page.get_by_label("Protocol version").select_option(f"{key}:1")
    page.get_by_label("Samples and batches").fill("sample S-2024-0042\nsample bad id!")
    page.get_by_label("Parameters").fill("medium_batch: MS-7\nvolume_ml: 250")
    page.get_by_role("button", name="Launch").click()
    error = page.locator("#subjects-error")
    error.wait_for()
    assert "line 2" in error.inner_text() and "pattern" in error.inner_text()  # the server's own message
    assert page.get_by_label("Samples and batches").get_attribute("aria-invalid") == "true"
    screenshot(page, "run-launch-refused")
    page.get_by_label("Samples and batches").fill("sample S-2024-0042\nbatch B-7")
    page.get_by_role("button", name="Launch").click()
    page.wait_for_url(re.compile(r"/ui/runs/[0-9a-f-]{36}\?done=launched"))
    run_id = page.url.split("/ui/runs/")[1].split("?")[0]
    facts = page.locator("dl.facts").inner_text()
    assert "sample S-2024-0042, batch B-7" in facts and "medium_batch: MS-7" in facts
    open_task(client, org_a, run_id, "weigh")
    page.reload()
    page.get_by_label("Reason to put on hold").fill("balance out for calibration")
    page.get_by_role("button", name="Put on hold").click()
    page.wait_for_url(re.compile(r"\?done=hold"))
    assert page.locator("#run-status").inner_text() == "on hold"
    timeline = page.locator("#timeline").inner_text()
    manager = f"lab_manager of {org_a.slug}"
    assert f"{manager}: launch the run" in timeline
    assert "open step “Weigh the sample” (weigh)" in timeline  # each line names the step and who
    assert f"{manager}: hold the run — balance out for calibration" in timeline
    page.get_by_label("Reason to resume").wait_for()  # on hold, the run offers resume and cancel
    screenshot(page, "run")
    run = client.get(f"/api/v1/runs/{run_id}", headers=org_a.headers(Role.lab_manager)).json()
    assert run["status"] == "on_hold" and run["status_reason"] == "balance out for calibration"
    assert run["parameters"] == {"medium_batch": "MS-7", "volume_ml": 250}


def test_an_approver_signs_with_the_password_and_a_wrong_one_is_refused(page, web_url, client, owner):
    org = make_org(owner, client)  # its own accounts: the wrong password counts towards their lockout only
    key = reviewed_protocol(owner, org)
    r = client.post("/api/v1/runs", headers=org.headers(Role.lab_manager),
                    json={"protocol_key": key, "subjects": [{"type": "sample", "id": "S-7"}]})
    run_id = r.json()["id"]
    weigh = open_task(client, org, run_id, "weigh")
    done = client.post(f"/api/v1/tasks/{weigh['id']}/complete", headers=org.headers(Role.technician),
                       json={"values": {"mass_g": 12.5}, "checklist": {"balance_calibrated": True}})
    assert done.status_code == 200, done.text
    review = open_task(client, org, run_id, "review", Role.lab_manager)
    log_in(page, web_url, org.users[Role.lab_manager][1])
    page.wait_for_url(f"{web_url}/ui/inbox")
    page.get_by_role("link", name="Review the weighing").click()
    page.wait_for_url(f"{web_url}/ui/approvals/{review['id']}")
    signed = page.get_by_role("region", name="What you sign")
    assert page.locator("#meaning").inner_text() == "reviewed"
    assert re.fullmatch(r"[0-9a-f]{64}", page.locator("#content-hash").inner_text())
    assert "Mass (g)" in signed.inner_text() and "12.5" in signed.inner_text()
    assert "Balance calibrated today" in signed.inner_text() and f"technician of {org.slug}" in signed.inner_text()
    screenshot(page, "approval")
    page.get_by_label("Your password, to sign").fill("not my password")
    page.get_by_role("button", name="Sign").click()
    refusal = page.locator("#refusal")
    refusal.wait_for()
    assert "the password is not correct" in refusal.inner_text()
    screenshot(page, "approval-refused")
    still = client.get(f"/api/v1/tasks/{review['id']}", headers=org.headers(Role.lab_manager)).json()
    assert still["status"] == "open"
    denied = client.get("/api/v1/audit", params={"action": "deny", "entity_id": f"POST /ui/approvals/{review['id']}"},
                        headers=org.headers(Role.auditor)).json()["items"]
    assert denied and "password is not correct" in denied[0]["reason"]
    page.get_by_label("Your password, to sign").fill(PASSWORD)
    page.get_by_role("button", name="Sign").click()
    page.wait_for_url(re.compile(r"\?signed=1"))
    assert page.locator("#approval-status").inner_text().startswith("approved by")
    run = wait_for(lambda: (d := client.get(f"/api/v1/runs/{run_id}", headers=org.headers(Role.lab_manager))
                            .json())["status"] == "completed" and d)
    assert run["status"] == "completed"


def test_a_new_task_appears_in_the_inbox_without_a_reload(page, web_url, client, owner):
    org = make_org(owner, client)
    key = f"live-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, one_task(key, due="PT2H"))
    log_in(page, web_url, org.users[Role.technician][1])
    page.wait_for_url(f"{web_url}/ui/inbox")
    page.get_by_text("Nothing waits for you here.").wait_for()
    page.evaluate("window.stillTheSamePage = true")
    r = client.post("/api/v1/runs", headers=org.headers(Role.lab_manager),
                    json={"protocol_key": key, "subjects": [{"type": "sample", "id": "S-LIVE-1"}]})
    task = open_task(client, org, r.json()["id"], "weigh")
    page.locator(f"#task-{task['id']}").wait_for()  # the list refreshes itself
    assert page.evaluate("window.stillTheSamePage") is True  # no reload, no navigation
    assert "S-LIVE-1" in page.locator(f"#task-{task['id']}").inner_text()


def test_a_run_of_another_organization_is_not_found(page, web_url, client, owner, org_a, org_b):
    key = f"iso-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due=None))
    r = client.post("/api/v1/runs", headers=org_a.headers(Role.lab_manager), json={"protocol_key": key})
    run_id = r.json()["id"]
    log_in(page, web_url, org_b.users[Role.lab_manager][1])
    page.wait_for_url(f"{web_url}/ui/inbox")
    response = page.goto(f"{web_url}/ui/runs/{run_id}")
    assert response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible() and key not in page.content()
    entries = client.get("/api/v1/audit", params={"action": "deny", "entity_id": f"GET /ui/runs/{run_id}"},
                         headers=org_b.headers(Role.auditor)).json()["items"]
    assert entries, "the attempt is on record in the visitor's organization"


def test_an_author_sees_the_compilers_problem_where_it_is(page, web_url, client, owner, org_a):
    log_in(page, web_url, org_a.users[Role.scientist][1])
    page.wait_for_url(f"{web_url}/ui/inbox")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Protocols").click()
    page.get_by_role("link", name="New protocol").click()
    key = f"ed-{uuid.uuid4().hex[:6]}"
    editor = page.get_by_label("Protocol document (YAML)")
    editor.fill(editor.input_value().replace("my-protocol", key).replace("max: 1000", "max: -1"))
    page.get_by_role("button", name="Check").click()
    problems = page.locator("#problems")
    problems.wait_for()
    assert "steps[0].form.fields[0].max" in problems.inner_text()
    assert editor.get_attribute("aria-invalid") == "true"
    screenshot(page, "protocol-editor")
    editor.fill(editor.input_value().replace("max: -1", "max: 1000"))
    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url(re.compile(rf"/ui/protocols/{key}/versions/1"))
    page.get_by_role("button", name="Save and submit for review").click()
    page.get_by_text("Submitted for review.").wait_for()
    assert page.locator("#version-status").inner_text() == "in review"
    screenshot(page, "protocol-in-review")
