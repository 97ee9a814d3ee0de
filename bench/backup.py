"""Backup and restore timing (the RPO/RTO figures of docs/operations.md): one run, one server, every figure from
this process, each beside a plain pg_dump / pg_restore of the same database as the reference.

    .venv/bin/python bench/backup.py

Two scales, one after the other on one database:
  demo   what `flasktrack up` seeds (the demo org, its users and example protocols), the lake drained, a
         signed checkpoint;
  large  plus FLASKTRACK_BENCH_AUDIT_ENTRIES (100000) sealed audit entries in one more org and
         FLASKTRACK_BENCH_OUTBOX_ROWS (100000) step events, form submissions and run revisions drained into
         the lake (and their audit entries exported to it), a signed checkpoint.
For each: `backup create` (flasktrack.backup.create_backup) beside `pg_dump --format=custom` of the same
database; `backup restore` into a fresh empty database and folder beside `pg_restore --single-transaction` into
another; then `audit verify` of the restored database, which an operator runs next (RTO = restore + verify).

Server: FLASKTRACK_BENCH_DATABASE_URL (owner role) or an embedded PostgreSQL under FLASKTRACK_BENCH_DATA_DIR
(default: a temporary one). Scratch databases are created and dropped. The last line is exactly
`backup ratio B  restore ratio R`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.audit_append import copy_pending, new_org  # noqa: E402
from bench.sink_throughput import load_outbox  # noqa: E402
from core.config import Settings  # noqa: E402
from core.db import TenantSessions, libpq_url, make_engine  # noqa: E402
from core.logging import configure_logging  # noqa: E402
from domain.audit import service  # noqa: E402
from domain.audit.checkpoints import CheckpointStore, load_or_create_signing_key, load_public_keys  # noqa: E402
from flasktrack.backup import client_url, create_backup, restore_backup, server_version  # noqa: E402
from flasktrack.demo import seed_demo  # noqa: E402
from flasktrack.postgres import pg_tool, scratch_database, scratch_server, upgrade_schema  # noqa: E402
from lake.sink import Sink, SinkSettings  # noqa: E402
from lake.writer import Lake  # noqa: E402

AUDIT_ENTRIES = int(os.environ.get("FLASKTRACK_BENCH_AUDIT_ENTRIES", "100000"))
OUTBOX_ROWS = int(os.environ.get("FLASKTRACK_BENCH_OUTBOX_ROWS", "100000"))


def say(msg: str) -> None:
    print(msg, flush=True)


def checkpoint_all(owner: TenantSessions, settings: Settings) -> None:
    key = load_or_create_signing_key(settings.resolved_signing_key_path)
    store = CheckpointStore(settings.resolved_checkpoint_dir)
    with owner.begin(None) as s:
        orgs = s.execute(text("SELECT id FROM organizations")).scalars().all()
    for org in orgs:
        with owner.begin(org) as s:
            service.write_checkpoint(s, org, key, store)


def seal_all(url: str, org: uuid.UUID) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as c:
        while True:
            row = c.execute("SELECT audit_seal(%s, 100000)", (org,)).fetchone()
            if not row or int(row[0]) == 0:
                break


def verify_all(url: str, settings: Settings) -> tuple[float, int]:
    """`audit verify` as the CLI runs it: every org's chain against its checkpoints. Seconds, entries."""
    owner = TenantSessions(make_engine(url, pool_size=2))
    keys = load_public_keys([settings.resolved_signing_key_path.parent])
    store = CheckpointStore(settings.resolved_checkpoint_dir)
    started = time.perf_counter()
    entries = 0
    with owner.begin(None) as s:
        orgs = s.execute(text("SELECT id FROM organizations")).scalars().all()
    for org in orgs:
        with owner.begin(org) as s:
            r = service.verify_org(s, org, store=store, keys=keys)
        assert r.ok, r.summary()
        entries += r.count
    owner.engine.dispose()
    return time.perf_counter() - started, entries


def reference(url: str, server: str, folder: Path) -> tuple[float, float]:
    """Seconds of a plain pg_dump (custom format) of the database and of a pg_restore of it into a new one."""
    dbname, env = client_url(url)
    version = server_version(url)
    dump = folder / "reference.dump"
    t = time.perf_counter()
    subprocess.run([str(pg_tool("pg_dump", version)), "--format=custom", f"--file={dump}", f"--dbname={dbname}"],
                   env=env, check=True)
    dump_s = time.perf_counter() - t
    with scratch_database(server, "ft_bench_ref") as ref:
        ref_name, ref_env = client_url(ref)
        t = time.perf_counter()
        subprocess.run([str(pg_tool("pg_restore", version)), "--no-owner", "--exit-on-error", "--single-transaction",
                        f"--dbname={ref_name}", str(dump)], env=ref_env, check=True)
        restore_s = time.perf_counter() - t
    return dump_s, restore_s


def measure(label: str, url: str, server: str, settings: Settings, folder: Path) -> tuple[float, float]:
    dump_s, pg_restore_s = reference(url, server, folder)
    backup = create_backup(settings, folder / f"backup-{label}")
    with scratch_database(server, "ft_bench_restore") as target:
        restored = Settings(database_url=target, data_dir=folder / f"restored-{label}", log_json=True)
        restore = restore_backup(restored, folder / f"backup-{label}")
        verify_s, _ = verify_all(target, restored)
    entries = sum(backup.heads.values())
    b_ratio, r_ratio = backup.seconds / dump_s, restore.seconds / pg_restore_s
    say(f"{label}: {entries:,} audit entries, lake {', '.join(f'{t} v{v}' for t, v in sorted(backup.tables.items()))}"
        f"; backup {backup.bytes / 1e6:.1f} MB in {backup.files} files")
    say(f"  backup create   {backup.seconds:7.2f} s   pg_dump    {dump_s:6.2f} s   ratio {b_ratio:5.2f}   "
        f"(outbox held {backup.timings['hold'] * 1000:.0f} ms; dump {backup.timings['database']:.2f} s, "
        f"lake {backup.timings['lake']:.2f} s)")
    say(f"  backup restore  {restore.seconds:7.2f} s   pg_restore {pg_restore_s:6.2f} s   ratio {r_ratio:5.2f}   "
        f"(database {restore.timings['database']:.2f} s, lake {restore.timings['lake']:.2f} s, "
        f"checks {restore.timings['check']:.2f} s)")
    say(f"  audit verify    {verify_s:7.2f} s   RTO (restore + verify) {restore.seconds + verify_s:.2f} s")
    return b_ratio, r_ratio


def main() -> None:
    configure_logging("WARNING", False)
    server = scratch_server("bench")
    say(f"load average {os.getloadavg()[0]:.2f}; audit entries {AUDIT_ENTRIES:,}, outbox rows {OUTBOX_ROWS:,}")
    with tempfile.TemporaryDirectory(prefix="ftbk-") as tmp, scratch_database(server, "ft_bench_backup") as url:
        folder = Path(tmp)
        upgrade_schema(url)
        settings = Settings(database_url=url, data_dir=folder / "platform", log_json=True)
        owner = TenantSessions(make_engine(url, pool_size=2))
        lake = Lake(settings.resolved_lake_uri)
        seed_demo(owner)
        with owner.begin(None) as s:
            for org in s.execute(text("SELECT id FROM organizations")).scalars().all():
                service.seal(s, org)
        Sink(owner.engine, lake, SinkSettings()).drain()
        checkpoint_all(owner, settings)
        measure("demo", url, server, settings, folder)

        big = new_org(owner, "backup")
        copy_pending(libpq_url(url), big, AUDIT_ENTRIES - 1)
        seal_all(url, big)
        load_outbox(url, [str(big)], OUTBOX_ROWS)
        Sink(owner.engine, lake, SinkSettings()).drain()
        checkpoint_all(owner, settings)
        b_ratio, r_ratio = measure("large", url, server, settings, folder)
        owner.engine.dispose()
    say(f"backup ratio {b_ratio:.2f}  restore ratio {r_ratio:.2f}")


if __name__ == "__main__":
    main()
