"""Tenant isolation: RLS behind the application's checks, and the app role's limits."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from domain.roles import Role


def _tenant_tables(owner, readable_by_app: bool = False) -> list[str]:
    with owner.begin(None) as s:
        return [r[0] for r in s.execute(text(
            "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
            "USING (table_schema, table_name) WHERE c.table_schema = 'public' AND c.column_name = 'org_id' "
            "AND t.table_type = 'BASE TABLE' AND (NOT :r OR has_table_privilege('flasktrack_app', "
            "format('%I.%I', c.table_schema, c.table_name), 'SELECT')) ORDER BY 1"), {"r": readable_by_app}).all()]


def test_every_table_with_org_id_has_row_level_security(owner):
    tables = _tenant_tables(owner)
    assert {"memberships", "audit_log", "audit_pending", "outbox", "api_keys"} <= set(tables)
    with owner.begin(None) as s:
        rows = s.execute(text(
            "SELECT relname, relrowsecurity, (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
            "FROM pg_class c WHERE relname = ANY(:t) AND relkind = 'r'"), {"t": tables}).all()
    missing = [r[0] for r in rows if not r[1] or r[2] == 0]
    assert not missing, f"tables without RLS: {missing}"


def test_app_role_cannot_bypass_rls_and_owns_nothing(owner, platform):
    with platform.sessions.engine.connect() as c:
        me = c.execute(text("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles "
                            "WHERE rolname = current_user")).one()
        owned = c.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname='public' "
                               "AND tableowner = current_user"))
        assert me[0] == "flasktrack_app" and me[1] is False and me[2] is False
        assert owned.scalar_one() == 0


def test_raw_selects_without_org_filter_see_only_own_org(owner, platform, org_a, org_b, client):
    # Give both orgs some rows in every kind of table first.
    for org in (org_a, org_b):
        r = client.post("/api/v1/apikeys", json={"name": "x", "role": "analyst"}, headers=org.headers(Role.admin))
        assert r.status_code == 201
    tables = _tenant_tables(owner, readable_by_app=True)
    with platform.sessions.engine.begin() as c:
        for t in tables:  # no org set at all: nothing
            assert c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() == 0, t
    with platform.sessions.begin(org_a.id) as s:
        for t in tables:  # org A set, a query that "forgets" its filter: no row of another org
            others = s.execute(text(f"SELECT count(*) FROM {t} WHERE org_id <> :a"), {"a": org_a.id}).scalar_one()
            assert others == 0, t
        assert s.execute(text("SELECT count(*) FROM memberships")).scalar_one() == len(Role)
        assert s.execute(text("SELECT count(*) FROM users")).scalar_one() == len(Role)


def test_app_role_cannot_write_into_another_org(platform, org_a, org_b):
    with pytest.raises(Exception, match="row-level security"):
        with platform.sessions.begin(org_a.id) as s:
            s.execute(text("INSERT INTO api_keys (id, org_id, name, role, key_prefix, key_hash) "
                           "VALUES (:i, :o, 'evil', 'owner', 'x', :h)"),
                      {"i": uuid.uuid4(), "o": org_b.id, "h": uuid.uuid4().bytes})


def test_other_orgs_record_is_404_and_the_attempt_is_audited(client, org_a, org_b):
    r = client.post("/api/v1/apikeys", json={"name": "b-key", "role": "analyst"}, headers=org_b.headers(Role.admin))
    b_key = r.json()["id"]
    r = client.delete(f"/api/v1/apikeys/{b_key}", headers=org_a.headers(Role.admin))
    assert r.status_code == 404
    unknown = client.delete(f"/api/v1/apikeys/{uuid.uuid4()}", headers=org_a.headers(Role.admin))
    assert unknown.status_code == 404 and unknown.json() == r.json()  # no existence leak
    entries = client.get("/api/v1/audit", params={"action": "deny", "entity_id": f"DELETE /api/v1/apikeys/{b_key}"},
                         headers=org_a.headers(Role.auditor)).json()["items"]
    assert entries, "the 404 attempt must be on record"
    assert entries and entries[0]["actor"]["id"] == str(org_a.users[Role.admin][0])
    # Org B's key is untouched.
    keys = client.get("/api/v1/apikeys", headers=org_b.headers(Role.admin)).json()
    assert any(k["id"] == b_key and k["revoked_at"] is None for k in keys)


def test_api_key_acts_as_its_org_and_role_and_is_attributed(client, org_a):
    key = client.post("/api/v1/apikeys", json={"name": "lims", "role": "admin"},
                      headers=org_a.headers(Role.owner)).json()
    h = {"Authorization": f"Bearer {key['key']}"}
    me = client.get("/api/v1/me", headers=h).json()
    assert me["actor_type"] == "api_key" and me["org"]["id"] == str(org_a.id) and me["role"] == "admin"
    made = client.post("/api/v1/apikeys", json={"name": "child", "role": "analyst"}, headers=h)
    assert made.status_code == 201
    entry = client.get("/api/v1/audit", params={"entity_id": made.json()["id"]},
                       headers=org_a.headers(Role.auditor)).json()["items"][0]
    assert entry["actor"] == {"type": "api_key", "id": key["id"], "display": "API key lims"}
    assert entry["context"]["api_key_id"] == key["id"]
    client.delete(f"/api/v1/apikeys/{key['id']}", headers=org_a.headers(Role.owner))
    assert client.get("/api/v1/me", headers=h).status_code == 401
