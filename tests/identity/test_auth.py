"""Login, logout, lockout, and what failed logins leave on record."""

from __future__ import annotations

from dataclasses import replace

from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import Platform
from domain.roles import Role
from tests.support import PASSWORD, make_org


def test_logout_revokes_the_token(client, owner):
    org = make_org(owner, client)
    h = org.headers(Role.scientist)
    assert client.get("/api/v1/me", headers=h).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=h).status_code == 204
    r = client.get("/api/v1/me", headers=h)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_garbage_tokens_are_401(client):
    for h in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer ftk_nope"},
              {"Authorization": "Bearer ftak_x_y"}):
        assert client.get("/api/v1/me", headers=h).status_code == 401


def test_failed_logins_are_audited_and_lock_the_account(client, owner):
    org = make_org(owner, client)
    email = org.users[Role.technician][1]
    for _ in range(5):
        r = client.post("/api/v1/auth/login", json={"email": email, "password": "wrong password!"})
        assert r.status_code == 401 and r.json()["detail"] == "login failed"
    r = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    failures = client.get("/api/v1/audit", params={"action": "login", "severity": "warning"},
                          headers=org.headers(Role.auditor)).json()["items"]
    assert len(failures) == 5
    assert all(f["actor"]["id"] == str(org.users[Role.technician][0]) for f in failures)
    assert failures[0]["reason"] == "wrong email or password"
    # Another account is not affected.
    ok = client.post("/api/v1/auth/login", json={"email": org.users[Role.scientist][1], "password": PASSWORD})
    assert ok.status_code == 200


def test_per_address_limit(platform: Platform, owner, client):
    strict = replace(platform, settings=platform.settings.model_copy(update={"login_max_failures_per_address": 3}))
    org = make_org(owner, client)
    with TestClient(create_app(strict, background=False), client=("198.51.100.7", 5000)) as c:
        for role in (Role.analyst, Role.auditor, Role.scientist):
            r = c.post("/api/v1/auth/login", json={"email": org.users[role][1], "password": "nope nope"})
            assert r.status_code == 401
        r = c.post("/api/v1/auth/login", json={"email": org.users[Role.owner][1], "password": PASSWORD})
        assert r.status_code == 429


def test_unknown_email_and_wrong_password_answer_alike(client, org_a):
    a = client.post("/api/v1/auth/login", json={"email": "nobody@example.org", "password": "whatever1"})
    b = client.post("/api/v1/auth/login", json={"email": org_a.users[Role.analyst][1], "password": "whatever1"})
    assert a.status_code == b.status_code == 401 and a.json() == b.json()


def test_token_is_stored_hashed(client, owner, org_a):
    from sqlalchemy import text

    token = org_a.tokens[Role.owner]
    with owner.begin(None) as s:
        assert s.execute(text("SELECT count(*) FROM auth_sessions WHERE encode(token_hash, 'escape') LIKE :t"),
                         {"t": f"%{token}%"}).scalar_one() == 0
        hashes = s.execute(text("SELECT password_hash FROM users LIMIT 5")).scalars().all()
    assert all(h.startswith("$argon2id$") for h in hashes)
