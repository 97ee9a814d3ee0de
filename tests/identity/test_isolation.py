"""Tenant isolation: RLS behind the application's checks, and the app role's limits."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from core.db import TenantSessions
from core.heartbeat import beat
from domain.identity import service as identity
from domain.roles import RequestContext, Role
from tests.support import PASSWORD, make_org


def _tenant_tables(owner, readable_by_app: bool = False) -> list[str]:
    with owner.begin(None) as s:
        return [r[0] for r in s.execute(text(
            "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
            "USING (table_schema, table_name) WHERE c.table_schema = 'public' AND c.column_name = 'org_id' "
            "AND t.table_type = 'BASE TABLE' AND (NOT :r OR has_table_privilege('flasktrack_app', "
            "format('%I.%I', c.table_schema, c.table_name), 'SELECT')) ORDER BY 1"), {"r": readable_by_app}).all()]


def test_every_table_with_org_id_has_row_level_security(owner):
    tables = _tenant_tables(owner)
    assert {"memberships", "audit_log", "audit_pending", "outbox_rows", "api_keys"} <= set(tables)
    with owner.begin(None) as s:
        rows = s.execute(text(
            "SELECT relname, relrowsecurity, (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
            "FROM pg_class c WHERE relname = ANY(:t) AND relkind = 'r'"), {"t": tables}).all()
    missing = [r[0] for r in rows if not r[1] or r[2] == 0]
    assert not missing, f"tables without RLS: {missing}"
    # A view over tenant rows (the outbox over outbox_rows) reads as its caller, so the tables' policies apply.
    with owner.begin(None) as s:
        views = dict(s.execute(text(
            "SELECT c.relname, coalesce('security_invoker=true' = ANY(c.reloptions), false) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'v' "
            "AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'org_id')")).all())
    assert "outbox" in views
    assert not [v for v, invoker in views.items() if not invoker], f"views reading as their owner: {views}"


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
        assert s.execute(text("SELECT count(*) FROM memberships")).scalar_one() >= len(Role)
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


# Relations the application role may read although no row-level security applies, each with why that is
# safe. Empty on purpose: what login and health need before an organization is known goes through the
# narrow SECURITY DEFINER functions below, never through a readable table.
READABLE_WITHOUT_RLS: dict[str, str] = {}

# Every SECURITY DEFINER function the application role may call, reviewed: each returns only what its one
# caller needs (a new one fails the test until it is reviewed here).
REVIEWED_DEFINER_FUNCTIONS = {
    "audit_seal": "links one org's pending entries into its chain; returns a count",
    "audit_seal_all": "the background sealer's sweep; returns a count",
    "audit_log_orgs": "ids of the orgs that have a chain, for periodic checkpoints",
    "audit_seal_lag": "one number: the age of the oldest pending entry (the sealers' metric), no content",
    "auth_user_by_email": "login: the account's id, name, password hash, disabled flag for one email",
    "auth_user_memberships": "login: one account's active memberships",
    "auth_resolve_session": "bearer token hash → its session",
    "auth_resolve_api_key": "API key hash → its key",
    "auth_org_by_slug": "organization slug → id",
    "auth_user_invitations": "the invited person's own pending invitations, from any organization",
    "login_failures": "throttling: counts of recent failed logins for one email and one address",
    "record_lockout": "a 429 lockout refusal on record once per lockout; answers only whether it was new",
    "service_heartbeat": "a service reports itself alive",
    "service_liveness": "/healthz: each service's last report, no host names",
    "failing_run_count": "/healthz: how many runs keep failing, a count across organizations and nothing else",
}


def _app_readable_relations(owner) -> list[tuple[str, str, bool, int, list[str] | None]]:
    """(name, kind, row security on, policies, options) of every relation outside the system catalogs that
    the application role may SELECT from, as a whole or any column of it."""
    with owner.begin(None) as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text, c.relrowsecurity,"
            " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid), c.reloptions"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
            " AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            " AND (has_table_privilege('flasktrack_app', c.oid, 'SELECT')"
            "      OR has_any_column_privilege('flasktrack_app', c.oid, 'SELECT'))"
            " ORDER BY 1")).all()]


def test_every_table_the_app_role_can_read_is_under_row_level_security(owner):
    """The catalog, not a list kept by hand: a new table, view or column grant readable by the application
    role fails here unless it is under row-level security (a view: security_invoker, so RLS of its tables
    applies) or allowed above with a reason."""
    relations = _app_readable_relations(owner)
    assert any(name == "public.audit_log" for name, *_ in relations)  # the query sees what it must
    exposed = []
    for name, kind, rls, policies, options in relations:
        if name.removeprefix("public.") in READABLE_WITHOUT_RLS:
            continue
        if kind in ("r", "p") and rls and policies:
            continue
        if kind == "v" and "security_invoker=true" in (options or []):
            continue
        exposed.append(name)
    assert not exposed, f"readable by flasktrack_app without row-level security: {exposed}"


def test_pre_authentication_tables_are_reachable_only_through_narrow_functions(owner):
    with owner.begin(None) as s:
        rows = s.execute(text(
            "SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND has_function_privilege('flasktrack_app', p.oid, 'EXECUTE') ORDER BY 1")).all()
        for table in ("login_attempts", "service_heartbeats"):
            assert not s.execute(text("SELECT has_table_privilege('flasktrack_app', :t, 'SELECT')"),
                                 {"t": table}).scalar_one(), table
    unreviewed = sorted({r.proname for r in rows} - set(REVIEWED_DEFINER_FUNCTIONS))
    assert not unreviewed, f"SECURITY DEFINER functions the app role may call, not reviewed: {unreviewed}"
    # A definer function runs with its owner's rights: it must not resolve names through the caller's path.
    unpinned = [r.proname for r in rows if not any(c.startswith("search_path=") for c in (r.proconfig or []))]
    assert not unpinned, f"SECURITY DEFINER functions without a fixed search_path: {unpinned}"


def test_nothing_is_readable_without_an_organization(platform, owner, client):
    """As the API and the worker connect, before any organization is set: not one row of any table, the
    pre-authentication ones included (every org's emails and addresses), while login and health still work."""
    org = make_org(owner, client)
    client.post("/api/v1/auth/login", json={"email": org.users[Role.analyst][1], "password": "not it at all"})
    beat(platform.sessions, "isolation-test")
    with platform.sessions.engine.begin() as c:
        for name, *_ in _app_readable_relations(owner):
            assert c.execute(text(f"SELECT count(*) FROM {name}")).scalar_one() == 0, name
        for table in ("login_attempts", "service_heartbeats"):
            with pytest.raises(ProgrammingError, match="permission denied"), c.begin_nested():
                c.execute(text(f"SELECT count(*) FROM {table}"))
    health = client.get("/healthz").json()["checks"]
    assert "database" in health and health["database"]["status"] == "up"
    with owner.begin(None) as s:
        assert s.execute(text("SELECT count(*) FROM service_heartbeats WHERE service = 'isolation-test'")).scalar_one()
    # The throttle still counts through its function: five failures lock the account.
    email = org.users[Role.scientist][1]
    for _ in range(5):
        assert client.post("/api/v1/auth/login", json={"email": email, "password": "wrong again!"}).status_code == 401
    assert client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).status_code == 429


def test_authentication_and_the_handler_share_one_transaction_the_org_set_between(platform, org_a):
    """The API's request transaction (api/deps.py): authentication reads only through its SECURITY DEFINER functions,
    with no organization set and nothing else readable; then the caller's organization is set in the same
    transaction, and in every later one of the request."""
    org_now = text("SELECT current_setting('flasktrack.org_id', true)")
    with platform.sessions.open() as s:
        tx = s.execute(text("SELECT txid_current()")).scalar_one()
        assert s.execute(org_now).scalar_one() == ""
        caller = identity.resolve_credential(s, org_a.tokens[Role.owner], RequestContext())
        assert caller.org_id == org_a.id
        assert s.execute(text("SELECT count(*) FROM memberships")).scalar_one() == 0
        TenantSessions.enter(s, caller.org_id)
        assert s.execute(text("SELECT txid_current()")).scalar_one() == tx
        assert s.execute(org_now).scalar_one() == str(org_a.id)
        assert s.execute(text("SELECT count(*) FROM memberships")).scalar_one() >= len(Role)
        s.commit()
        assert s.execute(org_now).scalar_one() == str(org_a.id)
        assert s.execute(text("SELECT txid_current()")).scalar_one() != tx
