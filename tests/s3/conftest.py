"""An S3-speaking server for the object-storage tests: moto's standalone server, started in its own process on a
free port for the session and killed at its end. (Not in-process: delta-rs holds the GIL while it waits for
the server's answer, so a server thread in the same interpreter never gets to answer.)"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from core.db import TenantSessions, make_engine
from lake.sink import Sink, SinkSettings
from lake.writer import Lake
from tests.s3.s3kit import BUCKET, S3, S3Kit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = S3(f"http://127.0.0.1:{port}")
    client = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key_id,
                          aws_secret_access_key=server.secret_access_key, region_name=server.region)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def lake_owner(database_url: str) -> Iterator[TenantSessions]:
    sessions = TenantSessions(make_engine(database_url, pool_size=4))
    yield sessions
    sessions.engine.dispose()


@pytest.fixture
def s3_kit(s3: S3, lake_owner: TenantSessions, database_url: str, tmp_path: Path) -> S3Kit:
    """A lake under its own prefix of the test bucket, on the shared test database."""
    kit = S3Kit(lake_owner, database_url, tmp_path, s3=s3, prefix=f"t-{uuid.uuid4().hex[:12]}")
    # Whatever earlier tests left in the shared outbox goes to a scratch lake, not this test's.
    Sink(lake_owner.engine, Lake(str(tmp_path / "scratch")), SinkSettings()).drain()
    return kit
