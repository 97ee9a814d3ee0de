"""The task page's evidence routes without a browser: the form's token, another organization's task or file
(404, on record), a download on record with its hash, refusals as a fragment for htmx."""

from __future__ import annotations

import uuid

from domain.roles import Role
from tests.evidence.support import ELF, audit_entries, png, rows_of, uploaded
from tests.runs.support import launch_with_open_task
from tests.support import PASSWORD, make_org
from tests.ui.conftest import csrf_of, log_in, pages_client


def _signed_in(client, org, role: Role = Role.technician):  # type: ignore[no-untyped-def]
    web = pages_client(client)
    assert log_in(web, org.users[role][1], PASSWORD).status_code == 303
    return web, csrf_of(web.get("/ui/inbox").text)


def test_an_upload_needs_the_pages_token_and_a_task_of_the_organization(client, owner):
    org, other = make_org(owner, client), make_org(owner, client)
    _, task = launch_with_open_task(client, owner, org, "web-ev")
    _, foreign = launch_with_open_task(client, owner, other, "web-ev")
    web, token = _signed_in(client, org)
    url = f"/ui/tasks/{task['id']}/evidence"
    files = {"file": ("plate.png", png(51), "image/png")}
    forged = web.post(url, files=files, data={"csrf_token": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert rows_of(owner, org) == 0
    elsewhere = web.post(f"/ui/tasks/{foreign['id']}/evidence", files=files, data={"csrf_token": token})
    assert elsewhere.status_code == 404 and rows_of(owner, org) == rows_of(owner, other) == 0
    assert web.post(f"/ui/tasks/{uuid.uuid4()}/evidence", files=files, data={"csrf_token": token}).status_code == 404

    kept = web.post(url, files=files, data={"csrf_token": token})
    assert kept.status_code == 201 and 'name="evidence"' in kept.text and "plate.png" in kept.text
    refused = web.post(url, files={"file": ("plate.png", ELF, "image/png")}, data={"csrf_token": token},
                       headers={"HX-Request": "true"})
    assert refused.status_code == 200 and "Not attached" in refused.text and 'role="alert"' in refused.text
    assert rows_of(owner, org) == 1
    stranger = pages_client(client).post(url, files=files, data={"csrf_token": token})
    assert stranger.status_code == 303 and stranger.headers["location"].startswith("/ui/login")


def test_a_download_from_the_page_is_on_record_and_another_organizations_file_is_not_found(client, owner):
    org, other = make_org(owner, client), make_org(owner, client)
    mine, theirs = uploaded(client, org, png(52)), uploaded(client, other, png(53))
    web, _ = _signed_in(client, org, Role.auditor)
    r = web.get(f"/ui/evidence/{mine['id']}/content")
    assert r.status_code == 200 and r.content == png(52) and r.headers["etag"] == f'"{mine["sha256"]}"'
    [entry] = audit_entries(owner, org, "download", mine["id"])
    assert entry["after"]["sha256"] == mine["sha256"]
    assert web.get(f"/ui/evidence/{theirs['id']}/content").status_code == 404
    assert audit_entries(owner, other, "download", theirs["id"]) == []
    analyst, _ = _signed_in(client, org, Role.analyst)
    assert analyst.get(f"/ui/evidence/{mine['id']}/content").status_code == 403
