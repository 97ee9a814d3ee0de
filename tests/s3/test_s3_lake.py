"""The lake on `s3://` (an S3-compatible server the tests start): the sink writes it and Flight SQL reads the
same rows through a real ADBC client; two writers racing for one Delta version both land (conditional put);
a sink killed in the middle of a commit restarts with every row exactly once; maintenance and backup's
snapshot of a table work there as on a folder."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from flight.auth import Principal, QueryEvent
from flight.server import FlightSqlServer
from lake import snapshot
from lake.maintain import maintain_lake
from lake.service import build_sink
from lake.writer import Append, Lake
from tests.flight.flightkit import connect, query
from tests.lake.lakekit import run_payload, step_event
from tests.lake.test_lake_exactly_once import _crash_and_restart
from tests.s3.s3kit import BUCKET, S3, S3Kit

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3-lake-analyst"  # noqa: S105 - the test authenticator's


class OneAnalyst:
    """Flight SQL's authenticator for one analyst of one organization."""

    def __init__(self, org: str) -> None:
        self.principal = Principal(org, "analyst", "user", "user-s3", "S3 analyst")

    def authenticate(self, username: str, password: str, client_address: str | None) -> Principal | None:
        return self.principal if (username, password) == ("analyst@s3.example", PASSWORD) else None

    def refresh(self, principal: Principal) -> Principal | None:
        return principal

    def record_query(self, principal: Principal | None, event: QueryEvent) -> None:
        pass


def test_the_sink_writes_to_s3_and_flight_sql_reads_the_same_rows(s3_kit: S3Kit):
    org, other = s3_kit.org(), s3_kit.org()
    events = [step_event(org, i=i) for i in range(120)]
    runs = [run_payload(org) for _ in range(7)]
    s3_kit.insert("step_event", events + [step_event(other, i=0)])
    s3_kit.insert("run", runs)
    sink = build_sink(s3_kit.settings())  # the service's own wiring: s3:// lake from the settings, the sink role
    try:
        assert sink.drain() >= 128  # this test's rows, and what other tests left in the shared outbox
    finally:
        sink.engine.dispose()
    assert {"audit_log", "runs", "step_events"} <= set(s3_kit.lake().tables())

    settings = s3_kit.settings()
    server = FlightSqlServer("grpc://127.0.0.1:0", settings.resolved_lake_uri, OneAnalyst(org),
                             storage_options=settings.resolved_lake_storage_options, warm_connections=0)
    conn = connect(f"grpc://127.0.0.1:{server.port}", "analyst@s3.example", PASSWORD)
    try:
        got = query(conn, "SELECT event_id, org_id FROM step_events")
        assert sorted(got["event_id"].to_pylist()) == sorted(e["event_id"] for e in events)
        assert set(got["org_id"].to_pylist()) == {org}  # the other org's row stays out of sight
        assert sorted(query(conn, "SELECT run_id FROM runs")["run_id"].to_pylist()) == sorted(r["run_id"] for r in runs)
    finally:
        conn.close()
        server.shutdown()


def test_two_writers_racing_for_one_version_both_land(s3: S3):
    """Both writers read version 1 and commit version 2. S3 refuses the second put of the commit file
    (If-None-Match: *), so the second writer checks for conflicts, finds none (appends by other writers) and
    commits version 3. Without the conditional put the second commit file would replace the first: a lost commit."""
    options = s3.settings().s3_storage_options
    uri = f"s3://{BUCKET}/race-{uuid.uuid4().hex[:8]}/t"
    write_deltalake(uri, pa.table({"org_id": ["a"], "i": [0]}), partition_by=["org_id"], storage_options=options)
    first, second = DeltaTable(uri, storage_options=options), DeltaTable(uri, storage_options=options)
    for dt, i in ((first, 1), (second, 2)):
        write_deltalake(dt, pa.table({"org_id": ["a"], "i": [i]}), mode="append",
                        commit_properties=CommitProperties(app_transactions=[Transaction(f"writer-{i}", 1)]))
    table = DeltaTable(uri, storage_options=options)
    assert table.version() == 2
    assert sorted(table.to_pyarrow_table()["i"].to_pylist()) == [0, 1, 2]
    assert {table.transaction_version("writer-1"), table.transaction_version("writer-2")} == {1}


def test_a_stale_writer_of_the_same_batch_is_refused_and_writes_nothing_twice(s3: S3):
    """Exactly once across writers: a writer that decided on an older version cannot commit a batch another
    writer has committed meanwhile (CommitFailedError); the lake's append decides again and skips it."""
    options = s3.settings().s3_storage_options
    lake = Lake(f"s3://{BUCKET}/stale-{uuid.uuid4().hex[:8]}", options)
    rows = pa.table({"org_id": ["a", "a"], "i": [1, 2]})
    assert lake.append_once("t", lambda dt: Append(rows, {"app": 1}))
    stale = DeltaTable(lake.uri("t"), storage_options=options)
    assert lake.append_once("t", lambda dt: Append(pa.table({"org_id": ["a"], "i": [3]}), {"app": 2}))
    with pytest.raises(CommitFailedError):
        write_deltalake(stale, pa.table({"org_id": ["a"], "i": [3]}), mode="append",
                        commit_properties=CommitProperties(app_transactions=[Transaction("app", 2)]))

    def plan(dt: DeltaTable | None) -> Append | None:
        done = (dt.transaction_version("app") or 0) if dt is not None else 0
        return None if done >= 2 else Append(pa.table({"org_id": ["a"], "i": [3]}), {"app": 2})

    assert not lake.append_once("t", plan)
    assert sorted(lake.open("t").to_pyarrow_table()["i"].to_pylist()) == [1, 2, 3]  # type: ignore[union-attr]


WRITER = """
import sys
import pyarrow as pa
from core.config import Settings
from lake.writer import Append, Lake

app, n = sys.argv[1], int(sys.argv[2])
lake = Lake.from_settings(Settings())
for v in range(1, n + 1):
    def plan(dt, v=v):
        done = (dt.transaction_version(app) or 0) if dt is not None else 0
        return None if done >= v else Append(pa.table({"org_id": [app], "i": [v]}), {app: v})
    lake.append_once("contended", plan)
"""


def test_two_writer_processes_appending_to_one_table_lose_no_commit(s3_kit: S3Kit):
    """Two processes configured by environment, each committing 12 batches to the same table at once."""
    env = {**os.environ, **s3_kit.server.env(), "FLASKTRACK_LAKE_URI": s3_kit.lake_uri}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, app, "12"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for app in ("west", "east")]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out.decode()[-3000:]
    table = s3_kit.table("contended")
    for app in ("west", "east"):
        mine = table.filter(pa.compute.equal(table["org_id"], app))["i"].to_pylist()
        assert sorted(mine) == list(range(1, 13))
    dt = DeltaTable(f"{s3_kit.lake_uri}/contended", storage_options=s3_kit.storage_options)
    assert dt.transaction_version("west") == dt.transaction_version("east") == 12


def test_a_sink_killed_between_two_tables_restarts_with_every_row_exactly_once(s3_kit: S3Kit):
    _crash_and_restart(s3_kit, "between_tables", batch_rows=50_000)


def test_maintenance_and_backup_snapshots_work_on_s3(s3_kit: S3Kit):
    org = s3_kit.org()
    lake = s3_kit.lake()
    for part in range(3):
        s3_kit.insert("step_event", [step_event(org, i=part * 10 + i) for i in range(10)])
        s3_kit.sink().drain()
    before = sorted(s3_kit.table("step_events", org)["event_id"].to_pylist())
    reports = {r.table: r for r in maintain_lake(lake, tables=["step_events"], retention_hours=0,
                                                 enforce_retention=False)}
    assert reports["step_events"].files_removed >= 3 and reports["step_events"].files_added == 1
    assert sorted(s3_kit.table("step_events", org)["event_id"].to_pylist()) == before

    version = snapshot.current_versions(lake)["step_events"]
    files = snapshot.table_files(lake, "step_events", version).files
    assert any(f.startswith("step_events/_delta_log/") for f in files)
    copy = Lake(f"s3://{BUCKET}/{s3_kit.prefix}/restored", s3_kit.storage_options)
    assert snapshot.is_empty(copy)
    for path in files:
        snapshot.write_file(copy, path, snapshot.read_chunks(lake, path))
    restored = copy.open("step_events")
    assert restored is not None and restored.version() == version
    rows = restored.to_pyarrow_table()
    assert sorted(rows.filter(pa.compute.equal(rows["org_id"], org))["event_id"].to_pylist()) == before
