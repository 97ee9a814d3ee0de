"""Wire details that clients depend on: field numbers, type URLs, metadata result schemas."""

from __future__ import annotations

import base64

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from google.protobuf import any_pb2

from flight import metadata as M
from flight import protocol as P
from flight import schemas as S
from flight.auth import Principal, SessionStore, parse_basic, parse_bearer
from lake.catalog import like_to_regex, parse_table_ref
from lake.sandbox import plain_scan_table


def test_messages_use_flight_sql_field_numbers() -> None:
    # Hand-encoded protobuf: (field number << 3 | wire type) tags from FlightSql.proto.
    assert P.TicketStatementQuery(statement_handle=b"h").SerializeToString() == b"\x0a\x01h"
    assert P.CommandStatementQuery(query="q").SerializeToString() == b"\x0a\x01q"
    assert P.CommandGetTables(include_schema=True).SerializeToString() == b"\x28\x01"
    assert P.CommandGetTables(table_types=["TABLE"]).SerializeToString() == b"\x22\x05TABLE"
    assert P.CommandGetDbSchemas(db_schema_filter_pattern="m%").SerializeToString() == b"\x12\x02m%"
    assert P.CommandGetSqlInfo(info=[0, 508]).SerializeToString() == b"\x0a\x03\x00\xfc\x03"
    result = P.ActionCreatePreparedStatementResult(
        prepared_statement_handle=b"h", dataset_schema=b"s", parameter_schema=b"p"
    )
    assert result.SerializeToString() == b"\x0a\x01h\x12\x01s\x1a\x01p"
    assert P.DoPutUpdateResult(record_count=3).SerializeToString() == b"\x08\x03"
    assert P.CommandStatementIngest(table="t").SerializeToString() == b"\x12\x01t"


def test_optional_fields_have_presence() -> None:
    empty = P.CommandGetTables()
    assert not empty.HasField("catalog")
    assert P.CommandGetTables(catalog="").HasField("catalog")  # "" = tables without a catalog
    assert P.CommandGetDbSchemas(catalog="").SerializeToString() == b"\x0a\x00"


def test_any_wrapping_round_trip() -> None:
    packed = P.pack(P.CommandStatementQuery(query="SELECT 1"))
    wrapper = any_pb2.Any.FromString(packed)
    assert wrapper.type_url == "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    name, message = P.unpack(packed)
    assert name == "CommandStatementQuery" and message.query == "SELECT 1"


def test_metadata_schemas_match_the_spec() -> None:
    assert S.CATALOGS_SCHEMA == pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
    assert [(f.name, f.nullable) for f in S.TABLES_WITH_SCHEMA_SCHEMA] == [
        ("catalog_name", True),
        ("db_schema_name", True),
        ("table_name", False),
        ("table_type", False),
        ("table_schema", False),
    ]
    assert S.TABLES_WITH_SCHEMA_SCHEMA.field("table_schema").type == pa.binary()
    assert [(f.name, f.nullable) for f in S.DB_SCHEMAS_SCHEMA] == [("catalog_name", True), ("db_schema_name", False)]
    assert S.TABLE_TYPES_SCHEMA.field("table_type").nullable is False
    value = S.SQL_INFO_SCHEMA.field("value")
    assert S.SQL_INFO_SCHEMA.field("info_name").type == pa.uint32() and not value.nullable
    assert [value.type.field(i).name for i in range(6)] == [
        "string_value",
        "bool_value",
        "bigint_value",
        "int32_bitmask",
        "string_list",
        "int32_to_int32_list_map",
    ]
    assert value.type.type_codes == [0, 1, 2, 3, 4, 5] and value.type.mode == "dense"


def test_sql_info_table_uses_the_right_union_members() -> None:
    table = S.sql_info_table(
        {0: "Flask Track", 3: True, 100: S.int32(30_000), 508: ["SELECT"], 517: {1: [2]}, 541: 0},
        [3, 0, 100, 508, 517, 541, 9999],
    )
    table.validate(full=True)
    assert table.schema == S.SQL_INFO_SCHEMA
    assert table.column("info_name").to_pylist() == [3, 0, 100, 508, 517, 541]
    assert table.column("value").chunk(0).type_codes.to_pylist() == [1, 0, 3, 4, 5, 2]
    assert S.sql_info_table({0: "x"}, []).num_rows == 1  # no codes = everything


def test_table_references_and_patterns() -> None:
    assert parse_table_ref("runs").version is None
    assert parse_table_ref("form_x@v3").version == 3
    as_of = parse_table_ref("runs@2026-11-01T12:00:00Z").as_of
    assert as_of is not None and as_of.isoformat() == "2026-11-01T12:00:00+00:00"
    assert parse_table_ref("runs@2026-11-01").as_of is not None
    assert parse_table_ref("Not-A-Table") is None
    assert like_to_regex("form\\_%").match("form_x") and not like_to_regex("form\\_%").match("formxx")
    assert like_to_regex("r_ns").match("runs")
    assert plain_scan_table('SELECT * FROM flasktrack.main."runs@v1";', "flasktrack") == "runs@v1"
    assert plain_scan_table("FROM elsewhere.main.runs", "flasktrack") is None
    assert plain_scan_table("SELECT * FROM runs WHERE status = 'x'", "flasktrack") is None


def test_basic_credentials_with_or_without_padding() -> None:
    padded = base64.b64encode(b"ana@a.example:pw").decode()
    assert parse_basic(f"Basic {padded}") == ("ana@a.example", "pw")
    assert parse_basic(f"Basic {padded.rstrip('=')}") == ("ana@a.example", "pw")  # the Go client
    assert parse_basic("Basic !!!") is None
    assert parse_basic(f"Bearer {padded}") is None
    assert parse_bearer("Bearer abc") == "abc" and parse_bearer("Basic abc") is None


def test_sessions_expire_when_idle_and_at_most_after_max_ttl() -> None:
    now = [0.0]
    store = SessionStore(idle_ttl_s=10, max_ttl_s=25, clock=lambda: now[0])
    principal = Principal("org", "analyst", "user", "u", "U")
    session = store.open(principal)
    assert store.lookup(session.token) is session
    now[0] = 9
    assert store.lookup(session.token) is session  # use renews the idle timer
    now[0] = 18
    assert store.lookup(session.token) is session
    now[0] = 26
    assert store.lookup(session.token) is None  # past the absolute lifetime
    other = store.open(principal)
    now[0] = 37
    assert store.lookup(other.token) is None  # idle too long
    assert store.lookup("forged") is None


def test_pending_logins_expire_and_are_bounded() -> None:
    now = [0.0]
    store = SessionStore(pending_ttl_s=5, max_sessions=3, clock=lambda: now[0])
    pending = [store.open_pending("ana@a.example", f"guess {i}") for i in range(3)]
    with pytest.raises(pa_flight.FlightUnavailableError, match="too many sessions"):
        store.open_pending("ana@a.example", "one more")
    now[0] = 6  # never used: the unchecked credentials are forgotten
    assert all(store.lookup(p.token) is None for p in pending)
    assert store.open_pending("ana@a.example", "again").credentials == ("ana@a.example", "again")


def test_xdbc_type_info_table() -> None:
    table = M.xdbc_type_info()
    assert table.schema == S.XDBC_TYPE_INFO_SCHEMA
    codes = table.column("data_type").to_pylist()
    assert codes == sorted(codes)
    assert M.xdbc_type_info(12).column("type_name").to_pylist() == ["VARCHAR"]
