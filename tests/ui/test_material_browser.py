"""In real headless Chromium: the lab's material — a technician finds a sample by the code typed into the header's
box (as a scanner types it) and moves it; a lab manager archives and restores a registry record with a reason;
another organization's record is not found; a technician cannot reach the registry's forms (on record); axe-core
finds no serious violation on the material pages nor on the lab manager's pages. Screenshots into docs/ui/."""

from __future__ import annotations

import re
import uuid

import pytest

from domain.roles import Role
from tests.ui.conftest import screenshot
from tests.ui.test_browser import launch_two_steps
from tests.ui.test_browser_roles import log_in, serious_violations
from tests.ui.test_manager import open_task, reviewed_protocol
from tests.ui.test_role_pages import sealed

pytestmark = pytest.mark.usefixtures("chromium")


def location(client, org, name: str) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/registry/location", headers=org.headers(Role.lab_manager),
                    json={"name": f"{name} {uuid.uuid4().hex[:6]}", "attributes": {"level": "site"}})
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def sample(client, org) -> dict:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/samples", headers={**org.headers(Role.technician), "X-Request-ID": str(uuid.uuid4())},
                    json={"sample_type": "culture", "name": f"overnight culture {uuid.uuid4().hex[:6]}"})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_technician_finds_a_sample_by_code_and_moves_it(page, web_url, client, org_a):
    cold = location(client, org_a, "Cold room")
    made = sample(client, org_a)
    derived = client.post("/api/v1/samples/derive", headers={**org_a.headers(Role.technician),
                                                             "X-Request-ID": str(uuid.uuid4())},
                          json={"parent_ids": [made["id"]], "operation": "aliquot", "count": 2})
    assert derived.status_code == 201, derived.text
    log_in(page, web_url, org_a.users[Role.technician][1], r"/ui/inbox")
    page.get_by_label("Code to find (type or scan a label)").fill(made["code"].lower())
    page.get_by_label("Code to find (type or scan a label)").press("Enter")
    page.wait_for_url(f"{web_url}/ui/samples/{made['id']}")
    assert page.get_by_role("heading", level=1).inner_text().startswith(made["code"])
    page.get_by_label("To location").select_option(cold)
    page.get_by_role("button", name="Move").click()
    error = page.locator("#move-reason-error")  # no reason: the server's message beside the field
    error.wait_for()
    page.locator("#move-location").select_option(cold)
    page.locator("#move-reason").fill("kept cold until plating")
    page.get_by_role("button", name="Move").click()
    page.wait_for_url(re.compile(r"\?done=moved"))
    assert "Cold room" in page.locator("#sample-location").inner_text() and page.locator("#refusal").count() == 0
    assert "kept cold until plating" in page.locator("#custody").inner_text()
    page.locator("#status-new").select_option("in_use")
    page.locator("#status-reason").fill("plating today")
    page.get_by_role("button", name="Change the status").click()
    page.wait_for_url(re.compile(r"\?done=status"))
    assert page.locator("#sample-status").inner_text() == "in use"
    assert page.locator("#descendants").get_by_role("link").count() == 3  # the sample and its two aliquots
    screenshot(page, "sample")
    moves = client.get("/api/v1/audit", params={"entity_id": made["id"], "action": "move"},
                       headers=org_a.headers(Role.auditor)).json()["items"]
    assert moves and moves[0]["reason"] == "kept cold until plating"
    assert moves[0]["actor"]["id"] == str(org_a.users[Role.technician][0])


def test_a_manager_archives_and_restores_a_registry_record_with_a_reason(page, web_url, client, org_a):
    name = f"Walk-in freezer {uuid.uuid4().hex[:6]}"
    log_in(page, web_url, org_a.users[Role.lab_manager][1], r"/ui/inbox")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Material").click()
    page.get_by_role("navigation", name="Material").get_by_role("link", name="Storage locations").click()
    page.get_by_role("link", name="New location").click()
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create").click()
    error = page.locator("#a-level-error")  # a location needs its level: the server's message beside it
    error.wait_for()
    screenshot(page, "registry-refused")
    page.get_by_label("Level").select_option("site")
    page.get_by_label("Temperature (°C)").fill("-20")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(re.compile(r"\?done=created"))
    record = page.url.split("?")[0]
    assert page.get_by_role("img", name=re.compile("Label of LOC-")).is_visible()
    screenshot(page, "registry-record")
    page.get_by_role("button", name="Archive").click()  # no reason
    page.locator("#reason-archive-error").wait_for()
    page.get_by_label("Reason to archive it").fill("freezer decommissioned")
    page.get_by_role("button", name="Archive").click()
    page.wait_for_url(re.compile(r"\?done=archived"))
    assert page.locator("#archived-badge").is_visible()
    page.get_by_label("Reason to restore it").fill("freezer repaired")
    page.get_by_role("button", name="Restore").click()
    page.wait_for_url(re.compile(r"\?done=restored"))
    assert page.locator("#archived-badge").count() == 0
    page.goto(f"{web_url}/ui/registry/location?q={name.split()[-1]}")
    assert page.get_by_role("link", name=re.compile("^LOC-")).count() == 1
    screenshot(page, "registry-list")
    item = record.rsplit("/", 1)[1]
    entries = client.get("/api/v1/audit", params={"entity_id": item}, headers=org_a.headers(Role.auditor)).json()
    reasons = {(e["action"], e["reason"]) for e in entries["items"]}
    assert {("archive", "freezer decommissioned"), ("restore", "freezer repaired")} <= reasons


def test_another_organizations_record_is_not_found_and_a_technician_cannot_reach_the_forms(
        page, web_url, client, owner, org_a, org_b):
    theirs = location(client, org_a, "Their freezer")
    their_sample = sample(client, org_a)
    log_in(page, web_url, org_b.users[Role.lab_manager][1], r"/ui/inbox")
    for path in (f"/ui/registry/location/{theirs}", f"/ui/samples/{their_sample['id']}"):
        response = page.goto(web_url + path)
        assert response.status == 404, path
        assert page.get_by_role("heading", name="Not found").is_visible()
        assert "Their freezer" not in page.content() and their_sample["code"] not in page.content()
    page.context.clear_cookies()
    log_in(page, web_url, org_a.users[Role.technician][1], r"/ui/inbox")
    response = page.goto(f"{web_url}/ui/registry/location/new")
    assert response.status == 403 and page.get_by_role("heading", name="Not allowed").is_visible()
    sealed(owner, org_a)
    denied = client.get("/api/v1/audit", params={"action": "deny", "entity_id": "GET /ui/registry/location/new",
                                                 "actor": org_a.users[Role.technician][1]},
                        headers=org_a.headers(Role.auditor)).json()["items"]
    assert denied and "registry.write" in denied[0]["reason"]


def test_the_material_and_manager_pages_have_no_serious_accessibility_violation(page, web_url, client, owner, org_a):
    task = launch_two_steps(client, owner, org_a)
    made = sample(client, org_a)
    client.post("/api/v1/samples/derive", headers={**org_a.headers(Role.technician), "X-Request-ID": str(uuid.uuid4())},
                json={"parent_ids": [made["id"]], "operation": "subculture", "count": 1})
    place = location(client, org_a, "Growth room")
    batch = client.get("/api/v1/batches", params={"q": "B-7"}, headers=org_a.headers(Role.auditor)).json()["items"][0]
    key = reviewed_protocol(owner, org_a)  # an approval to look at: its weighing done, its review open
    run_id = client.post("/api/v1/runs", headers=org_a.headers(Role.lab_manager),
                         json={"protocol_key": key, "subjects": [{"type": "sample", "id": made["code"]}]}).json()["id"]
    weigh = open_task(client, org_a, run_id, "weigh")
    done = client.post(f"/api/v1/tasks/{weigh['id']}/complete", headers=org_a.headers(Role.technician),
                       json={"values": {"mass_g": 12.5}, "checklist": {"balance_calibrated": True}})
    assert done.status_code == 200, done.text
    review = open_task(client, org_a, run_id, "review", Role.lab_manager)
    found: dict[str, list[str]] = {}
    pages = {
        Role.technician: ["/ui/samples", f"/ui/samples/{made['id']}", "/ui/batches", f"/ui/batches/{batch['id']}",
                          "/ui/registry/location", f"/ui/registry/location/{place}", "/ui/notifications"],
        Role.lab_manager: ["/ui/registry/strain/new", f"/ui/registry/location/{place}/edit",
                           f"/ui/registry/location/{place}", f"/ui/samples/{made['id']}", f"/ui/batches/{batch['id']}",
                           "/ui/runs/new", f"/ui/runs/{task['run_id']}", "/ui/protocols",
                           f"/ui/protocols/{task['protocol_key']}", f"/ui/protocols/{key}/versions/1",
                           "/ui/protocols/new", f"/ui/approvals/{review['id']}", "/ui/notifications"],
    }
    shots = {f"/ui/batches/{batch['id']}": "batch", "/ui/samples": "samples", "/ui/runs/new": "run-launch",
             "/ui/protocols": "protocols"}
    for role, paths in pages.items():
        page.context.clear_cookies()
        log_in(page, web_url, org_a.users[role][1], r"/ui/")
        for path in paths:
            response = page.goto(web_url + path)
            assert response.status == 200, path
            found[f"{role.value} {path}"] = serious_violations(page)
            if role == Role.technician and path in shots:
                screenshot(page, shots[path])
            elif role == Role.lab_manager and path in shots:
                screenshot(page, shots[path])
    assert {p: v for p, v in found.items() if v} == {}
