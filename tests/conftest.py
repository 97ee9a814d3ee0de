"""Shared fixtures: a real PostgreSQL (embedded by default, FLASKTRACK_TEST_DATABASE_URL for another),
a fresh database per test session with the real migrations, the real API app."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.app import build_platform, create_app
from api.deps import Platform
from flasktrack.db import TenantSessions, libpq_url, make_engine, start_embedded_postgres, upgrade_schema
from flasktrack.settings import Settings
from tests.support import PASSWORD, Org, make_org

__all__ = ["PASSWORD", "Org", "make_org"]



def _server_url() -> str:
    url = os.environ.get("FLASKTRACK_TEST_DATABASE_URL")
    if url:
        return url
    data = Path(os.environ.get("FLASKTRACK_TEST_DATA_DIR", Path(tempfile.gettempdir()) / "flasktrack-test"))
    return start_embedded_postgres(data)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    server = make_url(_server_url())
    name = f"ft_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = libpq_url(server.set(database="postgres").render_as_string(hide_password=False))
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = server.set(database=name).render_as_string(hide_password=False)
    upgrade_schema(url)
    yield url
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    return build_platform(settings)


@pytest.fixture(scope="session")
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as c:
        yield c


@pytest.fixture(scope="session")
def org_a(owner: TenantSessions, client: TestClient) -> Org:
    return make_org(owner, client)


@pytest.fixture(scope="session")
def org_b(owner: TenantSessions, client: TestClient) -> Org:
    return make_org(owner, client)
