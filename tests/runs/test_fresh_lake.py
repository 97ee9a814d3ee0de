"""A fresh platform as `make run` leaves it, before anyone has run anything: the README's ADBC example
works as written, and run revisions have a current view."""

from __future__ import annotations

import contextlib
import io
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.app import build_platform
from core.config import Settings
from core.db import TenantSessions, make_engine
from domain.roles import Role
from domain.runs import service as runs
from domain.runs.models import RunLaunch
from flasktrack.demo import _demo_caller, seed_demo
from flasktrack.postgres import scratch_database, upgrade_schema
from flight.server import FlightSqlServer
from flight.service import PlatformAuthenticator
from lake.sink import Sink, SinkSettings
from lake.writer import Lake

ROOT = Path(__file__).resolve().parents[2]
README_FLIGHT = "grpc://127.0.0.1:8815"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fresh(database_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Its own database (nothing of other tests in its outbox), the demo seeded as `flasktrack up` does, its
    own lake and Flight SQL server."""
    with scratch_database(database_url, "ft_fresh") as url:
        upgrade_schema(url)
        settings = Settings(database_url=url, data_dir=tmp_path, log_json=True)
        platform = build_platform(settings)
        owner = TenantSessions(make_engine(url, pool_size=2))
        seed_demo(owner)
        lake = Lake(str(tmp_path / "lake"))
        port = _free_port()
        server = FlightSqlServer(f"grpc://127.0.0.1:{port}", lake.root,
                                 PlatformAuthenticator(platform.sessions, settings))
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        try:
            yield {"owner": owner, "lake": lake, "uri": f"grpc://127.0.0.1:{port}",
                   "sink": lambda: Sink(owner.engine, lake, SinkSettings()).drain()}
        finally:
            server.shutdown()
            owner.engine.dispose()
            platform.sessions.engine.dispose()


def _readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(b for b in blocks if "flight_sql.connect" in b)
    assert README_FLIGHT in example
    return example


def test_the_readme_adbc_example_works_before_any_run(fresh):
    fresh["sink"]()
    code = _readme_example().replace(README_FLIGHT, fresh["uri"])
    printed = io.StringIO()
    scope: dict[str, Any] = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the documented example, as written
    scope["conn"].close()
    out = printed.getvalue()
    assert "'form_agro_culture'" in out and "'runs_current'" in out, out
    assert "strain: string" in out and "od600: double" in out and "submitted_by_display: string" in out, out


def test_runs_current_holds_each_runs_newest_revision(fresh):
    owner = fresh["owner"]
    manager = _demo_caller(owner, Role.lab_manager)
    with owner.begin(manager.org_id) as s:
        run, _, _ = runs.launch(s, manager, RunLaunch(protocol_key="fungal-culture-passage"))
        runs.launch_failed(s, manager, run.id, "Temporal is down")  # revision 2
    fresh["sink"]()
    import adbc_driver_flightsql.dbapi as flight_sql

    with flight_sql.connect(fresh["uri"], db_kwargs={"username": "analyst@demo.example.org",
                                                     "password": "flasktrack-demo"}) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT revision, status FROM runs WHERE run_id = '{run.id}' ORDER BY revision")
        assert cur.fetchall() == [(1, "running"), (2, "failed")]
        cur.execute(f"SELECT revision, status FROM runs_current WHERE run_id = '{run.id}'")
        assert cur.fetchall() == [(2, "failed")]
        objects = conn.adbc_get_objects(depth="columns", table_name_filter="runs%").read_all().to_pylist()
    tables = {t["table_name"]: t for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
    assert sorted(tables) == ["runs", "runs_current"]
    assert [c["column_name"] for c in tables["runs_current"]["table_columns"]] == \
        [c["column_name"] for c in tables["runs"]["table_columns"]]
    assert uuid.UUID(str(run.id))


def test_versions_approved_before_the_upgrade_get_their_form_tables(database_url, tmp_path):
    """An existing install: protocols approved by an older version published no forms; the migration does."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    with scratch_database(database_url, "ft_forms") as url:
        cfg = Config(str(ROOT / "alembic.ini"))
        cfg.set_main_option("script_location", str(ROOT / "migrations"))
        cfg.attributes["url"] = url
        command.upgrade(cfg, "0006")
        owner = TenantSessions(make_engine(url, pool_size=2))
        try:
            seed_demo(owner)
            with owner.begin(None) as s:  # as an older version left it: no form published
                s.execute(text("DELETE FROM outbox WHERE topic = 'form_published'"))
            command.upgrade(cfg, "head")
            lake = Lake(str(tmp_path / "lake"))
            Sink(owner.engine, lake, SinkSettings()).drain()
            assert "form_agro_culture" in lake.tables() and "form_plant_subculture" in lake.tables()
            assert {"strain", "od600"} <= set(lake.schema("form_agro_culture").names)
        finally:
            owner.engine.dispose()
