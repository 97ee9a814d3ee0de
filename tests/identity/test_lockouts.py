"""Guessing: signature passwords count towards the account's lockout, and refusals answered 429 are on record
once per lockout (the org's log when the account is known, the platform's `login_lockouts` always)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from core.db import TenantSessions
from domain.roles import Role
from tests.protocols.test_lifecycle import approve_body, call, create, new_key
from tests.support import PASSWORD, Org, make_org


def _in_review(client: TestClient, org: Org) -> str:
    key = new_key()
    create(client, org, key=key)
    assert call(client, org, Role.scientist, "POST", f"{key}/versions/1/submit").status_code == 200
    return key


def _login(client: TestClient, email: str, password: str = PASSWORD) -> int:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password}).status_code


def lockout_entries(client: TestClient, org: Org) -> list[dict[str, Any]]:
    """The org's lockout entries, once there is one (the background sealer may be linking the newest)."""
    deadline = time.monotonic() + 10
    while True:
        r = client.get("/api/v1/audit", params={"action": "refuse", "entity_type": "auth_session"},
                       headers=org.headers(Role.auditor))
        assert r.status_code == 200, r.text
        if r.json()["items"] or time.monotonic() > deadline:
            return list(r.json()["items"])
        time.sleep(0.05)


def _lockouts(owner: TenantSessions, subject: str) -> list[Any]:
    with owner.begin(None) as s:
        return s.execute(text("SELECT scope, attempted_email FROM login_lockouts WHERE subject = :s"),
                         {"s": subject}).all()


def test_wrong_signature_passwords_lock_the_account(client: TestClient, owner: TenantSessions) -> None:
    org = make_org(owner, client)
    key = _in_review(client, org)
    approve = f"{key}/versions/1/approve"
    for _ in range(5):  # the session settings lock an account after 5 failures
        r = call(client, org, Role.lab_manager, "POST", approve, json=approve_body("a wrong guess"))
        assert r.status_code == 403 and "password" in r.json()["detail"], r.text
    # The right password no longer signs, and the account cannot log in either.
    r = call(client, org, Role.lab_manager, "POST", approve, json=approve_body())
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0, r.text
    assert call(client, org, Role.scientist, "GET", f"{key}/versions/1").json()["status"] == "in_review"
    assert _login(client, org.users[Role.lab_manager][1]) == 429
    assert _login(client, org.users[Role.owner][1]) == 200  # another account is not affected
    # The lockout is on record in the org's log, once.
    [entry] = lockout_entries(client, org)
    assert entry["actor"]["id"] == str(org.users[Role.lab_manager][0])
    assert entry["after"]["locked_out"] == "account" and "too many failed" in entry["reason"]
    assert entry["context"]["request_id"]


def test_refusals_answered_429_are_on_record_once_per_lockout(client: TestClient, owner: TenantSessions) -> None:
    org = make_org(owner, client)
    email = org.users[Role.technician][1]
    for _ in range(5):
        assert _login(client, email, "a wrong guess") == 401
    assert [_login(client, email) for _ in range(3)] == [429, 429, 429]
    [entry] = lockout_entries(client, org)
    assert entry["actor"]["id"] == str(org.users[Role.technician][0])
    assert entry["after"]["locked_out"] == "account" and entry["severity"] == "warning"
    assert [tuple(r) for r in _lockouts(owner, email.lower())] == [("account", email)]

    # An unknown email belongs to no organization: its lockout is on the platform's record only.
    unknown = f"nobody-{secrets.token_hex(4)}@nowhere.example"
    for _ in range(5):
        assert _login(client, unknown, "a wrong guess") == 401
    assert [_login(client, unknown) for _ in range(2)] == [429, 429]
    assert [tuple(r) for r in _lockouts(owner, unknown)] == [("account", unknown)]
