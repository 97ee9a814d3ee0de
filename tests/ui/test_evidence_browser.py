"""In real headless Chromium: a technician attaches a photo on the task page (the drop zone's file input; the
camera input asks a phone or tablet for its camera) and completes the task with it."""

from __future__ import annotations

import re

import pytest

from domain.roles import Role
from tests.evidence.support import ELF, png
from tests.runs.conftest import wait_for
from tests.runs.support import launch_with_open_task
from tests.ui.conftest import screenshot
from tests.ui.test_browser import log_in

pytestmark = pytest.mark.usefixtures("chromium")


def test_a_technician_attaches_a_photo_and_completes_the_task_with_it(page, web_url, client, owner, org_a):
    _, task = launch_with_open_task(client, owner, org_a, "web-evidence")
    log_in(page, web_url, org_a.users[Role.technician][1])
    page.wait_for_url(f"{web_url}/ui/inbox")
    page.goto(f"{web_url}/ui/tasks/{task['id']}")
    camera = page.get_by_label("Take a photo")
    assert camera.get_attribute("accept") == "image/*" and camera.get_attribute("capture") is not None

    # A file that is no photo is refused, with the reason, where it would have been listed.
    page.get_by_label("Drop a photo or a file here").set_input_files(
        files=[{"name": "balance.jpg", "mimeType": "image/jpeg", "buffer": ELF}])
    page.get_by_role("alert").filter(has_text="Not attached").wait_for()
    assert "application/x-executable" in page.get_by_role("alert").inner_text()

    photo = png(77)
    page.get_by_label("Drop a photo or a file here").set_input_files(
        files=[{"name": "balance display.png", "mimeType": "image/png", "buffer": photo}])
    link = page.get_by_role("link", name="balance display.png")
    link.wait_for()
    evidence_id = re.search(r"/evidence/([0-9a-f-]{36})/content", link.get_attribute("href") or "").group(1)
    download = page.request.get(f"{web_url}{link.get_attribute('href')}")
    assert download.status == 200 and download.body() == photo
    screenshot(page, "task-evidence")

    page.get_by_label("Mass (g)").fill("12.5")
    page.get_by_label("Balance calibrated today").check()
    page.get_by_role("button", name="Complete").click()
    page.get_by_role("heading", name="Completed").wait_for()

    shown = client.get(f"/api/v1/evidence/{evidence_id}", headers=org_a.headers(Role.auditor)).json()
    assert shown["filename"] == "balance display.png" and shown["content_type"] == "image/png"
    assert [(x["target_type"], x["target_id"]) for x in shown["links"]] == [("task", task["id"])]
    entries = wait_for(lambda: client.get("/api/v1/audit", params={"action": "complete", "entity_id": task["id"]},
                                          headers=org_a.headers(Role.auditor)).json()["items"])  # once sealed
    assert entries[0]["after"]["evidence_sha256"] == {evidence_id: shown["sha256"]}
