"""Audit append and verify benchmark: one run, one server, every figure from this process.

    .venv/bin/python bench/audit_append.py

(a) chained appends/s: 16 writer threads in one org on the REAL write path (app role,
    `domain.audit.record` in its own transaction per entry) while the real background `Sealer`
    runs; an entry counts once it is sealed into the chain and committed, so the clock runs from
    the first write until the last entry is sealed;
(b) the plain-INSERT ceiling: the same 16 writers, the same session/driver path and the same entry
    construction, one INSERT + COMMIT per entry into a plain table with audit_pending's columns
    and indexes (no foreign key, no RLS, no triggers, no sealing);
(c) their ratio (the mean of interleaved rounds of (b) and (a), to even out a shared machine);
(d) `verify_org` over a 1,000,000-entry chain (bulk COPY into audit_pending, sealed by
    `audit_seal` in large batches, one signed checkpoint), timed on the app role as the API runs it.

Server: FLASKTRACK_BENCH_DATABASE_URL (owner role) or an embedded PostgreSQL under
FLASKTRACK_BENCH_DATA_DIR (default <tmp>/flasktrack-bench). A scratch database is created,
migrated with `flasktrack.postgres.upgrade_schema`, and dropped at the end.
Knobs: FLASKTRACK_BENCH_WRITERS (16), FLASKTRACK_BENCH_PER_WRITER (1000), FLASKTRACK_BENCH_ROUNDS (3),
FLASKTRACK_BENCH_VERIFY_ENTRIES (1000000).
The last line is exactly `ratio R  verify V entries/s`.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import Settings  # noqa: E402
from core.db import TenantSessions, app_url, libpq_url, make_engine  # noqa: E402
from domain.audit import record, service  # noqa: E402
from domain.audit.checkpoints import CheckpointStore, load_or_create_signing_key, load_public_keys  # noqa: E402
from domain.audit.recorder import entry_body, entry_params  # noqa: E402
from domain.audit.sealer import Sealer  # noqa: E402
from domain.canonical import canonical_bytes, format_ts  # noqa: E402
from domain.identity import service as identity  # noqa: E402
from domain.roles import Actor, RequestContext  # noqa: E402
from flasktrack.postgres import scratch_database, scratch_server, upgrade_schema  # noqa: E402

WRITERS = int(os.environ.get("FLASKTRACK_BENCH_WRITERS", "16"))
PER_WRITER = int(os.environ.get("FLASKTRACK_BENCH_PER_WRITER", "1000"))
ROUNDS = int(os.environ.get("FLASKTRACK_BENCH_ROUNDS", "3"))
VERIFY_ENTRIES = int(os.environ.get("FLASKTRACK_BENCH_VERIFY_ENTRIES", "1000000"))
VERIFY_RUNS = int(os.environ.get("FLASKTRACK_BENCH_VERIFY_RUNS", "2"))

ACTOR = Actor(type="user", id="3f1d2c4e-0000-4000-8000-00000000b001", display="Ada Lovelace (bench)")
CONTEXT = RequestContext(request_id="bench", client_address="127.0.0.1", user_agent="bench/1.0")

LAGS: list[float] = []  # last write committed -> last entry sealed, per chained round

PLAIN_TABLE = """
CREATE TABLE bench_plain (
  id bigserial PRIMARY KEY,
  org_id uuid NOT NULL,
  body bytea NOT NULL,
  occurred_at timestamptz NOT NULL,
  actor_type text NOT NULL,
  actor_id text NOT NULL,
  actor_display text NOT NULL,
  action text NOT NULL,
  entity_type text NOT NULL,
  entity_id text NOT NULL,
  severity text NOT NULL,
  reason text,
  request_id text,
  api_key_id uuid
);
CREATE INDEX bench_plain_org ON bench_plain (org_id, id);
GRANT SELECT, INSERT ON bench_plain TO flasktrack_app;
GRANT USAGE ON SEQUENCE bench_plain_id_seq TO flasktrack_app;
"""

PLAIN_INSERT = text(
    """INSERT INTO bench_plain (org_id, body, occurred_at, actor_type, actor_id, actor_display, action,
       entity_type, entity_id, severity, reason, request_id, api_key_id)
       VALUES (:org_id, :body, :occurred_at, :actor_type, :actor_id, :actor_display, :action,
       :entity_type, :entity_id, :severity, :reason, :request_id, :api_key_id)"""
)


def say(msg: str) -> None:
    print(msg, flush=True)


def new_org(owner: TenantSessions, label: str) -> uuid.UUID:
    with owner.begin(None) as s:
        org = identity.create_org(s, slug=f"bench-{label}-{secrets.token_hex(3)}", name=f"Bench {label}")
    with owner.begin(org.id) as s:
        service.seal(s, org.id)  # the org's own creation entry: seq 1
    return org.id


def entry(writer: int, k: int) -> dict[str, object]:
    """What one write records: a realistic update with before/after state (~600 bytes canonical)."""
    return {
        "action": "update",
        "entity_type": "sample",
        "entity_id": f"S-{writer:02d}-{k:07d}",
        "before": {"status": "received", "volume_ul": 250.0, "location": {"freezer": "F-3", "rack": writer}},
        "after": {"status": "aliquoted", "volume_ul": 125.5, "location": {"freezer": "F-3", "rack": writer},
                  "aliquots": [f"S-{writer:02d}-{k:07d}-{j}" for j in range(2)]},
        "reason": "aliquot for assay run",
    }


def run_writers(write_one: Callable[[int, int], None]) -> tuple[float, int]:
    """Start WRITERS threads together; return (start time, entries written)."""
    barrier = threading.Barrier(WRITERS + 1)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            for k in range(PER_WRITER):
                write_one(i, k)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return t0, WRITERS * PER_WRITER


def plain_round(app: TenantSessions, org: uuid.UUID) -> float:
    def write_one(i: int, k: int) -> None:
        with app.begin(org) as s:
            body = entry_body(org_id=org, occurred_at=dt.datetime.now(dt.UTC), actor=ACTOR, context=CONTEXT,
                              **entry(i, k))  # type: ignore[arg-type]
            s.execute(PLAIN_INSERT, entry_params(body))

    t0, n = run_writers(write_one)
    return n / (time.perf_counter() - t0)


def chained_round(app: TenantSessions, owner_libpq: str, org: uuid.UUID, seal_interval_s: float) -> float:
    """Real path; the clock stops when the sealer has committed the last entry into the chain."""
    with psycopg.connect(owner_libpq, autocommit=True) as c:
        base = c.execute("SELECT seq FROM audit_heads WHERE org_id = %s", (org,)).fetchone()
        start_seq = int(base[0]) if base else 0
        sealer = Sealer(app, interval_s=seal_interval_s).start()
        try:
            def write_one(i: int, k: int) -> None:
                with app.begin(org) as s:
                    record(s, org_id=org, actor=ACTOR, context=CONTEXT, **entry(i, k))  # type: ignore[arg-type]

            t0, n = run_writers(write_one)
            written = time.perf_counter()
            target = start_seq + n
            while True:
                row = c.execute("SELECT seq FROM audit_heads WHERE org_id = %s", (org,)).fetchone()
                if row and int(row[0]) >= target:
                    t1 = time.perf_counter()
                    break
                time.sleep(0.002)
        finally:
            sealer.stop()
    LAGS.append(t1 - written)
    return n / (t1 - t0)


def fast_bodies(org: uuid.UUID, start: int, n: int) -> Iterator[tuple[int, bytes, dict[str, object]]]:
    """The recorder's canonical body for entry k, built from an already-normalized template: the same
    bytes `canonical_bytes(entry_body(...))` gives (checked below), some 10x faster, to build 1M rows."""
    base_ts = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    template = entry_body(org_id=org, occurred_at=base_ts, actor=ACTOR, context=CONTEXT,
                          **entry(0, 0))  # type: ignore[arg-type]
    for k in range(start, start + n):
        w = k % 16
        sid = f"S-{w:02d}-{k:07d}"
        b = dict(template)
        b["occurred_at"] = format_ts(base_ts + dt.timedelta(microseconds=k * 37))
        b["entity"] = {"type": "sample", "id": sid}
        b["before"] = {"status": "received", "volume_ul": "250.0", "location": {"freezer": "F-3", "rack": w}}
        b["after"] = {"status": "aliquoted", "volume_ul": "125.5", "location": {"freezer": "F-3", "rack": w},
                      "aliquots": [f"{sid}-0", f"{sid}-1"]}
        yield k, orjson.dumps(b, option=orjson.OPT_SORT_KEYS), b


def copy_pending(owner_libpq: str, org: uuid.UUID, n: int) -> None:
    """n entries with the recorder's bodies and derived columns into audit_pending via COPY."""
    base_ts = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for k, raw, _ in fast_bodies(org, 0, 3):  # the shortcut must give the recorder's exact bytes
        honest = entry_body(org_id=org, occurred_at=base_ts + dt.timedelta(microseconds=k * 37), actor=ACTOR,
                            context=CONTEXT, **entry(k % 16, k))  # type: ignore[arg-type]
        assert raw == canonical_bytes(honest), "bench body generator drifted from the recorder"
    cols = ("org_id", "body", "occurred_at", "actor_type", "actor_id", "actor_display", "action", "entity_type",
            "entity_id", "severity", "reason", "request_id", "api_key_id")
    fixed = f"{ACTOR.type}\t{ACTOR.id}\t{ACTOR.display}\tupdate\tsample"
    with psycopg.connect(owner_libpq, autocommit=True) as c:
        done = 0
        while done < n:
            m = min(100_000, n - done)
            lines = [
                f"{org}\t\\\\x{raw.hex()}\t{b['occurred_at']}\t{fixed}\t{b['entity']['id']}\t"  # type: ignore[index]
                f"info\taliquot for assay run\t{CONTEXT.request_id}\t\\N\n"
                for _, raw, b in fast_bodies(org, done, m)
            ]
            with c.cursor() as cur, cur.copy(f"COPY audit_pending ({', '.join(cols)}) FROM STDIN") as cp:
                cp.write("".join(lines))
            done += m


def server_cpu_s(url: str) -> float | None:
    """CPU seconds used so far by the embedded server's processes (live backends and the ones that
    exited, through the postmaster's cutime/cstime); None for a server elsewhere."""
    host = make_url(url).query.get("host")  # the embedded server's socket lives in its data directory
    pid_file = Path(str(host)) / "postmaster.pid" if host else None
    if pid_file is None or not pid_file.exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    master = int(pid_file.read_text().split()[0])

    def stat(pid: int) -> list[str]:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return raw[raw.rindex(")") + 2:].split()

    total = 0
    try:
        fields = stat(master)
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        children = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == master]
        for child in children:
            try:
                total += sum(int(x) for x in stat(int(child))[11:13])
            except (FileNotFoundError, ProcessLookupError):
                pass
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return total / tick


def _ppid(proc: Path) -> int:
    try:
        raw = (proc / "stat").read_text()
        return int(raw[raw.rindex(")") + 2:].split()[1])
    except (OSError, ValueError):
        return -1


def client_cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    server = scratch_server("bench")
    say(f"audit append/verify benchmark: {WRITERS} writers x {PER_WRITER} entries, {ROUNDS} rounds; "
        f"verify over {VERIFY_ENTRIES:,} entries")
    with scratch_database(server, "ft_bench") as url, tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp:
        settings = Settings(database_url=url, data_dir=Path(tmp))
        upgrade_schema(url, app_password=settings.app_db_password)
        owner_libpq = libpq_url(url)
        with psycopg.connect(owner_libpq, autocommit=True) as c:
            c.execute(PLAIN_TABLE)
            version = c.execute("SHOW server_version").fetchone()
            sync = c.execute("SHOW synchronous_commit").fetchone()
        say(f"server: PostgreSQL {version[0] if version else '?'}, synchronous_commit={sync[0] if sync else '?'}, "
            f"{os.cpu_count()} CPUs")
        owner = TenantSessions(make_engine(url, pool_size=4))
        app = TenantSessions(make_engine(app_url(settings, url), pool_size=WRITERS + 2))

        # warm the pool and the caches once, unmeasured
        warm = new_org(owner, "warm")
        with app.begin(warm) as s:
            record(s, org_id=warm, actor=ACTOR, context=CONTEXT, **entry(0, 0))  # type: ignore[arg-type]

        plain: list[float] = []
        chained: list[float] = []
        for r in range(ROUNDS):
            plain.append(plain_round(app, new_org(owner, f"plain{r}")))
            say(f"  round {r + 1}: plain INSERT ceiling {plain[-1]:,.0f}/s")
            org = new_org(owner, f"chain{r}")
            chained.append(chained_round(app, owner_libpq, org, settings.seal_interval_s))
            say(f"  round {r + 1}: chained appends      {chained[-1]:,.0f}/s (sealed and committed)")
            with app.begin(org) as s:
                check = service.verify_org(s, org, store=CheckpointStore(Path(tmp) / "none"), keys={})
            expected = 1 + WRITERS * PER_WRITER
            if not check.ok or check.count != expected:
                raise SystemExit(f"chain of the append round is wrong: {check.summary()} ({check.count}/{expected})")
        a = statistics.mean(chained)
        b = statistics.mean(plain)
        ratio = a / b

        # (d) a 1,000,000-entry chain
        key = load_or_create_signing_key(Path(tmp) / "keys" / "audit.pem")
        keys = load_public_keys([Path(tmp) / "keys"])
        store = CheckpointStore(Path(tmp) / "checkpoints")
        big = new_org(owner, "verify")
        t = time.perf_counter()
        copy_pending(owner_libpq, big, VERIFY_ENTRIES - 1)
        t_copy = time.perf_counter() - t
        t = time.perf_counter()
        with psycopg.connect(owner_libpq, autocommit=True) as c:
            while True:
                row = c.execute("SELECT audit_seal(%s, 100000)", (big,)).fetchone()
                if not row or int(row[0]) == 0:
                    break
            c.execute("VACUUM ANALYZE audit_log")
        t_seal = time.perf_counter() - t
        with app.begin(big) as s:
            service.write_checkpoint(s, big, key, store)
        say(f"  built a {VERIFY_ENTRIES:,}-entry chain: COPY {t_copy:.1f}s, sealing {t_seal:.1f}s "
            f"({(VERIFY_ENTRIES - 1) / t_seal:,.0f} entries/s)")
        rates: list[float] = []
        for _ in range(VERIFY_RUNS):
            cpu0, srv0 = client_cpu_s(), server_cpu_s(url)
            with app.begin(big) as s:
                t = time.perf_counter()
                res = service.verify_org(s, big, store=store, keys=keys)
                t_verify = time.perf_counter() - t
            cpu1, srv1 = client_cpu_s(), server_cpu_s(url)
            if not res.ok or res.count != VERIFY_ENTRIES:
                raise SystemExit(f"verification failed: {res.summary()} ({res.count} entries)")
            rates.append(res.count / t_verify)
            us = (cpu1 - cpu0) / res.count * 1e6
            srv = f", server {(srv1 - srv0) / res.count * 1e6:.1f}" if srv0 is not None and srv1 is not None else ""
            say(f"  verify_org: {t_verify:.2f}s, {rates[-1]:,.0f} entries/s; CPU per entry: verifier {us:.1f} us"
                f"{srv}; load average {os.getloadavg()[0]:.1f}")
        verify_rate = max(rates)
        app.engine.dispose()
        owner.engine.dispose()

    say("")
    say("| metric | measured | target |")
    say("|---|---|---|")
    say(f"| (a) chained appends/s, {WRITERS} writers, 1 org, real write path, counted once sealed | {a:,.0f} "
        f"(mean of {ROUNDS}; seal lag after the last write {statistics.mean(LAGS) * 1000:.0f} ms) | |")
    say(f"| (b) plain INSERT + COMMIT/s, same {WRITERS} writers and path | {b:,.0f} (mean of {ROUNDS}) | |")
    say(f"| (c) ratio (a)/(b) | {ratio:.2f} | >= 0.9 |")
    say(f"| (d) verify_org over {VERIFY_ENTRIES:,} entries | {verify_rate:,.0f} entries/s "
        f"(best of {VERIFY_RUNS}: {', '.join(f'{r:,.0f}' for r in rates)}) | >= 300,000 |")
    say(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    say(f"ratio {ratio:.2f}  verify {verify_rate:.0f} entries/s")

if __name__ == "__main__":
    main()
