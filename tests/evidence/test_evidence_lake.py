"""Evidence metadata reaches the lake through the outbox: an analyst joins files and links over Flight SQL, and
sees only their organization's."""

from __future__ import annotations

import adbc_driver_flightsql.dbapi as flight_sql

from domain.roles import Role
from lake.sink import Sink, SinkSettings
from lake.writer import Lake
from tests.evidence.support import CSV, make_sample, png, uploaded
from tests.support import PASSWORD, make_org


def test_an_analyst_joins_evidence_files_and_their_links(client, owner, analyst_lake) -> None:
    lake_dir, uri = analyst_lake
    org, other = make_org(owner, client), make_org(owner, client)
    sample_id, _ = make_sample(owner, org)
    photo = uploaded(client, org, png(41), filename="plate.png",
                     target={"target_type": "sample", "target_id": str(sample_id)})
    readings = uploaded(client, org, CSV, filename="readings.csv", content_type="text/csv")
    uploaded(client, other, png(42))

    Sink(owner.engine, Lake(str(lake_dir)), SinkSettings()).drain()

    with flight_sql.connect(uri, db_kwargs={"username": org.users[Role.analyst][1], "password": PASSWORD}) as conn, \
            conn.cursor() as cur:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        tables = {t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
        assert {"evidence_files", "evidence_links"} <= tables
        cur.execute("SELECT evidence_id, sha256, size_bytes, content_type, filename, uploaded_by_display"
                    " FROM evidence_files ORDER BY filename")
        assert cur.fetchall() == [
            (photo["id"], photo["sha256"], photo["size_bytes"], "image/png", "plate.png", f"technician of {org.slug}"),
            (readings["id"], readings["sha256"], len(CSV), "text/csv", "readings.csv", f"technician of {org.slug}")]
        cur.execute("SELECT f.filename, l.target_type, l.target_id, l.sha256 = f.sha256 FROM evidence_links l"
                    " JOIN evidence_files f USING (evidence_id)")
        assert cur.fetchall() == [("plate.png", "sample", str(sample_id), True)]
