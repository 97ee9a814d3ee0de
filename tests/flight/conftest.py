"""Fixtures: the lake, the recording Authenticator, the Flight SQL server on a free port."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from flight.server import FlightSqlServer
from tests.flight.flightkit import Lake, RecordingAuthenticator, build_lake, connect


@pytest.fixture(scope="session", autouse=True)
def _quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@pytest.fixture(scope="session")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return build_lake(tmp_path_factory.mktemp("flight"))


@pytest.fixture(scope="session")
def auth() -> RecordingAuthenticator:
    return RecordingAuthenticator()


@pytest.fixture(scope="session")
def server(lake: Lake, auth: RecordingAuthenticator) -> Iterator[FlightSqlServer]:
    srv = FlightSqlServer(
        "grpc://127.0.0.1:0", lake.uri, auth, query_timeout_s=20.0, max_batch_bytes=64 * 1024, warm_connections=1
    )
    yield srv
    srv.shutdown()


@pytest.fixture(scope="session")
def uri(server: FlightSqlServer) -> str:
    return f"grpc://127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def ana(uri: str) -> Iterator[Any]:
    conn = connect(uri, "ana@a.example")
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def bob(uri: str) -> Iterator[Any]:
    conn = connect(uri, "bob@b.example")
    yield conn
    conn.close()
