"""Flight SQL with the platform's real identity layer (PostgreSQL) behind it: the same rules as
the HTTP API for roles, lockouts and sessions, through the real server and ADBC client."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pytest
from adbc_driver_manager import Error as AdbcError
from deltalake import write_deltalake
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import text

from api.app import create_app
from api.deps import Platform
from core.config import Settings
from core.db import TenantSessions
from domain.roles import Role
from flight.server import FlightSqlServer
from flight.service import PlatformAuthenticator
from tests.flight.flightkit import connect, query
from tests.identity.test_invitations import _invite
from tests.identity.test_lockouts import lockout_entries
from tests.support import PASSWORD, Org, make_org

StartFlight = Callable[..., str]


@pytest.fixture
def start_flight(platform: Platform, tmp_path: Path) -> Iterator[StartFlight]:
    """Start a Flight SQL server over a small lake holding `orgs`' rows, wired to the platform."""
    servers: list[FlightSqlServer] = []

    def start(orgs: list[Org], settings: Settings | None = None, **opts: Any) -> str:
        lake = tmp_path / f"lake-{len(servers)}"
        ids = [str(o.id) for o in orgs]
        write_deltalake(str(lake / "audit_log"), pa.table({"org_id": ids, "seq": [1] * len(ids)}),
                        partition_by=["org_id"])
        write_deltalake(str(lake / "runs"), pa.table({"org_id": ids, "run_id": [f"run-{i}" for i in ids]}),
                        partition_by=["org_id"])
        authenticator = PlatformAuthenticator(platform.sessions, settings or platform.settings)
        server = FlightSqlServer("grpc://127.0.0.1:0", str(lake), authenticator, warm_connections=0, **opts)
        servers.append(server)
        return f"grpc://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.shutdown()


def _tables(conn: Any) -> set[str]:
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    return {t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}


# --- roles ----------------------------------------------------------------------------------


def test_one_audit_log_rule_for_the_api_and_flight(
    client: TestClient, owner: TenantSessions, start_flight: StartFlight
) -> None:
    org = make_org(owner, client)
    uri = start_flight([org])
    for role in (Role.analyst, Role.auditor, Role.admin, Role.owner):
        reads_over_api = client.get("/api/v1/audit", headers=org.headers(role)).status_code == 200
        with connect(uri, org.users[role][1], PASSWORD) as conn:
            sees_over_flight = "audit_log" in _tables(conn)
            if sees_over_flight:
                assert query(conn, "SELECT DISTINCT org_id FROM audit_log").to_pylist() == [{"org_id": str(org.id)}]
            else:
                with pytest.raises(AdbcError, match="does not exist"):
                    query(conn, "SELECT * FROM audit_log")
        assert sees_over_flight == reads_over_api, role


# --- sessions follow the account --------------------------------------------------------------


def _refused_soon(conn: Any, sql: str, timeout_s: float = 10.0) -> str:
    """Run `sql` until the server refuses it (the re-check is due after principal_recheck_s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            query(conn, sql)
        except AdbcError as exc:
            return str(exc)
        time.sleep(0.05)
    raise AssertionError(f"still answered after {timeout_s} s: {sql}")


def test_flight_sessions_follow_revoked_keys_changed_roles_and_disabled_accounts(
    client: TestClient, owner: TenantSessions, start_flight: StartFlight
) -> None:
    org = make_org(owner, client)
    admin = org.headers(Role.admin)
    uri = start_flight([org], principal_recheck_s=0.2)
    count_runs = "SELECT count(*) AS n FROM runs"

    key = client.post("/api/v1/apikeys", json={"name": "notebook", "role": "analyst"}, headers=admin).json()
    with connect_as(uri, "apikey", key["key"]) as conn:
        assert query(conn, count_runs).to_pylist() == [{"n": 1}]
        assert client.request("DELETE", f"/api/v1/apikeys/{key['id']}", headers=admin).status_code == 200
        assert "UNAUTHENTICATED" in _refused_soon(conn, count_runs)

    auditor_id, auditor_email = org.users[Role.auditor]
    with connect_as(uri, auditor_email) as conn:
        assert query(conn, "SELECT count(*) AS n FROM audit_log").to_pylist() == [{"n": 1}]
        demoted = client.patch(f"/api/v1/members/{auditor_id}", json={"role": "technician", "reason": "moved"},
                               headers=admin)
        assert demoted.status_code == 200, demoted.text
        refused = _refused_soon(conn, count_runs)  # a statement prepared as auditor runs no more either
        assert "may not run queries" in refused or "your role changed to 'technician'" in refused
        assert "may not run queries" in _refused_soon(conn, count_runs)

    analyst_id, analyst_email = org.users[Role.analyst]
    with connect_as(uri, analyst_email) as conn:
        assert query(conn, count_runs).to_pylist() == [{"n": 1}]
        with owner.begin(None) as s:
            s.execute(text("UPDATE users SET disabled = true WHERE id = :u"), {"u": analyst_id})
        assert "UNAUTHENTICATED" in _refused_soon(conn, count_runs)
    with connect_as(uri, analyst_email) as conn, pytest.raises(AdbcError, match="UNAUTHENTICATED"):
        query(conn, count_runs)  # and cannot log in again


def test_the_recheck_interval_is_at_most_a_minute() -> None:
    assert Settings().flight_principal_recheck_s <= 60
    with pytest.raises(ValidationError):
        Settings(flight_principal_recheck_s=120)


# --- the client's address and per-address lockout ------------------------------------------


def _strict(platform: Platform, **update: Any) -> Settings:
    return platform.settings.model_copy(update={"login_max_failures_per_address": 3, **update})


def _login_fails(uri: str, email: str, password: str = "a wrong guess", **kwargs: Any) -> str:
    """Log in and run one query; the refusal's message."""
    db_kwargs = {"username": email, "password": password, **kwargs}
    with flight_sql.connect(uri, db_kwargs=db_kwargs, autocommit=True) as conn:
        with pytest.raises(AdbcError, match="UNAUTHENTICATED") as refused:
            query(conn, "SELECT 1")
    return str(refused.value)


def test_a_person_in_two_organizations_is_told_to_name_one_over_flight(
    client: TestClient, owner: TenantSessions, start_flight: StartFlight
) -> None:
    home, inviting = make_org(owner, client), make_org(owner, client)
    email = home.users[Role.auditor][1]
    invitation = _invite(client, inviting, email).json()
    r = client.post(f"/api/v1/me/invitations/{invitation['id']}/accept", headers=home.headers(Role.auditor))
    assert r.status_code == 200, r.text
    uri = start_flight([home, inviting])
    message = _login_fails(uri, email, PASSWORD)
    assert f"log in as <org-slug>/{email}" in message and home.slug in message and inviting.slug in message
    assert "bad credentials" not in message
    # A wrong password is told nothing more; the named organization lets the person in.
    assert "bad credentials" in _login_fails(uri, email, "a wrong guess")
    with connect_as(uri, f"{inviting.slug}/{email}") as conn:
        assert query(conn, "SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 1}]


def _forwarded(address: str) -> dict[str, str]:
    return {"adbc.flight.sql.rpc.call_header.x-forwarded-for": address}


def _attempt_addresses(owner: TenantSessions, email: str) -> list[str | None]:
    with owner.begin(None) as s:
        return list(s.execute(text("SELECT client_address FROM login_attempts WHERE email = :e"),
                              {"e": email}).scalars())


def test_sprayed_logins_from_one_address_are_locked_out_over_flight(
    platform: Platform, client: TestClient, owner: TenantSessions, start_flight: StartFlight
) -> None:
    org = make_org(owner, client)
    uri = start_flight([org], _strict(platform))
    locked = None
    for attempt in range(4):  # other tests' failures from 127.0.0.1 may lock it sooner, never later
        message = _login_fails(uri, f"spray-{attempt}-{secrets.token_hex(4)}@nowhere.example")
        if "too many failed logins from this address" in message:
            locked = attempt
            break
    assert locked is not None, "the per-address limit never applied over Flight SQL"
    # Locked out: even the right password of a real account is refused from this address.
    message = _login_fails(uri, org.users[Role.analyst][1], PASSWORD)
    assert "too many failed logins from this address" in message
    email = f"spray-recorded-{secrets.token_hex(4)}@nowhere.example"
    _login_fails(start_flight([org]), email)  # a server with the usual limits records the address
    assert _attempt_addresses(owner, email) == ["127.0.0.1"]


def test_forwarded_for_counts_only_from_a_trusted_proxy(
    platform: Platform, client: TestClient, owner: TenantSessions, start_flight: StartFlight
) -> None:
    org = make_org(owner, client)
    sprayer = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    behind_proxy = start_flight([org], _strict(platform), trusted_proxies=["127.0.0.1"])
    for attempt in range(3):
        email = f"spray-{attempt}-{secrets.token_hex(4)}@nowhere.example"
        assert "bad credentials" in _login_fails(behind_proxy, email, **_forwarded(sprayer))
        assert _attempt_addresses(owner, email) == [sprayer]
    for _ in range(2):
        refused = _login_fails(behind_proxy, org.users[Role.analyst][1], PASSWORD, **_forwarded(sprayer))
        assert "too many failed logins from this address" in refused
    # The refusal is on record once: the platform's lockouts, and the log of the account it names.
    with owner.begin(None) as s:
        assert s.execute(text("SELECT scope, attempted_email FROM login_lockouts WHERE subject = :a"),
                         {"a": sprayer}).all() == [("address", org.users[Role.analyst][1])]
    entries = lockout_entries(client, org)
    assert [(e["actor"]["id"], e["after"]["locked_out"], e["context"]["client_address"]) for e in entries] == [
        (str(org.users[Role.analyst][0]), "address", sprayer)
    ]
    with connect_as(behind_proxy, org.users[Role.analyst][1], **_forwarded(f"2001:db8::{secrets.token_hex(2)}")) as c:
        assert query(c, "SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 1}]  # another address may
    # Without trusted proxies the header is the client's word: not believed.
    email = f"spoofed-{secrets.token_hex(4)}@nowhere.example"
    _login_fails(start_flight([org]), email, **_forwarded(sprayer))
    assert _attempt_addresses(owner, email) == ["127.0.0.1"]


def connect_as(uri: str, email: str, password: str = PASSWORD, **kwargs: Any) -> Any:
    return flight_sql.connect(uri, db_kwargs={"username": email, "password": password, **kwargs}, autocommit=True)


def test_http_takes_forwarded_for_only_from_a_trusted_proxy(platform: Platform, owner: TenantSessions) -> None:
    proxy, sprayer = "192.0.2.10", f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    for trusted, expected in (([proxy], sprayer), ([], proxy)):
        settings = platform.settings.model_copy(update={"trusted_proxies": trusted})
        app = create_app(replace(platform, settings=settings), background=False)
        email = f"http-{secrets.token_hex(4)}@nowhere.example"
        with TestClient(app, client=(proxy, 5000)) as c:
            r = c.post("/api/v1/auth/login", json={"email": email, "password": "a wrong guess"},
                       headers={"X-Forwarded-For": f"{sprayer}, {proxy}"})
            assert r.status_code == 401
        assert _attempt_addresses(owner, email) == [expected]


def test_trusted_proxies_must_be_addresses() -> None:
    with pytest.raises(ValidationError, match="not an IP address"):
        Settings(trusted_proxies=["proxy.example"])
