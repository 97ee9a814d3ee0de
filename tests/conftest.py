"""Shared fixtures: a real PostgreSQL (embedded by default, FLASKTRACK_TEST_DATABASE_URL for another),
a fresh database per test session with the real migrations, the real API app."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import build_platform, create_app
from api.deps import Platform
from core.config import Settings
from core.db import TenantSessions, make_engine
from flasktrack.postgres import scratch_database, scratch_server, upgrade_schema
from tests.support import PASSWORD, Org, make_org

__all__ = ["PASSWORD", "Org", "make_org"]

# Passwords hashed at argon2id's lowest cost, in this process and every service it starts (they read the same
# environment): the suite creates hundreds of accounts, and at the production cost hashing them was the largest
# share of its time. Verification, lockouts and timing equality work the same at any cost.
os.environ.setdefault("FLASKTRACK_PASSWORD_HASH_TIME_COST", "1")
os.environ.setdefault("FLASKTRACK_PASSWORD_HASH_MEMORY_KIB", "1024")
os.environ.setdefault("FLASKTRACK_PASSWORD_HASH_PARALLELISM", "1")



@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with scratch_database(scratch_server("test"), "ft_test") as url:
        upgrade_schema(url)
        yield url


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="flasktrack-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def settings(database_url: str, data_dir: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=data_dir, log_json=True, checkpoint_interval_s=3600,
                    login_max_failures=5, login_max_failures_per_address=1000)


@pytest.fixture(scope="session")
def owner(database_url: str) -> TenantSessions:
    """Sessions as the table owner (bypasses RLS): for seeding and for tampering in tests."""
    return TenantSessions(make_engine(database_url, pool_size=4))


@pytest.fixture(scope="session")
def platform(settings: Settings) -> Platform:
    """The platform's services (sessions, settings, keys). Never given to an app as it is: each app gets a copy,
    `dataclasses.replace(platform, ...)` with the fields the test sets, so its Temporal client, health and caches
    are its own and no test sees another's."""
    return build_platform(settings)


@pytest.fixture(scope="session")
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(replace(platform))) as c:
        yield c


@pytest.fixture(scope="session")
def org_a(owner: TenantSessions, client: TestClient) -> Org:
    return make_org(owner, client)


@pytest.fixture(scope="session")
def org_b(owner: TenantSessions, client: TestClient) -> Org:
    return make_org(owner, client)


@pytest.fixture
def analyst_lake(platform: Platform, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A Flight SQL server over a fresh lake folder of this test, signing in the platform's members (an analyst's
    email and password), as analysts reach the lake: (the lake folder to drain the outbox into, the URI to
    connect to)."""
    from flight.server import FlightSqlServer
    from flight.service import PlatformAuthenticator

    lake_dir = tmp_path / "lake"
    server = FlightSqlServer("grpc://127.0.0.1:0", str(lake_dir),
                             PlatformAuthenticator(platform.sessions, platform.settings))
    try:
        yield lake_dir, f"grpc://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
