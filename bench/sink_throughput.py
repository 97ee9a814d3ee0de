"""Lake sink throughput: outbox rows → Delta rows/s, and files written.

    .venv/bin/python bench/sink_throughput.py

Bulk-loads outbox rows shaped exactly like the run engine's (the contract in lake/README.md: 70 % step
events, 20 % form submissions over two forms with ten typed fields, 10 % run revisions, spread over
FLASKTRACK_BENCH_ORGS orgs) with COPY, then times the real sink (`Sink.drain`: claim, type, exactly-once
Delta commit, acknowledge; batches of FLASKTRACK_SINK_BATCH_ROWS) until the outbox is empty, into a
fresh lake folder. Checks that no batch wrote more than one file per partition per table.

Server: FLASKTRACK_BENCH_DATABASE_URL (owner role) or an embedded PostgreSQL under
FLASKTRACK_BENCH_DATA_DIR (default <tmp>/flasktrack-bench). A scratch database is created, migrated
with `flasktrack.postgres.upgrade_schema`, and dropped at the end.
Knobs: FLASKTRACK_BENCH_ROWS (300000), FLASKTRACK_BENCH_ORGS (10), FLASKTRACK_BENCH_ROUNDS (2, best
round reported).
The last line is exactly `rows/s N  files F`.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import psycopg
from deltalake import DeltaTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.db import libpq_url, make_engine  # noqa: E402
from flasktrack.postgres import scratch_database, start_embedded_postgres, upgrade_schema  # noqa: E402
from lake.sink import Sink, SinkSettings  # noqa: E402
from lake.writer import Lake  # noqa: E402

ROWS = int(os.environ.get("FLASKTRACK_BENCH_ROWS", "300000"))
ORGS = int(os.environ.get("FLASKTRACK_BENCH_ORGS", "10"))
ROUNDS = int(os.environ.get("FLASKTRACK_BENCH_ROUNDS", "2"))

FORMS = {
    "cell_count": [("ph", "number", "pH", None), ("viable_cells", "integer", "Viable cells", "cells/mL"),
                   ("sterile", "boolean", "Sterile", None), ("medium", "choice", "Medium", None),
                   ("notes", "text", "Notes", None), ("harvest_date", "date", "Harvest date", None),
                   ("read_at", "datetime", "Read at", None), ("sample", "sample_ref", "Sample", None),
                   ("batch", "batch_ref", "Batch", None), ("photo", "evidence_ref", "Photo", None)],
    "qc_check": [("od600", "number", "OD600", None), ("passed", "boolean", "Passed", None),
                 ("operator", "text", "Operator", None)],
}
FIELDS = {k: [{"key": f, "label": lbl, "type": t, "unit": u, "required": True} for f, t, lbl, u in v]
          for k, v in FORMS.items()}


PGDATA: Path | None = None  # the embedded server's data folder, to account for its CPU time


def server() -> str:
    global PGDATA
    url = os.environ.get("FLASKTRACK_BENCH_DATABASE_URL")
    if url:
        return url
    data = Path(os.environ.get("FLASKTRACK_BENCH_DATA_DIR", Path(tempfile.gettempdir()) / "flasktrack-bench"))
    PGDATA = data / "pg"
    return start_embedded_postgres(data)


def postgres_cpu_s() -> float | None:
    """CPU seconds used so far by the embedded server's processes (postmaster, live and exited children), from
    /proc: connections closed during the run (pool overflow) count too."""
    try:
        postmaster = int((PGDATA / "postmaster.pid").read_text().split()[0]) if PGDATA else None
    except (OSError, ValueError):
        return None
    if postmaster is None:
        return None
    ticks = 0
    try:  # the postmaster itself, and the backends that have exited (it waited for them: cutime, cstime)
        own = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += sum(int(v) for v in own[11:15])
    except OSError:
        return None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:  # ppid
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def payload(i: int, org: str) -> tuple[str, bytes]:
    ts = f"2024-05-01T07:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1_000_000:06d}Z"
    run_id = f"run-{i // 50:08d}"
    kind = i % 10
    if kind < 7:
        body: dict[str, object] = {
            "event_id": str(uuid.UUID(int=i)), "org_id": org, "run_id": run_id, "protocol_key": "cell-passage",
            "protocol_version": 3, "step_key": f"step_{i % 12}", "step_kind": "task", "event": "completed",
            "iteration": i % 3, "actor_type": "user", "actor_id": "u-42", "actor_display": "Ada Lovelace",
            "occurred_at": ts, "detail": {"duration_s": i % 900, "note": "within limits"}}
        return "step_event", orjson.dumps(body)
    if kind < 9:
        form = "cell_count" if kind == 7 else "qc_check"
        values: dict[str, object] = (
            {"ph": f"7.{i % 100:02d}", "viable_cells": 100_000 + i, "sterile": i % 2 == 0, "medium": "DMEM",
             "notes": "clear, no debris", "harvest_date": "2024-05-01", "read_at": ts, "sample": f"S-{i}",
             "batch": f"B-{i // 1000}", "photo": None}
            if form == "cell_count" else {"od600": f"0.{i % 1000:03d}", "passed": True, "operator": "Ada"})
        body = {"submission_id": str(uuid.UUID(int=i)), "org_id": org, "run_id": run_id,
                "protocol_key": "cell-passage", "protocol_version": 3, "step_key": "count", "form_key": form,
                "iteration": 0, "submitted_by": "u-42", "submitted_by_display": "Ada Lovelace", "submitted_at": ts,
                "fields": FIELDS[form], "values": values}
        return "form_submission", orjson.dumps(body)
    body = {"run_id": run_id, "org_id": org, "protocol_key": "cell-passage", "protocol_version": 3,
            "status": "running", "launched_by": "u-42", "launched_at": ts, "updated_at": ts, "ended_at": None,
            "subjects": [{"type": "sample", "id": f"S-{i}"}], "parameters": {"passage": 4}, "time_scale": 1.0,
            "revision": i}
    return "run", orjson.dumps(body)


def load_outbox(url: str, orgs: list[str], n: int) -> float:
    started = time.perf_counter()
    buf = io.BytesIO()
    for i in range(n):
        org = orgs[(i // 10) % len(orgs)]
        topic, body = payload(i, org)
        # COPY text format: escape backslashes; JSON from orjson has no raw tabs or newlines.
        buf.write(f"{org}\t{topic}\t".encode() + body.replace(b"\\", b"\\\\") + b"\n")
    with psycopg.connect(libpq_url(url)) as c, c.cursor() as cur:
        # COPY goes to the table: `outbox` is a view over `outbox_rows` since migration 0027.
        with cur.copy("COPY outbox_rows (org_id, topic, payload) FROM STDIN") as cp:
            cp.write(buf.getvalue())
        c.commit()
    with psycopg.connect(libpq_url(url), autocommit=True) as c:
        c.execute("VACUUM ANALYZE outbox_rows")
    return time.perf_counter() - started


def files_per_table(root: str) -> dict[str, int]:
    lake = Lake(root)
    return {t: len(DeltaTable(lake.uri(t)).file_uris()) for t in lake.tables()}


def one_round(url: str, orgs: list[str]) -> tuple[float, int, int, int, dict[str, int]]:
    load_s = load_outbox(url, orgs, ROWS)
    with tempfile.TemporaryDirectory(prefix="sinkbench-") as d:
        engine = make_engine(url, pool_size=2)
        sink = Sink(engine, Lake(d), SinkSettings())
        pg0, cpu0, started = postgres_cpu_s(), time.process_time(), time.perf_counter()
        moved = sink.drain()
        elapsed = time.perf_counter() - started
        sink_cpu, pg1 = time.process_time() - cpu0, postgres_cpu_s()
        files = files_per_table(d)
        engine.dispose()
    print(f"  load average {os.getloadavg()[0]:.2f}; loaded {ROWS:,} outbox rows by COPY in {load_s:.1f} s; "
          f"drained {moved:,} rows in {elapsed:.2f} s ({sink.batches} batches): {moved / elapsed:,.0f} rows/s, "
          f"files {files}")
    pg = f", PostgreSQL {(pg1 - pg0) / moved * 1e6:.1f} µs" if pg0 is not None and pg1 is not None else ""
    print(f"  CPU per row: sink process {sink_cpu / moved * 1e6:.1f} µs{pg}")
    return elapsed, moved, sink.batches, sum(files.values()), files


def main() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with scratch_database(server(), "ft_sinkbench") as url:
        upgrade_schema(url)
        orgs = [str(uuid.uuid4()) for _ in range(ORGS)]
        with psycopg.connect(libpq_url(url), autocommit=True) as c:
            for k, o in enumerate(orgs):
                c.execute("INSERT INTO organizations (id, slug, name) VALUES (%s, %s, %s)", (o, f"bench-{k}", "Bench"))
        cfg = SinkSettings()
        print(f"sink throughput: {ROWS:,} outbox rows, {ORGS} orgs, batches of {cfg.batch_rows:,} rows, "
              f"{ROUNDS} rounds (best reported); {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        results = [one_round(url, orgs) for _ in range(ROUNDS)]
    elapsed, moved, batches, files, per_table = min(results, key=lambda r: r[0])
    # One file per (table, org partition) per batch at most: target_file_size is far above a batch.
    limit = batches * ORGS * len(per_table)
    assert files <= limit, f"{files} files for {batches} batches: more than one per partition per batch"
    print(f"files: {files} for {batches} batches x {ORGS} partitions x {len(per_table)} tables (limit {limit})")
    print(f"rows/s {moved / elapsed:.0f}  files {files}")


if __name__ == "__main__":
    main()
