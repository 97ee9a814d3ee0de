"""Server time per web page at demo scale: p50 and p99 of each main page, beside its target.

    .venv/bin/python bench/pages.py

The demo organization (`flasktrack.demo`: one person per role, the example protocols approved) with
FLASKTRACK_BENCH_RUNS (200) runs launched through the run service, each with its first task open (as the worker
opens it), and their audit entries sealed. The API app (pages included) runs in this process; each page is asked
FLASKTRACK_BENCH_REQUESTS (100) times by a signed-in person of the role that uses it, one request after another,
and timed from the request to the last byte of the answer (no network, no browser: the server's own time).

Pages: the technician's inbox and a task page, the lab manager's runs board (target p50 ≤ 50 ms each), the
auditor's log, verification and an entity's state, the analyst's console and a query, the admin's members and API
keys (no target; shown for comparison). The last line is exactly `p50 ratio R` (the largest p50 ÷ target of the
pages with one: R ≤ 1 meets the targets).

Server: FLASKTRACK_BENCH_DATABASE_URL (owner role) or an embedded PostgreSQL under FLASKTRACK_BENCH_DATA_DIR
(default <tmp>/flasktrack-bench); a scratch database is created, migrated and dropped at the end.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.app import build_platform, create_app  # noqa: E402
from core.config import Settings  # noqa: E402
from core.db import TenantSessions, make_engine  # noqa: E402
from domain.protocols.plan import TaskNode  # noqa: E402
from domain.roles import Actor, Caller, RequestContext, Role  # noqa: E402
from domain.runs import service as runs  # noqa: E402
from domain.runs.messages import OpenStep  # noqa: E402
from domain.runs.models import RunLaunch, Subject  # noqa: E402
from domain.tasks import lifecycle  # noqa: E402
from flasktrack.demo import DEMO_ORG, DEMO_PASSWORD, DEMO_USERS, seed_demo  # noqa: E402
from flasktrack.postgres import scratch_database, scratch_server, upgrade_schema  # noqa: E402

RUNS = int(os.environ.get("FLASKTRACK_BENCH_RUNS", "200"))
REQUESTS = int(os.environ.get("FLASKTRACK_BENCH_REQUESTS", "100"))
TARGET_MS = 50.0
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def say(line: str) -> None:
    print(line, flush=True)


def first_task(node: object) -> TaskNode | None:
    if isinstance(node, TaskNode):
        return node
    for child in getattr(node, "steps", None) or getattr(node, "branches", None) or getattr(node, "body", None) or []:
        found = first_task(child)
        if found is not None:
            return found
    return None


def manager(owner: TenantSessions) -> Caller:
    email = next(e for r, e, _ in DEMO_USERS if r == Role.lab_manager)
    with owner.begin(None) as s:
        row = s.execute(text("SELECT o.id AS org_id, u.id AS user_id, u.display_name FROM organizations o "
                             "JOIN memberships m ON m.org_id = o.id JOIN users u ON u.id = m.user_id "
                             "WHERE o.slug = :o AND lower(u.email) = lower(:e)"), {"o": DEMO_ORG, "e": email}).one()
    return Caller(org_id=row.org_id, org_slug=DEMO_ORG, role=Role.lab_manager,
                  actor=Actor("user", str(row.user_id), row.display_name), user_id=row.user_id)


def seed_runs(app: TenantSessions, caller: Caller, n: int) -> list[str]:
    """`n` runs over the demo's protocols, each with its first task open (what the worker does at a launch)."""
    with app.begin(caller.org_id) as s:
        keys = [r.key for r in s.execute(text("SELECT DISTINCT p.key FROM protocols p JOIN protocol_versions v"
                                                             " ON v.protocol_id = p.id WHERE v.status = 'approved'"))]
        usable = text("SELECT code FROM samples WHERE org_id = :o AND status IN ('received', 'in_use')"
                      " ORDER BY code LIMIT 8")  # the demo lab's material: subjects must be real and usable
        codes = [r.code for r in s.execute(usable, {"o": caller.org_id})]
    task_ids = []
    for i in range(n):
        acting = replace(caller, context=RequestContext(request_id=str(uuid.uuid4())))
        with app.begin(caller.org_id) as s:
            run, plan, _ = runs.launch(s, acting, RunLaunch(protocol_key=keys[i % len(keys)],
                                                            subjects=[Subject(type="sample", id=codes[i % len(codes)])]
                                                            if codes else []))
            node = first_task(plan.root)
            if node is None:
                continue
            task_id = str(uuid.uuid5(run.id, f"task:{node.key}:0"))
            now = dt.datetime.now(dt.UTC)
            lifecycle.open_task(s, OpenStep(run=runs.ref(run), task_id=task_id, step=node, iteration=0, opened_at=now,
                                            due_at=now + dt.timedelta(hours=(i % 48) - 6)))
            task_ids.append(task_id)
    return task_ids


def timed(client: object, method: str, path: str, n: int, **kw: object) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        r = client.request(method, path, **kw)  # type: ignore[attr-defined]
        out.append((time.perf_counter() - start) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text[:300]}")
    return out


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def main() -> None:
    from fastapi.testclient import TestClient

    server = scratch_server("bench")
    say(f"web pages benchmark: demo organization, {RUNS} runs with a task open each, {REQUESTS} requests per page")
    with scratch_database(server, "ft_bench_pages") as url, tempfile.TemporaryDirectory(prefix="ft-pages-") as tmp:
        settings = Settings(database_url=url, data_dir=Path(tmp), checkpoint_interval_s=3600)
        upgrade_schema(url, app_password=settings.app_db_password)
        owner = TenantSessions(make_engine(url, pool_size=2))
        seed_demo(owner)
        platform = build_platform(settings)
        caller = manager(owner)
        tasks = seed_runs(platform.sessions, caller, RUNS)
        with owner.begin(None) as s:
            s.execute(text("SELECT audit_seal(:o, 100000, true)"), {"o": str(caller.org_id)})
        emails = {r: e for r, e, _ in DEMO_USERS}
        results: list[tuple[str, list[float], float | None]] = []
        with TestClient(create_app(platform, background=False), base_url="http://testserver",
                        follow_redirects=False) as app:
            def person(role: Role) -> TestClient:
                web = TestClient(app.app, base_url="http://testserver", follow_redirects=False)
                token = CSRF.search(web.get("/ui/login").text)
                assert token
                r = web.post("/ui/login", data={"email": emails[role], "password": DEMO_PASSWORD,
                                                "csrf_token": token.group(1), "next": "/ui/"})
                assert r.status_code == 303, r.text
                return web

            tech, mgr, auditor, analyst, admin = (person(r) for r in (
                Role.technician, Role.lab_manager, Role.auditor, Role.analyst, Role.admin))
            member = str(caller.user_id)
            lake_csrf = CSRF.search(analyst.get("/ui/lake").text)
            assert lake_csrf
            pages: list[tuple[str, TestClient, str, str, dict[str, object], float | None]] = [
                ("inbox", tech, "GET", "/ui/inbox", {}, TARGET_MS),
                ("task page", tech, "GET", f"/ui/tasks/{tasks[len(tasks) // 2]}", {}, TARGET_MS),
                ("runs board", mgr, "GET", "/ui/runs", {}, TARGET_MS),
                ("audit log", auditor, "GET", "/ui/audit", {}, None),
                ("audit log by email", auditor, "GET", f"/ui/audit?person={emails[Role.lab_manager]}", {}, None),
                ("entity state", auditor, "GET", f"/ui/audit/state?entity_type=membership&entity_id={member}", {},
                 None),
                ("audit verify", auditor, "GET", "/ui/audit/verify", {}, None),
                ("lake console", analyst, "GET", "/ui/lake", {}, None),
                ("lake query", analyst, "POST", "/ui/lake/query", {"data": {
                    "csrf_token": lake_csrf.group(1), "action": "run",
                    "sql": "SELECT range AS n, range * 2 AS twice FROM range(1000)"}}, None),
                ("members", admin, "GET", "/ui/admin/members", {}, None),
                ("API keys", admin, "GET", "/ui/admin/keys", {}, None),
            ]
            for name, web, method, path, kw, target in pages:
                timed(web, method, path, 3, **kw)  # warm: caches, templates, connections
                results.append((name, timed(web, method, path, REQUESTS, **kw), target))
        say(f"{'page':<20} {'p50 ms':>8} {'p99 ms':>8}  target")
        ratios = []
        for name, values, target in results:
            p50 = statistics.median(values)
            line = f"{name:<20} {p50:8.1f} {p99(values):8.1f}"
            if target is not None:
                ratios.append(p50 / target)
                line += f"  p50 ≤ {target:.0f} ms: ratio {p50 / target:.2f}"
            say(line)
        say(f"p50 ratio {max(ratios):.2f}")


if __name__ == "__main__":
    main()
