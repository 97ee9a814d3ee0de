"""Samples, batches, lineage and custody reach the lake through the outbox: one row per revision (with a `_current`
view), one per edge and per movement, queried by an analyst over Flight SQL, their organization's rows only."""

from __future__ import annotations

import uuid

import adbc_driver_flightsql.dbapi as flight_sql

from domain.roles import Role
from lake.sink import Sink, SinkSettings
from lake.writer import Lake
from tests.samples.material import batch, location, sample, status
from tests.support import PASSWORD


def test_material_reaches_the_analyst(client, owner, org_a, org_b, analyst_lake):
    lake_dir, uri = analyst_lake
    b = batch(client, org_a, name=f"MS medium {uuid.uuid4().hex[:4]}")
    parent = sample(client, org_a, batch_id=b["id"], location_id=str(location(owner, org_a.id)))
    status(client, org_a, parent["id"], "in_use")
    r = client.post("/api/v1/samples/derive", json={"parent_ids": [parent["id"]], "operation": "subculture",
                                                    "count": 2, "step_key": "subculture"},
                    headers={**org_a.headers(Role.technician), "X-Request-ID": str(uuid.uuid4())})
    assert r.status_code == 201, r.text
    children = sorted(c["id"] for c in r.json())
    r = client.post(f"/api/v1/samples/{parent['id']}/moves", json={"to_location_id": str(location(owner, org_a.id)),
                                                                  "reason": "to the incubator"},
                    headers=org_a.headers(Role.technician))
    assert r.status_code == 201
    sample(client, org_b)  # another organization's material: never in org A's answers

    Sink(owner.engine, Lake(str(lake_dir)), SinkSettings()).drain()

    with flight_sql.connect(uri, db_kwargs={"username": org_a.users[Role.analyst][1], "password": PASSWORD}) as conn, \
            conn.cursor() as cur:
        cur.execute(f"SELECT revision, status, batch_id FROM samples WHERE sample_id = '{parent['id']}'"
                    " ORDER BY revision")
        assert cur.fetchall() == [(1, "received", b["id"]), (2, "in_use", b["id"]), (3, "in_use", b["id"])]
        cur.execute(f"SELECT revision, status FROM samples_current WHERE sample_id = '{parent['id']}'")
        assert cur.fetchall() == [(3, "in_use")]
        cur.execute(f"SELECT child_id, operation, step_key FROM lineage_edges WHERE parent_id = '{parent['id']}'"
                    " ORDER BY child_id")
        assert cur.fetchall() == [(c, "subculture", "subculture") for c in children]
        cur.execute(f"SELECT reason FROM sample_movements WHERE sample_id = '{parent['id']}' ORDER BY moved_at")
        assert cur.fetchall() == [("received",), ("to the incubator",)]
        cur.execute(f"SELECT code, status FROM batches_current WHERE batch_id = '{b['id']}'")
        assert cur.fetchall() == [(b["code"], "open")]
        cur.execute("SELECT count(DISTINCT org_id) FROM samples")
        assert cur.fetchone() == (1,)
