"""Arrow shapes of Flight SQL answers: the metadata commands' result schemas, GetSqlInfo codes and
values, and the column metadata keys (Arrow `format/FlightSql.proto`).

These are Arrow schemas, not protobuf: the spec describes them in comments, and the Go/C++ Flight
SQL libraries validate results against their reference schemas, nullability included ("Invalid
schema returned" otherwise). What this server answers lives in flight/metadata.py.
"""

from __future__ import annotations

import enum

import pyarrow as pa


class SqlInfo(enum.IntEnum):
    """`SqlInfo` codes from FlightSql.proto (the ones this server answers)."""

    FLIGHT_SQL_SERVER_NAME = 0
    FLIGHT_SQL_SERVER_VERSION = 1
    FLIGHT_SQL_SERVER_ARROW_VERSION = 2
    FLIGHT_SQL_SERVER_READ_ONLY = 3
    FLIGHT_SQL_SERVER_SQL = 4
    FLIGHT_SQL_SERVER_SUBSTRAIT = 5
    FLIGHT_SQL_SERVER_TRANSACTION = 8
    FLIGHT_SQL_SERVER_CANCEL = 9
    FLIGHT_SQL_SERVER_BULK_INGESTION = 10
    FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED = 11
    FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT = 100
    FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT = 101
    SQL_DDL_CATALOG = 500
    SQL_DDL_SCHEMA = 501
    SQL_DDL_TABLE = 502
    SQL_IDENTIFIER_CASE = 503
    SQL_IDENTIFIER_QUOTE_CHAR = 504
    SQL_QUOTED_IDENTIFIER_CASE = 505
    SQL_ALL_TABLES_ARE_SELECTABLE = 506
    SQL_NULL_ORDERING = 507
    SQL_KEYWORDS = 508
    SQL_NUMERIC_FUNCTIONS = 509
    SQL_STRING_FUNCTIONS = 510
    SQL_SYSTEM_FUNCTIONS = 511
    SQL_DATETIME_FUNCTIONS = 512
    SQL_SEARCH_STRING_ESCAPE = 513
    SQL_EXTRA_NAME_CHARACTERS = 514
    SQL_SUPPORTS_COLUMN_ALIASING = 515
    SQL_NULL_PLUS_NULL_IS_NULL = 516
    SQL_SUPPORTS_CONVERT = 517
    SQL_SUPPORTS_TABLE_CORRELATION_NAMES = 518
    SQL_SUPPORTS_DIFFERENT_TABLE_CORRELATION_NAMES = 519
    SQL_SUPPORTS_EXPRESSIONS_IN_ORDER_BY = 520
    SQL_SUPPORTS_ORDER_BY_UNRELATED = 521
    SQL_SUPPORTED_GROUP_BY = 522
    SQL_SUPPORTS_LIKE_ESCAPE_CLAUSE = 523
    SQL_SUPPORTS_NON_NULLABLE_COLUMNS = 524
    SQL_SUPPORTED_GRAMMAR = 525
    SQL_ANSI92_SUPPORTED_LEVEL = 526
    SQL_SUPPORTS_INTEGRITY_ENHANCEMENT_FACILITY = 527
    SQL_OUTER_JOINS_SUPPORT_LEVEL = 528
    SQL_SCHEMA_TERM = 529
    SQL_PROCEDURE_TERM = 530
    SQL_CATALOG_TERM = 531
    SQL_CATALOG_AT_START = 532
    SQL_SCHEMAS_SUPPORTED_ACTIONS = 533
    SQL_CATALOGS_SUPPORTED_ACTIONS = 534
    SQL_SUPPORTED_POSITIONED_COMMANDS = 535
    SQL_SELECT_FOR_UPDATE_SUPPORTED = 536
    SQL_STORED_PROCEDURES_SUPPORTED = 537
    SQL_SUPPORTED_SUBQUERIES = 538
    SQL_CORRELATED_SUBQUERIES_SUPPORTED = 539
    SQL_SUPPORTED_UNIONS = 540
    SQL_MAX_BINARY_LITERAL_LENGTH = 541
    SQL_MAX_CHAR_LITERAL_LENGTH = 542
    SQL_MAX_COLUMN_NAME_LENGTH = 543
    SQL_MAX_COLUMNS_IN_GROUP_BY = 544
    SQL_MAX_COLUMNS_IN_INDEX = 545
    SQL_MAX_COLUMNS_IN_ORDER_BY = 546
    SQL_MAX_COLUMNS_IN_SELECT = 547
    SQL_MAX_COLUMNS_IN_TABLE = 548
    SQL_MAX_CONNECTIONS = 549
    SQL_MAX_CURSOR_NAME_LENGTH = 550
    SQL_MAX_INDEX_LENGTH = 551
    SQL_DB_SCHEMA_NAME_LENGTH = 552
    SQL_MAX_PROCEDURE_NAME_LENGTH = 553
    SQL_MAX_CATALOG_NAME_LENGTH = 554
    SQL_MAX_ROW_SIZE = 555
    SQL_MAX_ROW_SIZE_INCLUDES_BLOBS = 556
    SQL_MAX_STATEMENT_LENGTH = 557
    SQL_MAX_STATEMENTS = 558
    SQL_MAX_TABLE_NAME_LENGTH = 559
    SQL_MAX_TABLES_IN_SELECT = 560
    SQL_MAX_USERNAME_LENGTH = 561
    SQL_DEFAULT_TRANSACTION_ISOLATION = 562
    SQL_TRANSACTIONS_SUPPORTED = 563
    SQL_SUPPORTED_TRANSACTIONS_ISOLATION_LEVELS = 564
    SQL_DATA_DEFINITION_CAUSES_TRANSACTION_COMMIT = 565
    SQL_DATA_DEFINITIONS_IN_TRANSACTIONS_IGNORED = 566
    SQL_SUPPORTED_RESULT_SET_TYPES = 567
    SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_UNSPECIFIED = 568
    SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_FORWARD_ONLY = 569
    SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_SCROLL_SENSITIVE = 570
    SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_SCROLL_INSENSITIVE = 571
    SQL_BATCH_UPDATES_SUPPORTED = 572
    SQL_SAVEPOINTS_SUPPORTED = 573
    SQL_NAMED_PARAMETERS_SUPPORTED = 574
    SQL_LOCATORS_UPDATE_COPY = 575
    SQL_STORED_FUNCTIONS_USING_CALL_SYNTAX_SUPPORTED = 576


# --- Result schemas of the metadata commands (FlightSql.proto comments; nullability as the
# reference implementations validate it). -------------------------------------------------

_SQL_INFO_VALUE = pa.dense_union(
    [
        pa.field("string_value", pa.utf8(), nullable=False),
        pa.field("bool_value", pa.bool_(), nullable=False),
        pa.field("bigint_value", pa.int64(), nullable=False),
        pa.field("int32_bitmask", pa.int32(), nullable=False),
        pa.field("string_list", pa.list_(pa.utf8()), nullable=False),
        pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32())), nullable=False),
    ],
    type_codes=[0, 1, 2, 3, 4, 5],
)

SQL_INFO_SCHEMA = pa.schema(
    [
        pa.field("info_name", pa.uint32(), nullable=False),
        pa.field("value", _SQL_INFO_VALUE, nullable=False),
    ]
)

CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])

DB_SCHEMAS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8(), nullable=True),
        pa.field("db_schema_name", pa.utf8(), nullable=False),
    ]
)

TABLES_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8(), nullable=True),
        pa.field("db_schema_name", pa.utf8(), nullable=True),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("table_type", pa.utf8(), nullable=False),
    ]
)

TABLES_WITH_SCHEMA_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))

TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])

PRIMARY_KEYS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8(), nullable=True),
        pa.field("db_schema_name", pa.utf8(), nullable=True),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("column_name", pa.utf8(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        pa.field("key_name", pa.utf8(), nullable=True),
    ]
)

KEYS_SCHEMA = pa.schema(  # imported keys, exported keys and cross reference
    [
        pa.field("pk_catalog_name", pa.utf8(), nullable=True),
        pa.field("pk_db_schema_name", pa.utf8(), nullable=True),
        pa.field("pk_table_name", pa.utf8(), nullable=False),
        pa.field("pk_column_name", pa.utf8(), nullable=False),
        pa.field("fk_catalog_name", pa.utf8(), nullable=True),
        pa.field("fk_db_schema_name", pa.utf8(), nullable=True),
        pa.field("fk_table_name", pa.utf8(), nullable=False),
        pa.field("fk_column_name", pa.utf8(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        pa.field("fk_key_name", pa.utf8(), nullable=True),
        pa.field("pk_key_name", pa.utf8(), nullable=True),
        pa.field("update_rule", pa.uint8(), nullable=False),
        pa.field("delete_rule", pa.uint8(), nullable=False),
    ]
)

XDBC_TYPE_INFO_SCHEMA = pa.schema(
    [
        pa.field("type_name", pa.utf8(), nullable=False),
        pa.field("data_type", pa.int32(), nullable=False),
        pa.field("column_size", pa.int32(), nullable=True),
        pa.field("literal_prefix", pa.utf8(), nullable=True),
        pa.field("literal_suffix", pa.utf8(), nullable=True),
        pa.field("create_params", pa.list_(pa.field("item", pa.utf8(), nullable=False)), nullable=True),
        pa.field("nullable", pa.int32(), nullable=False),
        pa.field("case_sensitive", pa.bool_(), nullable=False),
        pa.field("searchable", pa.int32(), nullable=False),
        pa.field("unsigned_attribute", pa.bool_(), nullable=True),
        pa.field("fixed_prec_scale", pa.bool_(), nullable=False),
        pa.field("auto_increment", pa.bool_(), nullable=True),
        pa.field("local_type_name", pa.utf8(), nullable=True),
        pa.field("minimum_scale", pa.int32(), nullable=True),
        pa.field("maximum_scale", pa.int32(), nullable=True),
        pa.field("sql_data_type", pa.int32(), nullable=False),
        pa.field("datetime_subcode", pa.int32(), nullable=True),
        pa.field("num_prec_radix", pa.int32(), nullable=True),
        pa.field("interval_precision", pa.int32(), nullable=True),
    ]
)

# Column metadata keys a Flight SQL server may attach to result/table schemas (the lake's catalog writes them).
from lake.schema_meta import (  # noqa: E402, F401 - re-exported: one definition
    META_CATALOG_NAME,
    META_DB_SCHEMA_NAME,
    META_IS_AUTO_INCREMENT,
    META_IS_CASE_SENSITIVE,
    META_IS_READ_ONLY,
    META_IS_SEARCHABLE,
    META_PRECISION,
    META_REMARKS,
    META_SCALE,
    META_SCHEMA_NAME,
    META_TABLE_NAME,
    META_TYPE_NAME,
)

SqlInfoValue = str | bool | int | list[str] | dict[int, list[int]] | tuple[str, int]
"""A GetSqlInfo value: str, bool, int (→ bigint_value), ("int32", n) for int32 values and
bitmasks, list[str] (→ string_list) or dict[int, list[int]] (→ int32_to_int32_list_map)."""


def int32(value: int) -> tuple[str, int]:
    """Mark a GetSqlInfo value as int32 (`int32_bitmask` member) rather than int64."""
    return ("int32", value)


def sql_info_table(values: dict[int, SqlInfoValue], requested: list[int] | None = None) -> pa.Table:
    """Build the CommandGetSqlInfo result: one row per requested (known) code, in request order."""
    codes = [c for c in (requested or sorted(values)) if c in values]
    children: list[list[object]] = [[], [], [], [], [], []]
    type_ids: list[int] = []
    offsets: list[int] = []
    for code in codes:
        value = values[code]
        item: object
        if isinstance(value, bool):
            tid, item = 1, value
        elif isinstance(value, tuple):
            tid, item = 3, value[1]
        elif isinstance(value, int):
            tid, item = 2, value
        elif isinstance(value, str):
            tid, item = 0, value
        elif isinstance(value, list):
            tid, item = 4, value
        else:
            tid, item = 5, list(value.items())
        type_ids.append(tid)
        offsets.append(len(children[tid]))
        children[tid].append(item)
    child_types = [_SQL_INFO_VALUE.field(i).type for i in range(6)]
    child_arrays = [pa.array(items, type=t) for items, t in zip(children, child_types, strict=True)]
    type_id_buf = pa.array(type_ids, pa.int8()).buffers()[1]
    offset_buf = pa.array(offsets, pa.int32()).buffers()[1]
    union = pa.UnionArray.from_buffers(
        _SQL_INFO_VALUE, len(codes), [None, type_id_buf, offset_buf], children=child_arrays
    )
    names = pa.array(codes, pa.uint32())
    return pa.Table.from_arrays([names, union], schema=SQL_INFO_SCHEMA)


def serialize_schema(schema: pa.Schema) -> bytes:
    """An Arrow schema as an IPC message (what `dataset_schema` / `table_schema` carry)."""
    return schema.serialize().to_pybytes()

