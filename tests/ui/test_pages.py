"""The pages without a browser: assets pinned, sessions (cookie flags, CSRF, idle timeout, logout), refusals
that say why, are on record, and never answer 500."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from sqlalchemy import text

from domain.roles import Role
from tests.support import PASSWORD, make_org
from tests.ui.conftest import csrf_of, log_in, pages_client

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"


def test_vendored_assets_match_their_manifest_and_are_served_as_is(client):
    manifest = json.loads((STATIC / "ASSETS.json").read_text())
    assert manifest["assets"], "the manifest lists the vendored assets"
    for asset in manifest["assets"]:
        content = (STATIC / asset["file"]).read_bytes()
        assert hashlib.sha256(content).hexdigest() == asset["sha256"], asset["file"]
        served = client.get(f"/ui/static/{asset['file']}")
        assert served.status_code == 200 and served.content == content


def test_the_root_opens_the_pages_and_a_stranger_is_sent_to_log_in(client):
    web = pages_client(client)
    assert web.get("/").headers["location"] == "/ui/"
    r = web.get("/ui/inbox")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    r = web.get("/ui/login")
    assert r.status_code == 200 and 'for="email"' in r.text and 'for="password"' in r.text


def test_login_sets_an_httponly_samesite_cookie_and_needs_the_forms_token(client, org_a):
    web = pages_client(client)
    email = org_a.users[Role.technician][1]
    refused = web.post("/ui/login", data={"email": email, "password": PASSWORD, "csrf_token": "forged"})
    assert refused.status_code == 403 and "ft_session" not in refused.headers.get("set-cookie", "")
    r = log_in(web, email, PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/ui/inbox"  # where the form was sent from
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("ft_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # http here
    inbox = web.get("/ui/inbox")
    assert inbox.status_code == 200 and "Inbox" in inbox.text


def test_a_wrong_password_says_so_and_is_on_record(client, owner):
    org = make_org(owner, client)
    web = pages_client(client)
    r = log_in(web, org.users[Role.technician][1], "not the password")
    assert r.status_code == 401 and "Wrong email or password." in r.text
    entries = client.get("/api/v1/audit", params={"action": "login"}, headers=org.headers(Role.auditor)).json()
    assert any(e["reason"] == "wrong email or password" for e in entries["items"])


def test_a_person_of_several_organizations_chooses_one(client, owner, org_a):
    other = make_org(owner, client)
    admin = {**other.headers(Role.admin)}
    email = org_a.users[Role.analyst][1]
    invited = client.post("/api/v1/members", headers=admin, json={
        "email": email, "display_name": "Invited", "password": "unused for an existing account", "role": "technician"})
    assert invited.status_code in (200, 201), invited.text
    web = pages_client(client)
    assert log_in(web, email, PASSWORD, org=other.slug).status_code == 303  # accepts the invitation
    web = pages_client(client)
    r = log_in(web, email, PASSWORD)
    assert r.status_code == 422 and other.slug in r.text and org_a.slug in r.text and 'id="org"' in r.text
    assert log_in(web, email, PASSWORD, org=org_a.slug).status_code == 303


def test_a_post_without_the_csrf_token_is_refused_and_on_record(client, org_a):
    web = pages_client(client)
    log_in(web, org_a.users[Role.technician][1], PASSWORD)
    task = uuid.uuid4()
    r = web.post(f"/ui/tasks/{task}/claim", data={"from": "inbox"})
    assert r.status_code == 403 and "CSRF" in r.text
    entries = client.get("/api/v1/audit", params={"action": "deny", "entity_id": f"POST /ui/tasks/{task}/claim"},
                         headers=org_a.headers(Role.auditor)).json()["items"]
    assert entries and "CSRF" in entries[0]["reason"]


def test_an_idle_session_ends_and_logout_revokes_it(client, owner, org_a):
    web = pages_client(client)
    log_in(web, org_a.users[Role.technician][1], PASSWORD)
    token = web.cookies["ft_session"]
    assert web.get("/ui/inbox").status_code == 200
    with owner.begin(None) as s:
        s.execute(text("UPDATE auth_sessions SET last_seen_at = now() - interval '2 hours'"
                       " WHERE org_id = :o AND last_seen_at IS NOT NULL AND revoked_at IS NULL"), {"o": org_a.id})
    r = web.get("/ui/inbox")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    log_in(web, org_a.users[Role.technician][1], PASSWORD)
    token = web.cookies["ft_session"]
    inbox = web.get("/ui/inbox")
    r = web.post("/ui/logout", data={"csrf_token": csrf_of(inbox.text)})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_refusals_are_pages_never_500(client, org_a):
    web = pages_client(client)
    log_in(web, org_a.users[Role.technician][1], PASSWORD)
    token = csrf_of(web.get("/ui/inbox").text)
    assert web.get(f"/ui/tasks/{uuid.uuid4()}").status_code == 404
    assert web.get("/ui/tasks/not-an-id").status_code == 404
    assert web.get("/ui/nowhere").status_code == 404
    assert web.get("/ui/inbox", params={"page": "x"}).status_code == 404
    assert web.post(f"/ui/tasks/{uuid.uuid4()}/complete", data={"csrf_token": token}).status_code == 404
    assert web.post("/ui/login", content=b"\xff\xfe", headers={"content-type": "multipart/form-data"}).status_code < 500
    assert web.post("/ui/login", data={"email": "x" * 5000, "password": "y", "csrf_token": "z"}).status_code == 403
    # A role without the permission: the page says why, and the denial is on record.
    guest = pages_client(client)
    log_in(guest, org_a.users[Role.auditor][1], PASSWORD)
    r = guest.get("/ui/inbox")
    assert r.status_code == 403 and "may not do this (tasks.read)" in r.text
    entries = client.get("/api/v1/audit", params={"action": "deny", "entity_id": "GET /ui/inbox"},
                         headers=org_a.headers(Role.auditor)).json()["items"]
    assert entries and entries[0]["actor"]["id"] == str(org_a.users[Role.auditor][0])
