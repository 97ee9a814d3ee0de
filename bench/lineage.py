"""Lineage queries over a million samples: the HTTP API beside the same recursive query run raw.

    .venv/bin/python bench/lineage.py [--samples 1000000] [--queries 2000]

Data (bulk-loaded with COPY as the table owner): families of 50 samples, each a chain of 21 generations (depth 0
to 20) with the other 29 fanned out as side children of the chain's links; every family's generation-10 sample
also derives from the previous family's generation-9 sample (a pooling, so graphs cross families and nodes have
two parents).

Ours: `GET /api/v1/samples/{id}/lineage?direction=…&depth=20` against the real API (uvicorn, a subprocess),
authenticated with a session token, row-level security on: ancestors of chain ends, descendants of family roots.
Raw: the same recursive statement (domain/samples/lineage.py) through psycopg, as the application role with the
organization set (RLS on too), one connection, no HTTP.

Surface: one more chain of SURFACE_ANCESTORS + 1 samples (a subculture chain), every 100th ancestor made of a
plasmid tagged rDNA, every 250th tagged BSL-2 itself, the chain's root in a batch tagged hazardous chemical:
`GET /api/v1/samples/{chain end}/compliance-surface` (every tag with its shortest paths, each through up to a
thousand ancestors) through the same API, `--surface-queries` times.

Printed: p50/p99 per direction for both and their ratio; the last line is exactly
`lineage api p50 A ms  p99 B ms  raw p50 C ms  surface p50 D ms` (targets: A ≤ 5, B ≤ 20, D ≤ 20).

Server: FLASKTRACK_BENCH_DATABASE_URL (owner role) or an embedded PostgreSQL under FLASKTRACK_BENCH_DATA_DIR
(default: a temporary folder); a scratch database is created, migrated and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]  # see bench/step_latency.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password-not-secret"
FAMILY = 50  # samples per family
CHAIN = 21  # generations 0..20 of each family's chain
POOL_AT = 10  # generation that also derives from the previous family's generation POOL_AT - 1
DEPTH = 20
SURFACE_ANCESTORS = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API exited; see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def seed(owner_url: str, samples: int) -> tuple[uuid.UUID, list[uuid.UUID], list[uuid.UUID]]:
    """The bench org, an auditor to ask, and the samples and edges: (org id, family roots, chain ends)."""
    from core.db import TenantSessions, make_engine
    from domain.identity import service as identity
    from domain.identity.models import MemberCreate
    from domain.roles import SYSTEM_ACTOR, RequestContext, Role

    sessions = TenantSessions(make_engine(owner_url, pool_size=1))
    with sessions.begin(None) as s:
        org = identity.create_org(s, slug="lineage", name="Lineage bench lab")
    with sessions.begin(org.id) as s:
        identity.add_member(s, org_id=org.id, actor=SYSTEM_ACTOR, context=RequestContext(), data=MemberCreate(
            email="auditor@lineage.example.org", display_name="auditor", password=PASSWORD, role=Role.auditor))
    sessions.engine.dispose()

    families = max(1, samples // FAMILY)
    rng = random.Random(7)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(families * FAMILY)]
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    roots, ends = [], []
    types = ("culture", "plate", "callus", "explant", "spore_suspension", "dna_prep")
    with psycopg.connect(owner_url, autocommit=False) as conn, conn.cursor() as cur:
        with cur.copy("COPY samples (id, org_id, code, sample_type, name, status, created_at, created_by, updated_at)"
                      " FROM STDIN") as copy:
            for n, ident in enumerate(ids):
                copy.write_row((ident, org.id, f"S-{n + 1:07d}", types[n % len(types)], f"sample {n + 1}",
                                "received", at, "bench", at))
        with cur.copy("COPY lineage_edges (org_id, parent_id, child_id, operation, recorded_at, recorded_by)"
                      " FROM STDIN") as copy:
            for f in range(families):
                base = f * FAMILY
                chain = ids[base:base + CHAIN]
                roots.append(chain[0])
                ends.append(chain[-1])
                for g in range(1, CHAIN):
                    copy.write_row((org.id, chain[g - 1], chain[g], "subculture", at, "bench"))
                for k, side in enumerate(ids[base + CHAIN:base + FAMILY]):
                    copy.write_row((org.id, chain[k % CHAIN], side, "aliquot", at, "bench"))
                if f:
                    copy.write_row((org.id, ids[base - FAMILY + POOL_AT - 1], chain[POOL_AT], "pooling", at, "bench"))
        conn.commit()
        conn.execute("ANALYZE samples")
        conn.execute("ANALYZE lineage_edges")
    return org.id, roots, ends


def seed_surface(owner_url: str, org_id: uuid.UUID) -> uuid.UUID:
    """The surface chain (see the module doc); its end, the sample asked about."""
    rng = random.Random(13)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(SURFACE_ANCESTORS + 1)]
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    plasmid, batch = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(owner_url, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO registry_items (id, org_id, kind, code, name, status, created_at, created_by,"
                    " updated_at) VALUES (%s, %s, 'plasmid', 'PL-SURF', 'pCAMBIA1301', 'active', %s, 'bench', %s)",
                    (plasmid, org_id, at, at))
        cur.execute("INSERT INTO batches (id, org_id, code, batch_type, name, status, created_at, created_by,"
                    " updated_at) VALUES (%s, %s, 'B-SURF', 'media', 'MS medium', 'open', %s, 'bench', %s)",
                    (batch, org_id, at, at))
        with cur.copy("COPY samples (id, org_id, code, sample_type, name, status, batch_id, created_at, created_by,"
                      " updated_at) FROM STDIN") as copy:
            for n, ident in enumerate(ids):
                copy.write_row((ident, org_id, f"SURF-{n:05d}", "callus" if n % 2 else "plate", f"surface {n}",
                                "received", batch if n == 0 else None, at, "bench", at))
        with cur.copy("COPY lineage_edges (org_id, parent_id, child_id, operation, recorded_at, recorded_by)"
                      " FROM STDIN") as copy:
            for parent, child in zip(ids, ids[1:], strict=False):
                copy.write_row((org_id, parent, child, "subculture", at, "bench"))
        with cur.copy("COPY sample_components (org_id, sample_id, item_id, added_at) FROM STDIN") as copy:
            for n in range(0, SURFACE_ANCESTORS, 100):
                copy.write_row((org_id, ids[n], plasmid, at))
        tags = dict(cur.execute("SELECT key, id FROM compliance_tags WHERE org_id = %s", (org_id,)).fetchall())
        links = [(tags["recombinant_dna"], "registry_item", str(plasmid)),
                 (tags["hazardous_chemical"], "batch", str(batch))]
        links += [(tags["BSL-2"], "sample", str(ids[n])) for n in range(0, SURFACE_ANCESTORS, 250)]
        for tag_id, kind, target in links:
            cur.execute("INSERT INTO compliance_tag_links (id, org_id, tag_id, target_type, target_id, attached_at,"
                        " attached_by, attached_by_display, reason) VALUES (%s, %s, %s, %s, %s, %s, 'bench', 'bench',"
                        " 'bench')", (uuid.uuid4(), org_id, tag_id, kind, target, at))
        conn.commit()
        conn.execute("ANALYZE samples")
        conn.execute("ANALYZE lineage_edges")
    return ids[-1]


def measure_surface(http: httpx.Client, end: uuid.UUID, queries: int) -> list[float]:
    for _ in range(max(5, queries // 10)):  # warm
        http.get(f"/api/v1/samples/{end}/compliance-surface")
    out = []
    for _ in range(queries):
        t = time.perf_counter()
        r = http.get(f"/api/v1/samples/{end}/compliance-surface")
        out.append(time.perf_counter() - t)
        body = r.json() if r.status_code == 200 else {}
        if body.get("ancestors") != SURFACE_ANCESTORS or len(body.get("tags", [])) != 3:
            raise SystemExit(f"unexpected surface {r.status_code}: {r.text[:300]}")
    return out


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else values[0] * 1e3


def raw_statement(direction: str) -> str:
    """The API's statement (domain/samples/lineage.py) in psycopg's parameter style."""
    from domain.samples.lineage import GRAPH

    sql = str(GRAPH[direction])
    return re.sub(r"(?<!:):(root|depth|cap)\b", r"%(\1)s", sql)


def measure(http: httpx.Client, app_url: str, org_id: uuid.UUID, starts: dict[str, list[uuid.UUID]],
            queries: int) -> dict[str, tuple[list[float], list[float]]]:
    from domain.samples.lineage import MAX_EDGES

    rng = random.Random(11)
    out: dict[str, tuple[list[float], list[float]]] = {}
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("SELECT set_config('flasktrack.org_id', %s, false)", (str(org_id),))
        for direction, pool in starts.items():
            sql = raw_statement(direction)
            picks = [rng.choice(pool) for _ in range(queries)]
            for ident in picks[: max(20, queries // 10)]:  # warm both paths
                http.get(f"/api/v1/samples/{ident}/lineage", params={"direction": direction, "depth": DEPTH})
                conn.execute(sql, {"root": ident, "depth": DEPTH, "cap": MAX_EDGES}).fetchall()
            api, raw = [], []
            for ident in picks:
                t = time.perf_counter()
                r = http.get(f"/api/v1/samples/{ident}/lineage", params={"direction": direction, "depth": DEPTH})
                api.append(time.perf_counter() - t)
                if r.status_code != 200 or len(r.json()["nodes"]) < CHAIN:
                    raise SystemExit(f"unexpected answer {r.status_code}: {r.text[:300]}")
                t = time.perf_counter()
                conn.execute(sql, {"root": ident, "depth": DEPTH, "cap": MAX_EDGES}).fetchall()
                raw.append(time.perf_counter() - t)
            out[direction] = (api, raw)
    return out


def bench(samples: int, queries: int, surface_queries: int) -> None:
    from core.config import Settings
    from core.db import app_url
    from flasktrack.postgres import scratch_database, scratch_server, upgrade_schema

    data = Path(tempfile.mkdtemp(prefix="ft-lineage-bench-"))
    databases = contextlib.ExitStack()
    proc: subprocess.Popen[bytes] | None = None
    measured = False
    try:
        owner = databases.enter_context(scratch_database(scratch_server("bench"), "ft_lineage_bench"))
        upgrade_schema(owner)
        t = time.perf_counter()
        org_id, roots, ends = seed(owner, samples)
        surface_end = seed_surface(owner, org_id)
        loaded = time.perf_counter() - t
        print(f"loaded {len(roots) * FAMILY} samples in {loaded:.0f} s", flush=True)
        port = free_port()
        env = {**os.environ, "FLASKTRACK_DATABASE_URL": owner, "FLASKTRACK_DATA_DIR": str(data),
               "FLASKTRACK_API_PORT": str(port), "FLASKTRACK_LOG_LEVEL": "WARNING"}
        log = data / "api.log"
        with log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "flasktrack.cli", "api"], env=env, cwd=ROOT, stdout=out,
                                    stderr=subprocess.STDOUT)
        wait_port(port, proc, log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            r = http.post("/api/v1/auth/login", json={"email": "auditor@lineage.example.org", "password": PASSWORD})
            r.raise_for_status()
            http.headers["Authorization"] = f"Bearer {r.json()['token']}"
            results = measure(http, app_url(Settings(database_url=owner), owner), org_id,
                              {"ancestors": ends, "descendants": roots}, queries)
            surface = measure_surface(http, surface_end, surface_queries)
        measured = True
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        databases.close()
        if measured:
            shutil.rmtree(data, ignore_errors=True)  # kept, with the API's log, when something failed
    print(f"lineage: {len(roots) * FAMILY} samples in {len(roots)} families (chains of {CHAIN} generations, "
          f"fan-outs, poolings across families), loaded in {loaded:.0f} s; {queries} queries per direction, "
          f"depth {DEPTH}, one after another; {os.cpu_count()} cores shared by every process")
    print(f"{'':12} {'api p50':>8} {'api p99':>8} {'raw p50':>8} {'raw p99':>8} {'p50 ratio':>10}")
    everything_api: list[float] = []
    everything_raw: list[float] = []
    for direction, (api, raw) in results.items():
        everything_api += api
        everything_raw += raw
        print(f"{direction:12} {pct(api, 50):8.2f} {pct(api, 99):8.2f} {pct(raw, 50):8.2f} {pct(raw, 99):8.2f} "
              f"{pct(api, 50) / pct(raw, 50):10.1f}")
    print(f"surface      {pct(surface, 50):8.2f} {pct(surface, 99):8.2f}   (a sample with {SURFACE_ANCESTORS} "
          f"ancestors, {surface_queries} queries)")
    print(f"lineage api p50 {pct(everything_api, 50):.2f} ms  p99 {pct(everything_api, 99):.2f} ms  "
          f"raw p50 {pct(everything_raw, 50):.2f} ms  surface p50 {pct(surface, 50):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000, help="samples to load (families of 50)")
    parser.add_argument("--queries", type=int, default=2000, help="measured queries per direction")
    parser.add_argument("--surface-queries", type=int, default=300, help="measured compliance-surface queries")
    args = parser.parse_args()
    from flasktrack.postgres import exit_now

    bench(args.samples, args.queries, args.surface_queries)
    exit_now(0)  # stops the embedded PostgreSQL this process started


if __name__ == "__main__":
    main()
