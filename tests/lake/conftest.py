"""Fixtures for the lake sink: a fresh lake folder per test on the shared test database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.db import TenantSessions, make_engine
from lake.sink import Sink, SinkSettings
from lake.writer import Lake
from tests.lake.lakekit import Kit


@pytest.fixture(scope="session")
def lake_owner(database_url: str) -> Iterator[TenantSessions]:
    sessions = TenantSessions(make_engine(database_url, pool_size=4))
    yield sessions
    sessions.engine.dispose()


@pytest.fixture
def kit(lake_owner: TenantSessions, database_url: str, tmp_path: Path) -> Kit:
    k = Kit(lake_owner, database_url, tmp_path)
    # Whatever earlier tests left in the shared outbox goes to a scratch lake, not this test's.
    Sink(lake_owner.engine, Lake(str(tmp_path / "scratch")), SinkSettings()).drain()
    return k
