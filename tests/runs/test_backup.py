"""`flasktrack backup create|restore`: a backup taken mid-work (runs done, one waiting on a task, the sink and
the audit export part of the way) comes back in an empty database and lake; the chain verifies, the lake and
the database agree, and the open run continues on the Temporal server that kept its history."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from fastapi.testclient import TestClient
from sqlalchemy import text
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import build_platform, create_app
from api.deps import Platform
from core.config import Settings, get_settings
from core.db import TenantSessions, make_engine
from domain.roles import Role
from flasktrack.cli import run_cli
from flasktrack.postgres import scratch_database, upgrade_schema
from flasktrack.up import start_temporal
from lake.sink import Sink, SinkSettings
from lake.writer import Lake
from tests.runs.conftest import WorkerProcess
from tests.runs.support import complete, launch_with_open_task
from tests.support import make_org

VALUES = {"mass_g": 12.5, "balance": "B-7"}
CHECKLIST = ["balance_calibrated"]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """`flasktrack …` in this process against the platform whose database and data folder are given. Logging is
    left as the suite configured it: configured here, it would write to this test's captured output, closed after
    it, and fail later tests' log lines."""
    monkeypatch.setattr("flasktrack.cli.configure_logging", lambda *_: None)

    def run(url: str, data_dir: Path, *args: str) -> tuple[int, str, str]:
        monkeypatch.setenv("FLASKTRACK_DATABASE_URL", url)
        monkeypatch.setenv("FLASKTRACK_DATA_DIR", str(data_dir))
        monkeypatch.setenv("FLASKTRACK_LOG_LEVEL", "WARNING")
        get_settings.cache_clear()
        capsys.readouterr()
        code = run_cli(list(args))
        captured = capsys.readouterr()
        get_settings.cache_clear()
        return code, captured.out, captured.err

    return run


def _settings(url: str, data_dir: Path, queue: str, temporal: str | None = None) -> Settings:
    return Settings(database_url=url, data_dir=data_dir, task_queue=queue, log_json=True, checkpoint_interval_s=3600,
                    temporal_address=temporal)


@contextmanager
def _serving(url: str, data_dir: Path, queue: str, temporal: str, client: Client | None = None
             ) -> Iterator[tuple[Platform, TestClient, WorkerProcess]]:
    """The API (in process) and a worker (a subprocess) of one platform, on the Temporal server at `temporal`
    (through `client` when given, e.g. the shared dev server's)."""
    platform = build_platform(_settings(url, data_dir, queue, temporal))
    if client is not None:
        platform.temporal = client
    env = {**os.environ, "FLASKTRACK_DATABASE_URL": url, "FLASKTRACK_DATA_DIR": str(data_dir),
           "FLASKTRACK_TEMPORAL_ADDRESS": temporal, "FLASKTRACK_TASK_QUEUE": queue, "FLASKTRACK_LOG_LEVEL": "WARNING"}
    worker = WorkerProcess(env, data_dir / "worker.log", queue)
    worker.start()
    try:
        with TestClient(create_app(platform)) as client:
            yield platform, client, worker
    finally:
        worker.stop()
        platform.sessions.engine.dispose()


def _address(env: WorkflowEnvironment) -> str:
    return str(env.client.service_client.config.target_host)


def _lake_ids(lake_root: Path, table: str, column: str, org: uuid.UUID) -> list[str]:
    t = DeltaTable(str(lake_root / table)).to_pyarrow_table()
    return sorted(t.filter(pc.equal(t["org_id"], str(org)))[column].to_pylist())


def _db_ids(owner: TenantSessions, query: str, org: uuid.UUID) -> list[str]:
    with owner.begin(None) as s:
        return sorted(str(r[0]) for r in s.execute(text(query), {"o": org}).all())


def test_a_backup_taken_mid_work_restores_and_the_open_run_continues(dev_env, database_url, tmp_path, cli):
    queue = f"backup-{uuid.uuid4().hex[:8]}"
    src_dir, dst_dir, backup = tmp_path / "src", tmp_path / "dst", tmp_path / "backup"
    with scratch_database(database_url, "ft_bk_src") as src_url, \
            scratch_database(database_url, "ft_bk_dst") as dst_url, \
            scratch_database(database_url, "ft_bk_bad") as bad_url:
        upgrade_schema(src_url)
        src_owner = TenantSessions(make_engine(src_url, pool_size=2))
        src_lake = Lake(str(src_dir / "lake"))
        with _serving(src_url, src_dir, queue, _address(dev_env), dev_env.client) as (_, client, _worker):
            org = make_org(src_owner, client)
            for _ in range(2):  # two runs done, their rows in the lake
                _, task = launch_with_open_task(client, src_owner, org, "bk")
                r = complete(client, org, task["id"], VALUES, CHECKLIST)
                assert r.status_code == 200 and r.json()["run_status"] == "completed", r.text
            Sink(src_owner.engine, src_lake, SinkSettings()).drain()
            assert cli(src_url, src_dir, "audit", "checkpoint")[0] == 0
            # One run waits on its task; its launch is still in the outbox and its audit entries unexported.
            open_run, open_task = launch_with_open_task(client, src_owner, org, "bk")
            code, out, err = cli(src_url, src_dir, "backup", "create", str(backup))
            assert code == 0, err
            assert "PRIVATE" not in out and not (backup / "keys" / "signing-key.pem").exists()
            assert list((backup / "keys").glob("*.pub.pem")) and (backup / "database.dump").is_file()
        src_owner.engine.dispose()

        # A restore refuses a damaged backup before it changes anything.
        damaged = tmp_path / "damaged"
        shutil.copytree(backup, damaged)
        victim = next(p for p in sorted((damaged / "lake").rglob("*.parquet")))
        victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
        code, _, err = cli(bad_url, tmp_path / "bad", "backup", "restore", str(damaged))
        assert code == 2 and "damaged" in err, err
        assert not (tmp_path / "bad" / "lake").exists()

        code, out, err = cli(dst_url, dst_dir, "backup", "restore", str(backup))
        assert code == 0, err
        code, out, err = cli(dst_url, dst_dir, "audit", "verify")
        assert code == 0 and f"{org.slug}" in out and "ok" in out, out + err
        # Restoring into what is now a live database is refused, and changes nothing.
        code, _, err = cli(dst_url, tmp_path / "other", "backup", "restore", str(backup))
        assert code == 2 and "not empty" in err, err
        assert not (tmp_path / "other").exists()

        dst_owner = TenantSessions(make_engine(dst_url, pool_size=2))
        with _serving(dst_url, dst_dir, queue, _address(dev_env), dev_env.client) as (_, client, _worker):
            # The run waiting at backup time goes on: the task is completed through the API, against the
            # restored database, by a worker serving it.
            tasks = client.get("/api/v1/tasks", params={"run_id": open_run}, headers=org.headers(Role.technician))
            assert [t["id"] for t in tasks.json()] == [open_task["id"]], tasks.text
            r = complete(client, org, open_task["id"], VALUES, CHECKLIST)
            assert r.status_code == 200 and r.json()["run_status"] == "completed", r.text
            run = client.get(f"/api/v1/runs/{open_run}", headers=org.headers(Role.technician))
            assert run.json()["status"] == "completed", run.text
        dst_lake = Lake(str(dst_dir / "lake"))
        Sink(dst_owner.engine, dst_lake, SinkSettings()).drain()
        assert cli(dst_url, dst_dir, "audit", "verify")[0] == 0

        # The lake and the database agree: every row once, none missing.
        with dst_owner.begin(None) as s:
            assert s.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 0
            form_keys = s.execute(text("SELECT DISTINCT form_key FROM form_submissions WHERE org_id = :o"),
                                  {"o": org.id}).scalars().all()
        assert len(form_keys) == 3  # one protocol, and form, per run
        for key in form_keys:
            submissions = _db_ids(
                dst_owner, f"SELECT id FROM form_submissions WHERE org_id = :o AND form_key = '{key}'", org.id)
            assert len(submissions) == 1
            assert _lake_ids(dst_dir / "lake", f"form_{key}", "submission_id", org.id) == submissions
        events = _db_ids(dst_owner, "SELECT id FROM step_events WHERE org_id = :o", org.id)
        assert _lake_ids(dst_dir / "lake", "step_events", "event_id", org.id) == events
        entries = _db_ids(dst_owner, "SELECT seq::text FROM audit_log WHERE org_id = :o", org.id)
        assert _lake_ids(dst_dir / "lake", "audit_log", "seq", org.id) == sorted(int(e) for e in entries)
        dst_owner.engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _temporal_dev_server(data_dir: Path) -> Iterator[str]:
    """The Temporal dev server as `flasktrack up` runs it (its state in data_dir/temporal.db); its address."""
    port = _free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = start_temporal(Settings(data_dir=data_dir, temporal_port=port), data_dir)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


def test_with_the_temporal_dev_servers_file_a_run_continues_on_a_new_server(database_url, tmp_path, cli):
    """When Temporal is lost too: the dev server's database file, copied with the platform's workers stopped,
    is Temporal's backup; a new server started from the restored copy has the waiting run, which continues."""
    queue = f"backup-{uuid.uuid4().hex[:8]}"
    src_dir, dst_dir, backup = tmp_path / "src", tmp_path / "dst", tmp_path / "backup.tar.gz"
    with scratch_database(database_url, "ft_bkt_src") as src_url, \
            scratch_database(database_url, "ft_bkt_dst") as dst_url:
        upgrade_schema(src_url)
        src_owner = TenantSessions(make_engine(src_url, pool_size=2))
        with _temporal_dev_server(src_dir) as temporal:
            with _serving(src_url, src_dir, queue, temporal) as (_, client, _worker):
                org = make_org(src_owner, client)
                open_run, open_task = launch_with_open_task(client, src_owner, org, "bkt")
        # The first server is gone, as after losing the machine; the backup had been taken with workers stopped.
        src_owner.engine.dispose()
        code, out, err = cli(src_url, src_dir, "backup", "create", "--with-temporal", "--include-signing-key",
                             str(backup))
        assert code == 0 and "Temporal" in out and "PRIVATE signing key" in out, err
        assert "worker" not in err  # no live worker while Temporal's file was copied

        code, out, err = cli(dst_url, dst_dir, "backup", "restore", str(backup))
        assert code == 0, err
        assert (dst_dir / "temporal.db").is_file()
        key = Path("keys") / "audit-ed25519.pem"
        assert (dst_dir / key).read_bytes() == (src_dir / key).read_bytes()  # asked for: the same signing key
        with _temporal_dev_server(dst_dir) as temporal, \
                _serving(dst_url, dst_dir, queue, temporal) as (_, client, _worker):
            r = complete(client, org, open_task["id"], VALUES, CHECKLIST)
            assert r.status_code == 200 and r.json()["run_status"] == "completed", r.text
        assert cli(dst_url, dst_dir, "audit", "verify")[0] == 0
        assert open_run
