"""Auditor's package benchmark: one run's entries out of a large chain, proven by Merkle inclusion proofs.

    .venv/bin/python bench/audit_package.py                  # a 1,000,000-entry chain
    .venv/bin/python bench/audit_package.py --entries 20000  # a quick run

An organization's chain of `--entries` entries (bulk COPY into audit_pending, sealed by `audit_seal`, the bodies
the recorder writes), among them `--run-entries` entries about one run (entity `run/<id>`, recorded through the
real recorder) spread evenly over the chain, and one signed checkpoint (which builds the stored Merkle tree, as
the first checkpoint after the upgrade does). Then a few more entries arrive, and the bench times, on the app role
as the API runs them:

- package build: `domain.audit.packages.build` for that run (seals, verifies the chain since the last checkpoint,
  grows the tree, signs a new checkpoint, selects the entries, builds their inclusion proofs, writes the zip);
- package verify: `domain.audit.package_verify.verify_package` on the archive's bytes with the public key, offline;
- whole chain: `domain.audit.service.verify_org` over every entry (what verification needed before packages).

Targets: build <= 2 s, verify <= 0.2 s. Server: FLASKTRACK_BENCH_DATABASE_URL (owner role) or an embedded
PostgreSQL under FLASKTRACK_BENCH_DATA_DIR. The last line is exactly `package build A s  verify B s  whole-chain C s`.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.audit_append import ACTOR, CONTEXT, fast_bodies, new_org, say  # noqa: E402
from core.config import Settings  # noqa: E402
from core.db import TenantSessions, app_url, libpq_url, make_engine  # noqa: E402
from domain.audit import packages, record, service  # noqa: E402
from domain.audit.checkpoints import CheckpointStore, load_or_create_signing_key, load_public_keys  # noqa: E402
from domain.audit.models import PackageCreate  # noqa: E402
from domain.audit.package_verify import verify_package  # noqa: E402
from domain.roles import Caller, Role  # noqa: E402
from flasktrack.postgres import scratch_database, scratch_server, upgrade_schema  # noqa: E402

COLS = ("org_id", "body", "occurred_at", "actor_type", "actor_id", "actor_display", "action", "entity_type",
        "entity_id", "severity", "reason", "request_id", "api_key_id")


def copy_pending(owner_libpq: str, org: uuid.UUID, start: int, n: int) -> None:
    """n recorder-shaped sample entries (bench/audit_append.py's bodies) into audit_pending via COPY."""
    fixed = f"{ACTOR.type}\t{ACTOR.id}\t{ACTOR.display}\tupdate\tsample"
    with psycopg.connect(owner_libpq, autocommit=True) as c:
        done = 0
        while done < n:
            m = min(100_000, n - done)
            lines = [
                f"{org}\t\\\\x{raw.hex()}\t{b['occurred_at']}\t{fixed}\t{b['entity']['id']}\t"  # type: ignore[index]
                f"info\taliquot for assay run\t{CONTEXT.request_id}\t\\N\n"
                for _, raw, b in fast_bodies(org, start + done, m)
            ]
            with c.cursor() as cur, cur.copy(f"COPY audit_pending ({', '.join(COLS)}) FROM STDIN") as cp:
                cp.write("".join(lines))
            done += m


def seal_all(owner_libpq: str, org: uuid.UUID) -> None:
    with psycopg.connect(owner_libpq, autocommit=True) as c:
        while True:
            row = c.execute("SELECT audit_seal(%s, 100000)", (org,)).fetchone()
            if not row or int(row[0]) == 0:
                break


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000, help="entries in the organization's chain")
    ap.add_argument("--run-entries", type=int, default=60, help="entries about the packaged run")
    args = ap.parse_args()
    total, run_n = args.entries, args.run_entries
    if not 0 < run_n < total:
        ap.error("--run-entries must be between 1 and --entries")
    server = scratch_server("bench")
    say(f"audit package benchmark: a chain of {total:,} entries, {run_n} of them about one run")
    with scratch_database(server, "ft_bench_pkg") as url, tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp:
        settings = Settings(database_url=url, data_dir=Path(tmp))
        upgrade_schema(url, app_password=settings.app_db_password)
        owner_libpq = libpq_url(url)
        owner = TenantSessions(make_engine(url, pool_size=2))
        app = TenantSessions(make_engine(app_url(settings, url), pool_size=4))
        key = load_or_create_signing_key(Path(tmp) / "keys" / "audit.pem")
        keys = load_public_keys([Path(tmp) / "keys"])
        store = CheckpointStore(Path(tmp) / "checkpoints")
        org = new_org(owner, "pkg")  # seq 1: its creation
        run_id = str(uuid.uuid4())
        bulk = total - 1 - run_n
        t = time.perf_counter()
        done = 0
        for i in range(run_n):  # the run's entries spread evenly over the chain
            part = bulk * (i + 1) // run_n - done
            copy_pending(owner_libpq, org, done, part)
            done += part
            with app.begin(org) as s:
                record(s, org_id=org, actor=ACTOR, action="update" if i else "launch", entity_type="run",
                       entity_id=run_id, after={"step": i, "status": "running"}, context=CONTEXT)
            if i % 10 == 9 or i == run_n - 1:
                seal_all(owner_libpq, org)
        with psycopg.connect(owner_libpq, autocommit=True) as c:
            c.execute("VACUUM ANALYZE audit_log")
        say(f"  built the chain in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        with app.begin(org) as s:
            cp0 = service.write_checkpoint(s, org, key, store)
        assert cp0 is not None and cp0.size == total, (cp0, total)
        say(f"  first checkpoint (verifies the chain, builds the stored tree): {time.perf_counter() - t:.1f}s")
        with app.begin(org) as s:  # entries arrive after it: the package's checkpoint extends the tree
            for i in range(5):
                record(s, org_id=org, actor=ACTOR, action="view", entity_type="sample", entity_id=f"S-late-{i}",
                       context=CONTEXT)

        caller = Caller(org_id=org, org_slug="bench", role=Role.auditor, actor=ACTOR, context=CONTEXT)
        req = PackageCreate(scope="entity", entity_type="run", id=run_id)
        with app.begin(org) as s:
            t = time.perf_counter()
            built = packages.build(s, caller, req, key=key, store=store)
            data = built.archive.read()
            t_build = time.perf_counter() - t
        say(f"  package: {built.entries} entries, tree of {built.checkpoint.size:,}, {len(data):,} bytes, "
            f"built in {t_build:.3f}s")
        if built.entries != run_n:
            raise SystemExit(f"the package holds {built.entries} entries, not {run_n}")

        t = time.perf_counter()
        res = verify_package(io.BytesIO(data), key.public)
        t_verify = time.perf_counter() - t
        if not res.ok:
            raise SystemExit(f"package verification failed: {res.summary()}")
        say(f"  offline verification: {t_verify:.3f}s ({res.summary()[:60]}...)")

        with app.begin(org) as s:
            t = time.perf_counter()
            whole = service.verify_org(s, org, store=store, keys=keys)
            t_whole = time.perf_counter() - t
        if not whole.ok:
            raise SystemExit(f"whole-chain verification failed: {whole.summary()}")
        say(f"  whole-chain verify_org: {whole.count:,} entries in {t_whole:.2f}s")
        with app.begin(org) as s:
            t = time.perf_counter()
            tree_check = service.verify_org(s, org, store=store, keys=keys, merkle_tree=True)
            t_tree = time.perf_counter() - t
        if not tree_check.ok:
            raise SystemExit(f"verification with the tree failed: {tree_check.summary()}")
        say(f"  whole-chain verify_org with the Merkle tree rebuilt: {t_tree:.2f}s")
        app.engine.dispose()
        owner.engine.dispose()
    say(f"targets: build <= 2 s, verify <= 0.2 s (chain of {total:,} entries, {run_n} in the package)")
    say(f"package build {t_build:.3f} s  verify {t_verify:.3f} s  whole-chain {t_whole:.2f} s")


if __name__ == "__main__":
    main()
