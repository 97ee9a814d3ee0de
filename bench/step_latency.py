"""Step completion latency and throughput over HTTP, beside a bare Temporal reference, on one dev server.

    .venv/bin/python bench/step_latency.py

Ours: `POST /api/v1/tasks/{id}/complete` against the real API (uvicorn, a subprocess) and the real worker
(`flasktrack worker`, a subprocess): token auth, the Update, one local activity that checks the gates and
writes the form row, the step event, the audit entry and the outbox rows in one transaction, then the
next task opened — the answer names it.
Reference: a workflow whose Update runs one regular activity that does nothing, called with the Temporal
client directly (no HTTP, no database), its worker also a subprocess.

Printed: p50/p99 of completions made one after another, run by run, and completions/s with
FLASKTRACK_BENCH_PARALLEL (32) runs in parallel, for both; the last line is exactly
`p50 ratio A  throughput ratio B` (ours ÷ reference: A ≤ 1 and B ≥ 1 meet the targets).

Server: FLASKTRACK_BENCH_DATABASE_URL (owner role) or an embedded PostgreSQL under FLASKTRACK_BENCH_DATA_DIR
(default <tmp>/flasktrack-bench); a scratch database is created, migrated and dropped at the end.
Knobs: FLASKTRACK_BENCH_RUNS (5 sequential runs), FLASKTRACK_BENCH_STEPS (20 completions per run),
FLASKTRACK_BENCH_PARALLEL (32).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import text
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

# httpcore looks for sniffio on every request; without it installed, each look is a failed import that
# searches sys.path. Marking it absent keeps that cost out of the load generator's CPU (it shares the cores).
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUNS = int(os.environ.get("FLASKTRACK_BENCH_RUNS", "5"))
STEPS = int(os.environ.get("FLASKTRACK_BENCH_STEPS", "20"))
PARALLEL = int(os.environ.get("FLASKTRACK_BENCH_PARALLEL", "32"))
PASSWORD = "bench-password-not-secret"
REF_QUEUE = "bench-reference"  # bench/step_reference.py serves it
STEP_TIMEOUT_S = 30  # a completion slower than this means something is broken: stop rather than hang

# The protocol: one task repeated; its form and checklist make the gates do real work.
PROTOCOL = {
    "key": "bench-reading",
    "title": "Record a reading",
    "steps": [{
        "key": "cycle", "kind": "repeat", "title": "Readings", "max_iterations": 20,
        "until": "reading.last == true",
        "steps": [{
            "key": "reading", "kind": "task", "title": "Record the reading", "roles": ["technician"], "due": "PT1H",
            "form": {"key": "bench_reading", "fields": [
                {"key": "value", "label": "Reading", "type": "number", "unit": "mS/cm", "min": 0, "max": 100,
                 "precision": 2},
                {"key": "instrument", "label": "Instrument", "type": "sample_ref"},
                {"key": "last", "label": "Last reading", "type": "boolean"}]},
            "checklist": [{"key": "probe_rinsed", "text": "Probe rinsed with deionised water"}],
        }],
    }],
}


# ---------------------------------------------------------------- setup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(owner_url: str) -> None:
    """The bench org: a lab manager, a technician, the bench protocol approved."""
    from core.db import TenantSessions, make_engine
    from domain.identity import service as identity
    from domain.identity.models import MemberCreate
    from domain.protocols.compiler import compile_protocol
    from domain.roles import SYSTEM_ACTOR, RequestContext, Role

    sessions = TenantSessions(make_engine(owner_url, pool_size=2))
    with sessions.begin(None) as s:
        org = identity.create_org(s, slug="bench", name="Bench lab")
    for role in (Role.lab_manager, Role.technician):
        with sessions.begin(org.id) as s:
            identity.add_member(s, org_id=org.id, actor=SYSTEM_ACTOR, context=RequestContext(), data=MemberCreate(
                email=f"{role.value}@bench.example.org", display_name=role.value, password=PASSWORD, role=role))
    plan = compile_protocol(PROTOCOL, 1).plan
    assert plan is not None
    with sessions.begin(org.id) as s:
        pid = uuid.uuid4()
        s.execute(text("INSERT INTO protocols (id, org_id, key, title) VALUES (:i, :o, :k, :t)"),
                  {"i": pid, "o": org.id, "k": PROTOCOL["key"], "t": PROTOCOL["title"]})
        s.execute(text("INSERT INTO protocol_versions (id, org_id, protocol_id, version, status, definition,"
                       " content_hash, plan, approved_at) VALUES (:i, :o, :p, 1, 'approved', CAST(:d AS jsonb), :h,"
                       " CAST(:plan AS jsonb), now())"),
                  {"i": uuid.uuid4(), "o": org.id, "p": pid, "d": json.dumps(PROTOCOL), "h": plan.content_hash,
                   "plan": plan.model_dump_json()})
        # The run's subject and the instrument its form names: runs take only existing, usable material.
        for code in ("S-1", "COND-7"):
            s.execute(text("INSERT INTO samples (id, org_id, code, sample_type, name, status, created_at, created_by,"
                           " updated_at) VALUES (:i, :o, :c, 'other', :c, 'received', now(), 'bench', now())"),
                      {"i": uuid.uuid4(), "o": org.id, "c": code})
    sessions.engine.dispose()


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


# ---------------------------------------------------------------- ours, over HTTP


class Platform:
    def __init__(self, base: str) -> None:
        self.http = httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=PARALLEL + 8))
        self.tech: dict[str, str] = {}
        self.manager: dict[str, str] = {}

    async def login(self) -> None:
        for role, attr in (("technician", "tech"), ("lab_manager", "manager")):
            r = await self.http.post("/api/v1/auth/login", json={"email": f"{role}@bench.example.org",
                                                                  "password": PASSWORD})
            r.raise_for_status()
            setattr(self, attr, {"Authorization": f"Bearer {r.json()['token']}"})

    async def launch(self) -> str:
        r = await self.http.post("/api/v1/runs", json={"protocol_key": PROTOCOL["key"],
                                                       "subjects": [{"type": "sample", "id": "S-1"}]},
                                 headers=self.manager)
        r.raise_for_status()
        run_id = r.json()["id"]
        while True:
            tasks = (await self.http.get("/api/v1/tasks", params={"run_id": run_id}, headers=self.tech)).json()
            if tasks:
                return str(tasks[0]["id"])
            await asyncio.sleep(0.02)

    async def complete(self, task_id: str, n: int, last: bool) -> str | None:
        r = await asyncio.wait_for(self.http.post(f"/api/v1/tasks/{task_id}/complete", headers={
            **self.tech, "X-Request-ID": str(uuid.uuid4())}, json={
            "values": {"value": f"{n % 100}.25", "instrument": "COND-7", "last": last},
            "checklist": {"probe_rinsed": True}}), STEP_TIMEOUT_S)
        if r.status_code != 200:
            raise SystemExit(f"completion failed: {r.status_code} {r.text}")
        nxt = r.json()["open_tasks"]
        return str(nxt[0]["task_id"]) if nxt else None

    async def one_run(self, task_id: str, steps: int, latencies: list[float] | None = None) -> int:
        for n in range(steps):
            start = time.perf_counter()
            task = await self.complete(task_id, n, last=n == steps - 1)
            if latencies is not None:
                latencies.append(time.perf_counter() - start)
            if task is None:
                return n + 1
            task_id = task
        return steps


class Reference:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def launch(self) -> Any:
        return await self.client.start_workflow("ReferenceRun", id=f"ref-{uuid.uuid4()}", task_queue=REF_QUEUE)

    async def one_run(self, handle: Any, steps: int, latencies: list[float] | None = None) -> int:
        for n in range(steps):
            start = time.perf_counter()
            await asyncio.wait_for(handle.execute_update("step", n, result_type=int), STEP_TIMEOUT_S)
            if latencies is not None:
                latencies.append(time.perf_counter() - start)
        await handle.signal("finish")
        return steps


# ---------------------------------------------------------------- where the CPU goes (Linux /proc)

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def postgres_pids(owner_url: str) -> list[int]:
    """The server's processes when it runs on this machine (its postmaster and every backend)."""
    from core.db import libpq_url

    try:
        with psycopg.connect(libpq_url(owner_url)) as c:
            data = c.execute("SHOW data_directory").fetchone()
        postmaster = int((Path(str(data[0])) / "postmaster.pid").read_text().split()[0]) if data else 0
    except (OSError, psycopg.Error, ValueError):
        return []
    return [postmaster, *children(postmaster)]


def temporal_pids(address: str) -> list[int]:
    port = address.rsplit(":", 1)[1]
    out = subprocess.run(["pgrep", "-f", f"start-dev.*--port {port}"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


Groups = dict[str, Any]  # name -> list of pids, or a function giving them


def cpu_snapshot(groups: Groups) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) for p in (pids() if callable(pids) else pids)) for name, pids in groups.items()}


async def measure(side: Any, groups: Groups) -> tuple[list[float], float, dict[str, float]]:
    """(latencies of sequential completions, completions/s with PARALLEL runs at once, CPU ms per completion
    by process during the parallel phase)."""
    await side.one_run(await side.launch(), 5)  # warm up
    latencies: list[float] = []
    for _ in range(RUNS):
        await side.one_run(await side.launch(), STEPS, latencies)
    starts = await asyncio.gather(*(side.launch() for _ in range(PARALLEL)))
    before = cpu_snapshot(groups)
    began = time.perf_counter()
    done = sum(await asyncio.gather(*(side.one_run(s, STEPS) for s in starts)))
    elapsed = time.perf_counter() - began
    after = cpu_snapshot(groups)
    return latencies, done / elapsed, {k: (after[k] - before[k]) / done * 1000 for k in groups}


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else values[0]


async def bench() -> None:
    data = Path(tempfile.mkdtemp(prefix="ft-step-bench-"))
    from flasktrack.postgres import scratch_database, scratch_server, upgrade_schema

    databases = contextlib.ExitStack()
    owner = databases.enter_context(scratch_database(scratch_server("bench"), "ft_step_bench"))
    upgrade_schema(owner)
    seed(owner)
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
                                                data_converter=pydantic_data_converter, dev_server_log_level="error")
    address = env.client.service_client.config.target_host
    port = free_port()
    child_env = {**os.environ, "FLASKTRACK_DATABASE_URL": owner, "FLASKTRACK_TEMPORAL_ADDRESS": address,
                 "FLASKTRACK_DATA_DIR": str(data), "FLASKTRACK_API_PORT": str(port), "FLASKTRACK_TASK_QUEUE": "bench",
                 "FLASKTRACK_LOG_LEVEL": "WARNING"}
    measured = False
    procs = [
        spawn([sys.executable, "-m", "flasktrack.cli", "worker"], child_env, data / "worker.log"),
        spawn([sys.executable, "-m", "flasktrack.cli", "api"], child_env, data / "api.log"),
        spawn([sys.executable, str(Path(__file__).resolve().parent / "step_reference.py"), address], child_env,
              data / "reference.log"),
    ]
    try:
        wait_port(port)
        for p, name in zip(procs, ("worker", "api", "reference"), strict=True):
            if p.poll() is not None:
                raise SystemExit(f"the {name} process exited; see {data / (name + '.log')}")
        ours = Platform(f"http://127.0.0.1:{port}")
        await ours.login()
        reference = Reference(env.client)
        print(f"step completion: {RUNS} runs × {STEPS} completions one after another, then {PARALLEL} runs in "
              f"parallel × {STEPS}; one Temporal dev server ({address}), 2 worker processes, PostgreSQL")
        pg = postgres_pids(owner)
        groups: Groups = {"api": [procs[1].pid], "worker": [procs[0].pid], "reference worker": [procs[2].pid],
                          "Temporal": temporal_pids(address), "PostgreSQL": lambda: [*pg[:1], *children(pg[0])] if pg
                          else [], "load generator": [os.getpid()]}
        ref_lat, ref_tput, ref_cpu = await measure(reference, groups)
        our_lat, our_tput, our_cpu = await measure(ours, groups)
        await ours.http.aclose()
        measured = True
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        await env.shutdown()
        databases.close()
        if measured:
            shutil.rmtree(data, ignore_errors=True)  # kept, with the services' logs, when something failed
    rows = [("HTTP completion (gates + records)", our_lat, our_tput),
            ("reference: Update running one activity", ref_lat, ref_tput)]
    print(f"{'':42} {'p50 ms':>8} {'p99 ms':>8} {'completions/s':>14}")
    for name, lat, tput in rows:
        print(f"{name:42} {pct(lat, 50):8.1f} {pct(lat, 99):8.1f} {tput:14.1f}")
    print(f"CPU ms per completion in the parallel phase ({os.cpu_count()} cores shared by every process):")
    for name, cpu in (("ours", our_cpu), ("reference", ref_cpu)):
        parts = "  ".join(f"{k} {v:.1f}" for k, v in cpu.items() if v >= 0.05)
        print(f"  {name:10} total {sum(cpu.values()):5.1f}:  {parts}")
    print(f"p50 ratio {pct(our_lat, 50) / pct(ref_lat, 50):.2f}  throughput ratio {our_tput / ref_tput:.2f}")


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    from flasktrack.postgres import exit_now

    asyncio.run(bench())
    exit_now(0)  # temporalio clients can abort at interpreter exit (sdk-python #300); stops our PostgreSQL


if __name__ == "__main__":
    main()
