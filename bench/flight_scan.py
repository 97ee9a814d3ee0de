"""Flight SQL scan benchmark: our server vs DuckDB in-process vs PostgreSQL + psycopg.

    .venv/bin/python bench/flight_scan.py [--rows 5000000] [--orgs 10] [--repeat 5]

Generates once (cached under $FLASKTRACK_BENCH_DIR, default <tmp>/flasktrack-bench) a
form-shaped Delta table partitioned by org_id, then measures, best of --repeat:

  (a) one org's full scan (SELECT * FROM form_bench) and an all-rows aggregate through
      ADBC → our Flight SQL server (started in a separate process on a free port);
  (b) the same queries with DuckDB in-process over the same Delta dataset (the ceiling);
  (c) the same org's rows fetched from PostgreSQL with psycopg fetchall (127.0.0.1:5432
      user postgres db test if reachable, else $FLASKTRACK_BENCH_PG_URL; the table lives
      in the bench_flight schema, created and dropped by this run).

The last line is `vs in-process X  vs psycopg Y  engine X2  aggregate X3`: X = our full scan ÷ in-process
full scan, Y = psycopg full fetch ÷ our full scan, X2 and X3 = ours ÷ in-process for the filtered scan through
the SQL engine and for the 12-group aggregate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TABLE = "form_bench"
ANALYST = ("analyst@bench", "bench-password")
FULL_SCAN = f"SELECT * FROM {TABLE}"
# The same rows, but a query the server must run through DuckDB (no whole-table fast path).
ENGINE_SCAN = f"SELECT * FROM {TABLE} WHERE colony_count >= 0"
AGGREGATE = (
    f"SELECT step_key, count(*) AS n, avg(ph) AS ph, avg(od600) AS od600, "
    f"max(temperature_c) AS t_max, sum(colony_count) AS colonies FROM {TABLE} GROUP BY step_key"
)
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def org_ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=0xF1A5C0 << 64 | i)) for i in range(n)]


def generate(lake: Path, rows: int, orgs: int) -> None:
    """Write the synthetic form table once (a marker file says it is complete)."""
    from deltalake import write_deltalake

    marker = lake / f".{TABLE}-{rows}-{orgs}.done"
    if marker.exists():
        return
    import shutil

    shutil.rmtree(lake / TABLE, ignore_errors=True)
    lake.mkdir(parents=True, exist_ok=True)
    ids = org_ids(orgs)
    per_org = rows // orgs
    steps = pa.array([f"step_{i:02d}" for i in range(12)])
    lots = pa.array([f"LOT-{i:05d}" for i in range(400)])
    users = pa.array([f"user-{i}" for i in range(50)])
    runs = pa.array([f"run-{i}" for i in range(5000)])
    words = pa.array(["ok", "turbid", "re-streaked", "contamination suspected", "", "note: slow growth"])
    start_us = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
    print(f"generating {rows:,} rows over {orgs} orgs under {lake} …", flush=True)
    for seed, org in enumerate(ids):
        n = per_org

        def uniform(k: int, n: int = n, seed: int = seed) -> pa.Array:
            return pc.random(n, initializer=seed * 100 + k)

        def pick(values: pa.Array, k: int) -> pa.Array:
            idx = pc.cast(pc.floor(pc.multiply(uniform(k), len(values))), pa.int64())
            return values.take(idx)

        table = pa.table(
            {
                "org_id": pa.array([org] * n, pa.string()),
                "run_id": pick(runs, 1),
                "step_key": pick(steps, 2),
                "submitted_by": pick(users, 3),
                "submitted_at": pc.cast(
                    pc.add(pc.cast(pc.floor(pc.multiply(uniform(4), 300 * 86400 * 1_000_000)), pa.int64()), start_us),
                    pa.timestamp("us", tz="UTC"),
                ),
                "ph": pc.add(pc.multiply(uniform(5), 2.0), 6.0),
                "od600": pc.multiply(uniform(6), 1.5),
                "temperature_c": pc.add(pc.multiply(uniform(7), 2.0), 36.0),
                "colony_count": pc.cast(pc.floor(pc.multiply(uniform(8), 500)), pa.int64()),
                "media_lot": pick(lots, 9),
                "notes": pick(words, 10),
            }
        )
        write_deltalake(str(lake / TABLE), table, partition_by=["org_id"], mode="append")
    marker.write_text("ok")


# --- the server, in its own process (spawn: forking after deltalake was used panics) ------


class BenchAuthenticator:
    def __init__(self, org_id: str) -> None:
        self.org_id = org_id

    def authenticate(self, username: str, password: str, client_address: str | None) -> Any:
        from flight.auth import Principal

        if (username, password) != ANALYST:
            return None
        return Principal(self.org_id, "analyst", "user", "bench-analyst", "Bench Analyst")

    def record_query(self, principal: Any, event: Any) -> None:
        return None


def _serve(lake: str, org_id: str, port: int, opts: dict[str, Any]) -> None:
    import logging

    import structlog

    from flight.server import run_server

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    run_server("127.0.0.1", port, lake, BenchAuthenticator(org_id), **opts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(lake: Path, org_id: str, opts: dict[str, Any]) -> tuple[multiprocessing.Process, str]:
    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_serve, args=(str(lake), org_id, port, opts), daemon=True)
    proc.start()
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"grpc://127.0.0.1:{port}"
        time.sleep(0.05)
    stop_server(proc)
    raise RuntimeError("the Flight SQL server did not start")


def stop_server(proc: multiprocessing.Process) -> None:
    proc.terminate()
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join(10)


# --- measurements -----------------------------------------------------------------------


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    fn()  # warm-up
    best, rows = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = fn()
        best = min(best, time.perf_counter() - t0)
    return best, rows


Runner = Callable[[str], int]


def flight_runner(uri: str) -> tuple[Runner, Callable[[], None]]:
    """Each call: a new cursor, execute (prepare + GetFlightInfo), fetch everything (DoGet)."""
    import adbc_driver_flightsql.dbapi as flight_sql

    conn = flight_sql.connect(uri, db_kwargs={"username": ANALYST[0], "password": ANALYST[1]}, autocommit=True)

    def run(sql: str) -> int:
        with conn.cursor() as cur:
            cur.execute(sql)
            return int(cur.fetch_arrow_table().num_rows)

    return run, conn.close


def in_process_runner(lake: Path, org_id: str) -> tuple[Runner, Callable[[], None]]:
    """The tightest ceiling: one warm DuckDB connection with the org's dataset registered once."""
    import duckdb
    from deltalake import DeltaTable

    con = duckdb.connect(config={"threads": 2})
    dataset = DeltaTable(str(lake / TABLE)).to_pyarrow_dataset(file_pruning_predicate=[("org_id", "=", org_id)])
    con.register(TABLE, dataset)

    def run(sql: str) -> int:
        return int(con.sql(sql).to_arrow_table().num_rows)

    return run, con.close


Timings = dict[tuple[str, str], tuple[float, int]]  # (runner, query) → (best seconds, rows)


def interleaved(runners: dict[str, Runner], queries: list[str], repeat: int, settle_s: float = 0.0) -> Timings:
    """Best of `repeat` for every (runner, query), alternating runners so both see the same load. With `settle_s`,
    a pause after each run (not timed): what a run leaves to do in the background (the server closes the query's
    database and builds the next one) is then not done while the other runner is timed."""
    best: Timings = {}
    for sql in queries:
        for run in runners.values():
            run(sql)  # warm-up
        for _ in range(repeat):
            for name, run in runners.items():
                t0 = time.perf_counter()
                rows = run(sql)
                elapsed = time.perf_counter() - t0
                if (name, sql) not in best or elapsed < best[(name, sql)][0]:
                    best[(name, sql)] = (elapsed, rows)
                time.sleep(settle_s)
    return best


def measure_psycopg(lake: Path, org_id: str, repeat: int) -> tuple[float, int] | None:
    import psycopg
    from deltalake import DeltaTable

    url = PG_DEFAULT
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        url = os.environ.get("FLASKTRACK_BENCH_PG_URL", "")
        if not url:
            print("psycopg: no PostgreSQL at 127.0.0.1:5432 and FLASKTRACK_BENCH_PG_URL unset; skipped")
            return None
    rows = DeltaTable(str(lake / TABLE)).to_pyarrow_dataset(file_pruning_predicate=[("org_id", "=", org_id)]).to_table()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench_flight CASCADE")
        conn.execute("CREATE SCHEMA bench_flight")
        try:
            conn.execute(
                f"CREATE TABLE bench_flight.{TABLE} (org_id uuid, run_id text, step_key text, submitted_by text, "
                "submitted_at timestamptz, ph double precision, od600 double precision, "
                "temperature_c double precision, colony_count bigint, media_lot text, notes text)"
            )
            buf = io.BytesIO()
            pacsv.write_csv(rows, buf, pacsv.WriteOptions(include_header=False))
            with conn.cursor() as cur, cur.copy(f"COPY bench_flight.{TABLE} FROM STDIN (FORMAT csv)") as copy:
                copy.write(buf.getvalue())
            conn.execute(f"VACUUM ANALYZE bench_flight.{TABLE}")

            def fetch() -> int:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT * FROM bench_flight.{TABLE}")
                    return len(cur.fetchall())

            return best_of(repeat, fetch)
        finally:
            conn.execute("DROP SCHEMA IF EXISTS bench_flight CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--batch-bytes", type=int, default=8 * 1024 * 1024)
    parser.add_argument("--prefetch", type=int, default=4, help="batches the server may prepare ahead")
    parser.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL comparison")
    parser.add_argument("--settle-ms", type=float, default=0.0,
                        help="untimed pause after each run, so background work of one run does not slow the next")
    args = parser.parse_args()

    root = Path(os.environ.get("FLASKTRACK_BENCH_DIR", Path(tempfile.gettempdir()) / "flasktrack-bench"))
    lake = root / "lake"
    generate(lake, args.rows, args.orgs)
    org_id = org_ids(args.orgs)[3]

    opts = {"max_batch_bytes": args.batch_bytes, "prefetch_batches": args.prefetch}
    proc, uri = start_server(lake, org_id, opts)
    queries = [FULL_SCAN, ENGINE_SCAN, AGGREGATE]
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stop_server, proc)  # whatever fails below, the server process does not outlive us
        ours, close_ours = flight_runner(uri)
        cleanup.callback(close_ours)
        local, close_local = in_process_runner(lake, org_id)
        cleanup.callback(close_local)
        best = interleaved({"flight": ours, "local": local}, queries, args.repeat, args.settle_ms / 1000)
    assert best[("flight", FULL_SCAN)][1] == best[("local", FULL_SCAN)][1] == best[("flight", ENGINE_SCAN)][1]
    labels = {FULL_SCAN: "full scan", ENGINE_SCAN: "full scan via engine", AGGREGATE: "aggregate"}
    for who, title in (("flight", "flight sql (ADBC)"), ("local", "duckdb in-process")):
        for sql, label in labels.items():
            seconds, rows = best[(who, sql)]
            print(f"{title:18s} {label:22s} {seconds * 1000:8.1f} ms  ({rows:,} rows)")
    print(f"  ({FULL_SCAN!r} is streamed straight from the Delta dataset; {ENGINE_SCAN!r} runs in DuckDB)")
    flight_scan, local_scan = best[("flight", FULL_SCAN)][0], best[("local", FULL_SCAN)][0]

    pg = None if args.no_pg else measure_psycopg(lake, org_id, args.repeat)
    if pg is not None:
        print(f"psycopg fetchall   {'full scan':22s} {pg[0] * 1000:8.1f} ms  ({pg[1]:,} rows)")
    x = flight_scan / local_scan
    y = (pg[0] / flight_scan) if pg is not None else float("nan")
    x2 = best[("flight", ENGINE_SCAN)][0] / best[("local", ENGINE_SCAN)][0]
    x3 = best[("flight", AGGREGATE)][0] / best[("local", AGGREGATE)][0]
    print(f"  load average {os.getloadavg()[0]:.2f}")
    print(f"vs in-process {x:.2f}  vs psycopg {y:.1f}  engine {x2:.2f}  aggregate {x3:.2f}")


if __name__ == "__main__":
    main()
