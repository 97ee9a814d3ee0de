"""One step completion followed the whole way: HTTP → workflow → activities → outbox → lake sink →
Delta → Flight SQL → an analyst's ADBC client, with the platform's real identity and audit log."""

from __future__ import annotations

import uuid

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pytest
from sqlalchemy import text

from domain.roles import Role
from lake.sink import Sink, SinkSettings
from lake.writer import Lake
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol, complete, one_task, open_tasks
from tests.support import PASSWORD, make_org


def _connect(uri: str, user: str, password: str):
    return flight_sql.connect(uri, db_kwargs={"username": user, "password": password})


def test_completed_step_reaches_the_analyst(client, temporal_api, owner, analyst_lake):
    lake_dir, uri = analyst_lake
    org = make_org(owner, client)
    other = make_org(owner, client)
    key = f"weigh-{uuid.uuid4().hex[:6]}"
    form_table = f"form_{key.replace('-', '_')}_weighing"
    for o in (org, other):
        approve_protocol(owner, o.id, one_task(key, due=None))
    runs = {}
    for o, mass in ((org, "12.50"), (other, "99.00")):
        r = client.post("/api/v1/runs", json={"protocol_key": key, "subjects": [{"type": "sample", "id": "S-1"}]},
                        headers=o.headers(Role.lab_manager))
        assert r.status_code == 201, r.text
        runs[o.slug] = r.json()["id"]
        task = wait_for(lambda o=o: next(iter(open_tasks(client, o, runs[o.slug])), None), timeout=30)
        done = complete(client, o, task["id"], {"mass_g": mass, "balance": "XS205"}, ["balance_calibrated"])
        assert done.status_code == 200, done.text

    Sink(owner.engine, Lake(str(lake_dir)), SinkSettings()).drain()

    email = org.users[Role.analyst][1]
    with _connect(uri, email, PASSWORD) as conn, conn.cursor() as cur:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        tables = {t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
        assert {form_table, "step_events", "runs"} <= tables and "audit_log" not in tables  # as over the API
        cur.execute(f"SELECT run_id, mass_g, balance, submitted_by_display FROM {form_table}")
        rows = cur.fetchall()
        assert rows == [(runs[org.slug], 12.5, "XS205", f"technician of {org.slug}")]  # nothing of the other org
        cur.execute(f"SELECT count(*) FROM step_events WHERE run_id = '{runs[org.slug]}' AND event = 'completed'")
        assert cur.fetchone() == (1,)

    # A technician of the same org may not query the lake; wrong passwords are refused.
    with pytest.raises(adbc_driver_manager.Error) as denied:
        with _connect(uri, org.users[Role.technician][1], PASSWORD) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {form_table}")
            cur.fetchall()
    assert "PERMISSION_DENIED" in str(denied.value) or "Unauthorized" in str(denied.value)
    with pytest.raises(adbc_driver_manager.Error) as bad:
        with _connect(uri, email, "wrong password") as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    assert "UNAUTHENTICATED" in str(bad.value) or "Unauthenticated" in str(bad.value)

    # Every query is in the analyst's org audit log: who, the SQL, rows.
    def executed():
        with owner.begin(None) as s:
            s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org.id})
            return s.execute(text("SELECT convert_from(body, 'UTF8')::jsonb FROM audit_log WHERE org_id = :o "
                                  "AND entity_type = 'lake_query' ORDER BY seq"), {"o": org.id}).scalars().all()
    entries = wait_for(lambda: [e for e in executed() if form_table in e["after"]["sql"]], timeout=10)
    ok = [e for e in entries if e["after"]["outcome"] == "ok"]
    assert ok and ok[0]["actor"]["id"] == str(org.users[Role.analyst][0]) and ok[0]["after"]["rows"] == 1
    assert any(e["action"] == "deny" and e["actor"]["id"] == str(org.users[Role.technician][0]) for e in entries)
