"""Benches in a tiny configuration, and the CLI run as `python -m`: they leave no process or scratch folder
behind (an exit through os._exit used to skip stopping the embedded PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _left(sid: int, folder: Path) -> list[str]:
    """Live processes of the bench's session, or using its folder (pg_ctl starts PostgreSQL in a session of its
    own)."""
    ps = subprocess.run(["ps", "-ww", "-eo", "pid=,sid=,stat=,args="], capture_output=True, text=True)
    rows = ps.stdout.splitlines()
    return [r for r in rows if not r.split()[2].startswith("Z") and (r.split()[1] == str(sid) or str(folder) in r)]


def _run_alone(args: list[str], *, returncode: int = 0, **env: str) -> str:
    """The bench in its own session with its own temporary folder; its output. Fails if any process it started
    outlives it (they are stopped then, so nothing leaks anyway)."""
    scratch = Path(tempfile.mkdtemp(prefix="ftb-"))  # short: PostgreSQL's socket path must fit 107 bytes
    full_env = {**os.environ, "TMPDIR": str(scratch), "FLASKTRACK_DATA_DIR": str(scratch / "data"), **env}
    for shared in ("FLASKTRACK_BENCH_DATA_DIR", "FLASKTRACK_BENCH_DATABASE_URL", "FLASKTRACK_DATABASE_URL"):
        full_env.pop(shared, None)
    try:
        p = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=full_env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = p.communicate(timeout=900)
        left = _left(p.pid, scratch)
        deadline = time.monotonic() + 10
        while left and time.monotonic() < deadline:  # a child may still be on its way out; bounded
            time.sleep(0.1)
            left = _left(p.pid, scratch)
        for row in left:
            os.kill(int(row.split()[0]), signal.SIGINT if "postgres" in row else signal.SIGKILL)  # SIGINT: fast stop
        assert p.returncode == returncode, out[-3000:]
        assert left == [], left
        assert [f.name for f in scratch.iterdir() if f.name.startswith("flasktrack-")] == []
        return out
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_step_latency_bench_leaves_nothing_running():
    out = _run_alone(["bench/step_latency.py"], FLASKTRACK_BENCH_RUNS="1", FLASKTRACK_BENCH_STEPS="2",
                     FLASKTRACK_BENCH_PARALLEL="2")
    assert "p50 ratio" in out


def test_lineage_bench_leaves_nothing_running():
    out = _run_alone(["bench/lineage.py", "--samples", "2000", "--queries", "20"])
    assert out.strip().splitlines()[-1].startswith("lineage api p50 "), out[-2000:]


def test_flight_scan_bench_leaves_nothing_running(tmp_path):
    out = _run_alone(["bench/flight_scan.py", "--rows", "4000", "--orgs", "4", "--repeat", "1", "--no-pg"],
                     FLASKTRACK_BENCH_DIR=str(tmp_path / "bench"))
    assert "vs in-process" in out


def test_a_cli_command_stops_the_embedded_server_it_started():
    """`python -m flasktrack.cli` against `.flasktrack/` starts the embedded server when none runs; it is
    stopped again when the command ends (here with an error: the database has no schema yet)."""
    out = _run_alone(["-m", "flasktrack.cli", "audit", "verify"], returncode=2)
    assert out.strip().splitlines()[-1].startswith("error: database:"), out


def test_backup_bench_leaves_nothing_running():
    out = _run_alone(["bench/backup.py"], FLASKTRACK_BENCH_AUDIT_ENTRIES="2000", FLASKTRACK_BENCH_OUTBOX_ROWS="2000")
    assert out.strip().splitlines()[-1].startswith("backup ratio "), out


def test_pages_bench_leaves_nothing_running():
    out = _run_alone(["bench/pages.py"], FLASKTRACK_BENCH_RUNS="4", FLASKTRACK_BENCH_REQUESTS="2")
    assert out.strip().splitlines()[-1].startswith("p50 ratio "), out


def test_audit_package_bench_leaves_nothing_running():
    out = _run_alone(["bench/audit_package.py", "--entries", "3000", "--run-entries", "12"])
    last = out.strip().splitlines()[-1]
    assert last.startswith("package build ") and "  verify " in last and "  whole-chain " in last, out[-2000:]
