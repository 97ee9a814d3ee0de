"""Flight SQL with the platform's real identity layer (PostgreSQL) behind it: the same rules as
the HTTP API for roles, lockouts and sessions, through the real server and ADBC client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from adbc_driver_manager import Error as AdbcError
from deltalake import write_deltalake
from fastapi.testclient import TestClient

from api.deps import Platform
from domain.roles import Role
from flasktrack.db import TenantSessions
from flasktrack.settings import Settings
from flight.server import FlightSqlServer
from flight.service import PlatformAuthenticator
from tests.flight.flightkit import connect, query
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
