"""Registry records reach the analyst: every revision through the outbox and the sink into Delta, read over
Flight SQL with a real ADBC client, one organization's rows only."""

from __future__ import annotations

import json

import adbc_driver_flightsql.dbapi as flight_sql

from domain.roles import Role
from lake.sink import Sink, SinkSettings
from lake.writer import Lake
from tests.registry.support import BASE, make
from tests.support import PASSWORD, make_org


def test_every_revision_reaches_the_lake_and_the_current_view_holds_the_last(client, owner, analyst_lake):
    lake_dir, uri = analyst_lake
    org, other = make_org(owner, client), make_org(owner, client)
    h = org.headers(Role.lab_manager)
    hood = make(client, org, "equipment", "Laminar-flow hood", attributes={"calibration_due": "2027-02-01"})
    url = f"{BASE}/equipment/{hood['id']}"
    assert client.patch(url, json={"revision": 1, "reason": "HEPA filter failed", "status": "out_of_service"},
                        headers=h).status_code == 200
    assert client.post(f"{url}/archive", json={"reason": "replaced"}, headers=h).status_code == 200
    autoclave = make(client, org, "equipment", "Autoclave", attributes={"calibration_due": "2026-12-15"})
    make(client, other, "equipment", "Their hood")

    Sink(owner.engine, Lake(str(lake_dir)), SinkSettings()).drain()

    with flight_sql.connect(uri, db_kwargs={"username": org.users[Role.analyst][1], "password": PASSWORD}) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT code, revision, status, archived_at IS NOT NULL FROM registry_items "
                    "WHERE kind = 'equipment' ORDER BY code, revision")
        hood_code, autoclave_code = hood["code"], autoclave["code"]
        assert cur.fetchall() == [(hood_code, 1, "in_service", False), (hood_code, 2, "out_of_service", False),
                                  (hood_code, 3, "out_of_service", True), (autoclave_code, 1, "in_service", False)]
        cur.execute("SELECT name, revision, attributes FROM registry_items_current ORDER BY name")
        current = cur.fetchall()
        assert [(n, r) for n, r, _ in current] == [("Autoclave", 1), ("Laminar-flow hood", 3)]  # nothing of theirs
        assert json.loads(current[0][2])["calibration_due"] == "2026-12-15"
        cur.execute("SELECT count(DISTINCT org_id) FROM registry_items")
        assert cur.fetchone() == (1,)
