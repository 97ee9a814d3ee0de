"""What analysts do with the real ADBC Flight SQL driver: query, browse, prepare, time travel."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from adbc_driver_manager import Error as AdbcError

from flight import protocol as P
from flight import schemas as S
from tests.flight.flightkit import ORG_A, PASSWORD, Lake, RecordingAuthenticator, query


def test_connect_execute_fetch(ana: Any) -> None:
    with ana.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs ORDER BY run_id")
        assert cur.fetchall() == [("a-run-1", "completed"), ("a-run-2", "running"), ("a-run-3", "running")]
        assert [d[0] for d in cur.description] == ["run_id", "status"]


def test_whole_table_and_engine_queries_agree(ana: Any) -> None:
    # `SELECT * FROM t` streams the dataset directly; the WHERE version goes through DuckDB.
    direct = query(ana, "SELECT * FROM form_x")
    engine = query(ana, "SELECT * FROM form_x WHERE true ORDER BY run_id")
    assert direct.schema == engine.schema
    assert direct.sort_by("run_id").to_pylist() == engine.to_pylist()
    assert direct.schema.field("submitted_at").type == pa.timestamp("us", tz="UTC")
    assert set(direct.column("org_id").to_pylist()) == {ORG_A}


def test_whole_table_reads_handle_schema_evolution(ana: Any) -> None:
    direct = query(ana, "SELECT * FROM form_evolving")
    engine = query(ana, "SELECT * FROM form_evolving WHERE true")
    assert direct.schema == engine.schema and sorted(direct.schema.names) == ["grade", "n", "org_id"]
    assert sorted(direct.to_pylist(), key=lambda r: r["n"]) == sorted(engine.to_pylist(), key=lambda r: r["n"])
    assert sorted((r["n"], r["grade"]) for r in direct.to_pylist()) == [(1, None), (3, "B")]


def test_result_schema_without_running(ana: Any) -> None:
    with ana.cursor() as cur:
        schema = cur.adbc_execute_schema("SELECT run_id, count(*) AS n FROM runs GROUP BY run_id")  # GetSchema
    assert schema.names == ["run_id", "n"] and schema.field("n").type == pa.int64()


def test_qualified_and_case_insensitive_names(ana: Any) -> None:
    assert query(ana, "SELECT count(*) AS n FROM flasktrack.main.runs").column("n").to_pylist() == [3]
    assert query(ana, "SELECT count(*) AS n FROM main.RUNS").column("n").to_pylist() == [3]
    assert query(ana, 'FROM "form_x"').num_rows == 2


def test_large_results_stream_in_batches(uri: str) -> None:
    client = pa_flight.connect(uri)
    options = pa_flight.FlightCallOptions(headers=[client.authenticate_basic_token("ana@a.example", PASSWORD)])
    for sql in ("SELECT * FROM form_big", "SELECT i, label FROM form_big WHERE i >= 0"):
        descriptor = pa_flight.FlightDescriptor.for_command(P.pack(P.CommandStatementQuery(query=sql)))
        info = client.get_flight_info(descriptor, options)
        reader = client.do_get(info.endpoints[0].ticket, options)
        batches = [chunk.data for chunk in reader]
        assert sum(b.num_rows for b in batches) == 50_000
        assert len(batches) > 3  # the server's max_batch_bytes is 64 KiB in these tests
        assert max(b.nbytes for b in batches) <= 64 * 1024 * 1.1
    client.close()


def test_get_objects_lists_the_org_view(ana: Any) -> None:
    objects = ana.adbc_get_objects().read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["flasktrack"]
    schemas = objects[0]["catalog_db_schemas"]
    assert [s["db_schema_name"] for s in schemas] == ["main"]
    tables = {t["table_name"]: t for t in schemas[0]["db_schema_tables"]}
    assert sorted(tables) == ["form_big", "form_evolving", "form_x", "runs", "runs_current", "step_events"]  # analyst
    columns = [c["column_name"] for c in tables["form_x"]["table_columns"]]
    assert columns == ["org_id", "run_id", "ph", "colony_count", "submitted_at"]
    only_forms = ana.adbc_get_objects(table_name_filter="form\\_x").read_all().to_pylist()
    found = [t["table_name"] for t in only_forms[0]["catalog_db_schemas"][0]["db_schema_tables"]]
    assert found == ["form_x"]


def test_get_table_schema_carries_remarks(ana: Any) -> None:
    schema = ana.adbc_get_table_schema("form_x")
    assert schema.names == ["org_id", "run_id", "ph", "colony_count", "submitted_at"]
    assert schema.field("ph").type == pa.float64()
    assert schema.field("submitted_at").type == pa.timestamp("us", tz="UTC")
    meta = schema.field("ph").metadata
    assert meta[b"ARROW:FLIGHT:SQL:REMARKS"] == b"pH of the culture"
    assert meta[b"ARROW:FLIGHT:SQL:TABLE_NAME"] == b"form_x"
    assert meta[b"ARROW:FLIGHT:SQL:TYPE_NAME"] == b"DOUBLE"
    assert schema.metadata[b"ARROW:FLIGHT:SQL:REMARKS"] == b"Form X: culture check"


def test_table_types_and_sql_info(ana: Any) -> None:
    assert ana.adbc_get_table_types() == ["TABLE"]
    info = ana.adbc_get_info()
    assert info["vendor_name"] == "Flask Track"
    assert info["vendor_arrow_version"] == pa.__version__


def test_sql_info_for_jdbc_clients(uri: str) -> None:
    client = pa_flight.connect(uri)
    options = pa_flight.FlightCallOptions(headers=[client.authenticate_basic_token("ana@a.example", PASSWORD)])
    command = P.CommandGetSqlInfo(info=[S.SqlInfo.FLIGHT_SQL_SERVER_READ_ONLY, S.SqlInfo.SQL_IDENTIFIER_QUOTE_CHAR])
    info = client.get_flight_info(pa_flight.FlightDescriptor.for_command(P.pack(command)), options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    assert table.schema == S.SQL_INFO_SCHEMA
    assert table.to_pylist() == [{"info_name": 3, "value": True}, {"info_name": 504, "value": '"'}]
    everything = P.pack(P.CommandGetSqlInfo())
    info = client.get_flight_info(pa_flight.FlightDescriptor.for_command(everything), options)
    codes = client.do_get(info.endpoints[0].ticket, options).read_all().column("info_name").to_pylist()
    assert {0, 1, 2, 3, 4, 8, 500, 504, 508, 520, 567, 576} <= set(codes)
    client.close()


def test_prepared_statements(ana: Any, auth: RecordingAuthenticator) -> None:
    sql = "SELECT count(*) AS n FROM step_events"
    with ana.cursor() as cur:
        cur.adbc_prepare(sql)  # DoAction CreatePreparedStatement
        cur.execute(sql)  # GetFlightInfo(CommandPreparedStatementQuery) + DoGet
        assert cur.fetchall() == [(1,)]
        cur.execute(sql)  # executes the same prepared statement again
        assert cur.fetchall() == [(1,)]
    events = [e for _, e in auth.wait_for(sql)]
    assert [e.outcome for e in events] == ["ok", "ok"]
    assert events[0].tables == ("step_events",)


def test_bound_parameters_are_refused_clearly(ana: Any) -> None:
    with ana.cursor() as cur, pytest.raises(AdbcError, match="parameters are not supported"):
        cur.execute("SELECT run_id FROM runs WHERE status = ?", ("running",))


def test_time_travel_by_version_and_timestamp(ana: Any, lake: Lake) -> None:
    assert query(ana, 'SELECT count(*) AS n FROM "runs@v0"').column("n").to_pylist() == [2]
    assert query(ana, 'SELECT count(*) AS n FROM "runs@v1"').column("n").to_pylist() == [3]
    at = lake.runs_v0_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert query(ana, f'SELECT count(*) AS n FROM "runs@{at}"').column("n").to_pylist() == [2]
    rows = query(ana, f'SELECT r.run_id FROM runs r ANTI JOIN "runs@{at}" o USING (run_id)').to_pylist()
    assert rows == [{"run_id": "a-run-3"}]
    assert query(ana, 'SELECT * FROM "runs@v0"').num_rows == 2  # whole-table path as well


def test_time_travel_errors(ana: Any, lake: Lake) -> None:
    with pytest.raises(AdbcError, match="has no version 42"):
        query(ana, 'SELECT * FROM "runs@v42"')
    before = lake.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(AdbcError, match="did not exist yet"):
        query(ana, f'SELECT * FROM "runs@{before}"')
    with pytest.raises(AdbcError, match="ISO-8601"):
        query(ana, 'SELECT * FROM "runs@yesterday"')


def test_sql_errors_are_reported(ana: Any, auth: RecordingAuthenticator) -> None:
    with pytest.raises(AdbcError, match="does not exist"):
        query(ana, "SELECT * FROM no_such_table")
    with pytest.raises(AdbcError, match="Parser Error"):
        query(ana, "SELEC 1")
    assert [e.outcome for _, e in auth.events_for("SELEC 1")] == ["error"]
    assert query(ana, "SELECT 42 AS answer").to_pylist() == [{"answer": 42}]


def _metadata(uri: str, command: Any) -> pa.Table:
    client = pa_flight.connect(uri)
    options = pa_flight.FlightCallOptions(headers=[client.authenticate_basic_token("ana@a.example", PASSWORD)])
    descriptor = pa_flight.FlightDescriptor.for_command(P.pack(command))
    info = client.get_flight_info(descriptor, options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    assert table.schema == info.schema == client.get_schema(descriptor, options).schema
    client.close()
    return table


def test_metadata_filters(uri: str) -> None:
    schemas = _metadata(uri, P.CommandGetDbSchemas(catalog="flasktrack", db_schema_filter_pattern="ma%"))
    assert schemas.to_pylist() == [{"catalog_name": "flasktrack", "db_schema_name": "main"}]
    assert _metadata(uri, P.CommandGetDbSchemas(catalog="elsewhere")).num_rows == 0
    assert _metadata(uri, P.CommandGetTables(table_types=["VIEW"])).num_rows == 0
    assert _metadata(uri, P.CommandGetTables(db_schema_filter_pattern="other")).num_rows == 0
    tables = _metadata(uri, P.CommandGetTables(table_name_filter_pattern="%s", table_types=["TABLE"]))
    assert tables.column("table_name").to_pylist() == ["runs", "step_events"]
    assert _metadata(uri, P.CommandGetCatalogs()).to_pylist() == [{"catalog_name": "flasktrack"}]
    assert _metadata(uri, P.CommandGetTableTypes()).to_pylist() == [{"table_type": "TABLE"}]
    assert _metadata(uri, P.CommandGetPrimaryKeys(table="runs")).schema == S.PRIMARY_KEYS_SCHEMA
    assert _metadata(uri, P.CommandGetImportedKeys(table="runs")).num_rows == 0
    assert _metadata(uri, P.CommandGetXdbcTypeInfo(data_type=93)).column("type_name").to_pylist() == [
        "TIMESTAMP",
        "TIMESTAMP WITH TIME ZONE",
    ]
