"""Sandboxes built ahead per organization and role (lake/query.py OrgSandboxes): each is handed out once, holds only
its organization's rows, and a query on one sees the newest version of a table set up at an older one."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from lake.catalog import LakeCatalog, OrgDataset
from lake.query import OrgSandboxes, bind
from lake.sandbox import Deadline, SandboxSettings
from tests.flight.flightkit import ORG_A, ORG_B


def _run(pool: OrgSandboxes, org: str, sql: str) -> tuple[list[object], object]:
    sandbox = pool.take(org, "analyst", Deadline(10.0))
    connection = sandbox.con
    registered: dict[str, OrgDataset] = {}
    try:
        bind(sandbox, pool.catalog, org, "analyst", sql, registered)
        rows = sandbox.con.sql(sql).fetchall()
    finally:
        sandbox.close()
        pool.finished(org, "analyst", registered)
    return [r[0] for r in rows], connection


def _ready(pool: OrgSandboxes, org: str) -> None:
    deadline = time.monotonic() + 10
    while not pool._ready.get((org, "analyst")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool._ready.get((org, "analyst")), "no sandbox was built ahead"


def test_built_ahead_sandboxes_are_per_organization_used_once_and_see_new_versions(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    write_deltalake(f"{uri}/runs", pa.table({"org_id": [ORG_A, ORG_B], "run_id": ["a-1", "b-secret"]}),
                    partition_by=["org_id"])
    settings = SandboxSettings(memory_limit="256MB", threads=1)
    pool = OrgSandboxes(settings, LakeCatalog(uri, refresh_interval_s=0.0), per_key=1)
    try:
        seen, first = _run(pool, ORG_A, "SELECT run_id FROM runs ORDER BY run_id")
        assert seen == ["a-1"]
        _ready(pool, ORG_A)  # built after the query, with runs registered for org A
        assert not pool._ready.get((ORG_B, "analyst")), "nothing is built for an organization that did not ask"

        # Org B never gets org A's sandbox: it opens its own, and sees its own rows only.
        seen_b, _ = _run(pool, ORG_B, "SELECT run_id FROM runs")
        assert seen_b == ["b-secret"]

        write_deltalake(f"{uri}/runs", pa.table({"org_id": [ORG_A], "run_id": ["a-2"]}), partition_by=["org_id"],
                        mode="append")
        seen, second = _run(pool, ORG_A, "SELECT run_id FROM runs ORDER BY run_id")
        assert seen == ["a-1", "a-2"], "the sandbox built at version 0 reads the newest version"
        _ready(pool, ORG_A)
        _, third = _run(pool, ORG_A, "SELECT run_id FROM runs")
        assert first is not second and second is not third and first is not third, "a sandbox serves one query"
        assert _run(pool, ORG_A, "SELECT count(*) FROM RUNS")[0] == [2]  # names as DuckDB reads them
    finally:
        pool.close()
