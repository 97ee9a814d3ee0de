"""Flight SQL wire messages and result schemas (Arrow `format/FlightSql.proto`).

No protoc is available, so the messages are described here as data and compiled at
import time into real protobuf classes (`descriptor_pb2` → `message_factory`). Field
numbers, labels and proto3 `optional` presence follow FlightSql.proto exactly; the
result schemas (nullability included) follow the reference schemas the Go/C++
Flight SQL libraries validate against ("Invalid schema returned" otherwise).
"""

from __future__ import annotations

import enum
from typing import Any

import pyarrow as pa
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

PACKAGE = "arrow.flight.protocol.sql"
TYPE_URL_PREFIX = "type.googleapis.com/"

_F = descriptor_pb2.FieldDescriptorProto
_STRING, _BYTES, _BOOL = _F.TYPE_STRING, _F.TYPE_BYTES, _F.TYPE_BOOL
_INT32, _INT64, _UINT32 = _F.TYPE_INT32, _F.TYPE_INT64, _F.TYPE_UINT32
_ENUM, _MESSAGE = _F.TYPE_ENUM, _F.TYPE_MESSAGE
_ONE, _MANY = "one", "many"
_OPT = "optional"  # proto3 `optional`: explicit presence (HasField works)

# (name, number, type, cardinality, type_name for enum/message fields)
_FieldSpec = tuple[str, int, int, str, str | None]


def _f(name: str, number: int, ftype: int, card: str = _ONE, type_name: str | None = None) -> _FieldSpec:
    return (name, number, ftype, card, type_name)


_INGEST = f".{PACKAGE}.CommandStatementIngest"
_TDO = f"{_INGEST}.TableDefinitionOptions"

# Message name → fields, in FlightSql.proto order.
_MESSAGES: dict[str, list[_FieldSpec]] = {
    "CommandGetSqlInfo": [_f("info", 1, _UINT32, _MANY)],
    "CommandGetXdbcTypeInfo": [_f("data_type", 1, _INT32, _OPT)],
    "CommandGetCatalogs": [],
    "CommandGetDbSchemas": [
        _f("catalog", 1, _STRING, _OPT),
        _f("db_schema_filter_pattern", 2, _STRING, _OPT),
    ],
    "CommandGetTables": [
        _f("catalog", 1, _STRING, _OPT),
        _f("db_schema_filter_pattern", 2, _STRING, _OPT),
        _f("table_name_filter_pattern", 3, _STRING, _OPT),
        _f("table_types", 4, _STRING, _MANY),
        _f("include_schema", 5, _BOOL),
    ],
    "CommandGetTableTypes": [],
    "CommandGetPrimaryKeys": [
        _f("catalog", 1, _STRING, _OPT),
        _f("db_schema", 2, _STRING, _OPT),
        _f("table", 3, _STRING),
    ],
    "CommandGetExportedKeys": [
        _f("catalog", 1, _STRING, _OPT),
        _f("db_schema", 2, _STRING, _OPT),
        _f("table", 3, _STRING),
    ],
    "CommandGetImportedKeys": [
        _f("catalog", 1, _STRING, _OPT),
        _f("db_schema", 2, _STRING, _OPT),
        _f("table", 3, _STRING),
    ],
    "CommandGetCrossReference": [
        _f("pk_catalog", 1, _STRING, _OPT),
        _f("pk_db_schema", 2, _STRING, _OPT),
        _f("pk_table", 3, _STRING),
        _f("fk_catalog", 4, _STRING, _OPT),
        _f("fk_db_schema", 5, _STRING, _OPT),
        _f("fk_table", 6, _STRING),
    ],
    "ActionCreatePreparedStatementRequest": [
        _f("query", 1, _STRING),
        _f("transaction_id", 2, _BYTES, _OPT),
    ],
    "SubstraitPlan": [_f("plan", 1, _BYTES), _f("version", 2, _STRING)],
    "ActionCreatePreparedSubstraitPlanRequest": [
        _f("plan", 1, _MESSAGE, _ONE, f".{PACKAGE}.SubstraitPlan"),
        _f("transaction_id", 2, _BYTES, _OPT),
    ],
    "ActionCreatePreparedStatementResult": [
        _f("prepared_statement_handle", 1, _BYTES),
        _f("dataset_schema", 2, _BYTES),
        _f("parameter_schema", 3, _BYTES),
    ],
    "ActionClosePreparedStatementRequest": [_f("prepared_statement_handle", 1, _BYTES)],
    "ActionBeginTransactionRequest": [],
    "ActionBeginSavepointRequest": [_f("transaction_id", 1, _BYTES), _f("name", 2, _STRING)],
    "ActionBeginTransactionResult": [_f("transaction_id", 1, _BYTES)],
    "ActionBeginSavepointResult": [_f("savepoint_id", 1, _BYTES)],
    "ActionEndTransactionRequest": [
        _f("transaction_id", 1, _BYTES),
        _f("action", 2, _ENUM, _ONE, f".{PACKAGE}.ActionEndTransactionRequest.EndTransaction"),
    ],
    "ActionEndSavepointRequest": [
        _f("savepoint_id", 1, _BYTES),
        _f("action", 2, _ENUM, _ONE, f".{PACKAGE}.ActionEndSavepointRequest.EndSavepoint"),
    ],
    "CommandStatementQuery": [_f("query", 1, _STRING), _f("transaction_id", 2, _BYTES, _OPT)],
    "CommandStatementSubstraitPlan": [
        _f("plan", 1, _MESSAGE, _ONE, f".{PACKAGE}.SubstraitPlan"),
        _f("transaction_id", 2, _BYTES, _OPT),
    ],
    "TicketStatementQuery": [_f("statement_handle", 1, _BYTES)],
    "CommandPreparedStatementQuery": [_f("prepared_statement_handle", 1, _BYTES)],
    "CommandStatementUpdate": [_f("query", 1, _STRING), _f("transaction_id", 2, _BYTES, _OPT)],
    "CommandPreparedStatementUpdate": [_f("prepared_statement_handle", 1, _BYTES)],
    "CommandStatementIngest": [
        _f("table_definition_options", 1, _MESSAGE, _ONE, _TDO),
        _f("table", 2, _STRING),
        _f("schema", 3, _STRING, _OPT),
        _f("catalog", 4, _STRING, _OPT),
        _f("temporary", 5, _BOOL),
        _f("transaction_id", 6, _BYTES, _OPT),
        _f("options", 1000, _MESSAGE, _MANY, f"{_INGEST}.OptionsEntry"),
    ],
    "DoPutUpdateResult": [_f("record_count", 1, _INT64)],
    "DoPutPreparedStatementResult": [_f("prepared_statement_handle", 1, _BYTES, _OPT)],
    "ActionCancelQueryRequest": [_f("info", 1, _BYTES)],
    "ActionCancelQueryResult": [
        _f("result", 1, _ENUM, _ONE, f".{PACKAGE}.ActionCancelQueryResult.CancelResult"),
    ],
}

# Enums nested in messages: message → [(enum name, [(value name, number)])].
_NESTED_ENUMS: dict[str, list[tuple[str, list[tuple[str, int]]]]] = {
    "ActionEndTransactionRequest": [
        (
            "EndTransaction",
            [("END_TRANSACTION_UNSPECIFIED", 0), ("END_TRANSACTION_COMMIT", 1), ("END_TRANSACTION_ROLLBACK", 2)],
        )
    ],
    "ActionEndSavepointRequest": [
        (
            "EndSavepoint",
            [("END_SAVEPOINT_UNSPECIFIED", 0), ("END_SAVEPOINT_RELEASE", 1), ("END_SAVEPOINT_ROLLBACK", 2)],
        )
    ],
    "ActionCancelQueryResult": [
        (
            "CancelResult",
            [
                ("CANCEL_RESULT_UNSPECIFIED", 0),
                ("CANCEL_RESULT_CANCELLED", 1),
                ("CANCEL_RESULT_CANCELLING", 2),
                ("CANCEL_RESULT_NOT_CANCELLABLE", 3),
            ],
        )
    ],
}


def _add_fields(msg: descriptor_pb2.DescriptorProto, fields: list[_FieldSpec]) -> None:
    for name, number, ftype, card, type_name in fields:
        fd = msg.field.add(name=name, number=number, type=ftype)  # type: ignore[arg-type]
        fd.json_name = "".join(p.capitalize() if i else p for i, p in enumerate(name.split("_")))
        fd.label = _F.LABEL_REPEATED if card == _MANY else _F.LABEL_OPTIONAL
        if type_name:
            fd.type_name = type_name
        if card == _OPT:
            # proto3 optional = a synthetic one-field oneof named "_<field>".
            fd.proto3_optional = True
            fd.oneof_index = len(msg.oneof_decl)
            msg.oneof_decl.add(name=f"_{name}")


def _add_enum(parent: Any, name: str, values: list[tuple[str, int]]) -> None:
    enum_proto = parent.enum_type.add(name=name)
    for value_name, number in values:
        enum_proto.value.add(name=value_name, number=number)


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name="flasktrack/FlightSql.proto", package=PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for enum_name, values in _NESTED_ENUMS.get(name, []):
            _add_enum(msg, enum_name, values)
        if name == "CommandStatementIngest":
            tdo = msg.nested_type.add(name="TableDefinitionOptions")
            _add_enum(
                tdo,
                "TableNotExistOption",
                [
                    ("TABLE_NOT_EXIST_OPTION_UNSPECIFIED", 0),
                    ("TABLE_NOT_EXIST_OPTION_CREATE", 1),
                    ("TABLE_NOT_EXIST_OPTION_FAIL", 2),
                ],
            )
            _add_enum(
                tdo,
                "TableExistsOption",
                [
                    ("TABLE_EXISTS_OPTION_UNSPECIFIED", 0),
                    ("TABLE_EXISTS_OPTION_FAIL", 1),
                    ("TABLE_EXISTS_OPTION_APPEND", 2),
                    ("TABLE_EXISTS_OPTION_REPLACE", 3),
                ],
            )
            _add_fields(
                tdo,
                [
                    _f("if_not_exist", 1, _ENUM, _ONE, f"{_TDO}.TableNotExistOption"),
                    _f("if_exists", 2, _ENUM, _ONE, f"{_TDO}.TableExistsOption"),
                ],
            )
            entry = msg.nested_type.add(name="OptionsEntry")
            entry.options.map_entry = True
            _add_fields(entry, [_f("key", 1, _STRING), _f("value", 2, _STRING)])
        _add_fields(msg, fields)
    return fdp


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_build_file())


def _message_class(name: str) -> type[Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


CommandGetSqlInfo = _message_class("CommandGetSqlInfo")
CommandGetXdbcTypeInfo = _message_class("CommandGetXdbcTypeInfo")
CommandGetCatalogs = _message_class("CommandGetCatalogs")
CommandGetDbSchemas = _message_class("CommandGetDbSchemas")
CommandGetTables = _message_class("CommandGetTables")
CommandGetTableTypes = _message_class("CommandGetTableTypes")
CommandGetPrimaryKeys = _message_class("CommandGetPrimaryKeys")
CommandGetExportedKeys = _message_class("CommandGetExportedKeys")
CommandGetImportedKeys = _message_class("CommandGetImportedKeys")
CommandGetCrossReference = _message_class("CommandGetCrossReference")
ActionCreatePreparedStatementRequest = _message_class("ActionCreatePreparedStatementRequest")
ActionCreatePreparedStatementResult = _message_class("ActionCreatePreparedStatementResult")
ActionClosePreparedStatementRequest = _message_class("ActionClosePreparedStatementRequest")
ActionCancelQueryRequest = _message_class("ActionCancelQueryRequest")
ActionCancelQueryResult = _message_class("ActionCancelQueryResult")
CommandStatementQuery = _message_class("CommandStatementQuery")
CommandStatementSubstraitPlan = _message_class("CommandStatementSubstraitPlan")
TicketStatementQuery = _message_class("TicketStatementQuery")
CommandPreparedStatementQuery = _message_class("CommandPreparedStatementQuery")
CommandStatementUpdate = _message_class("CommandStatementUpdate")
CommandPreparedStatementUpdate = _message_class("CommandPreparedStatementUpdate")
CommandStatementIngest = _message_class("CommandStatementIngest")
DoPutUpdateResult = _message_class("DoPutUpdateResult")
DoPutPreparedStatementResult = _message_class("DoPutPreparedStatementResult")

# Every message this module knows, by short name (the part after the package).
MESSAGES: dict[str, type[Message]] = {name: _message_class(name) for name in _MESSAGES}


class ProtocolError(ValueError):
    """A command that is not a well-formed Flight SQL message."""


def pack(message: Message) -> bytes:
    """Serialize `message` wrapped in google.protobuf.Any, as Flight SQL expects."""
    wrapper = any_pb2.Any()
    wrapper.Pack(message, type_url_prefix=TYPE_URL_PREFIX)
    return wrapper.SerializeToString()


def unpack(payload: bytes) -> tuple[str, Any]:
    """Decode an Any-wrapped Flight SQL command: (short message name, message or None if unknown).

    The message is typed Any: its class is generated at import time, so its fields are
    invisible to a type checker."""
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(payload)
    except DecodeError as exc:
        raise ProtocolError("not a Flight SQL command (google.protobuf.Any expected)") from exc
    full_name = wrapper.type_url.rsplit("/", 1)[-1]
    if not full_name.startswith(PACKAGE + "."):
        raise ProtocolError(f"not a Flight SQL command: {wrapper.type_url or '(empty type URL)'}")
    name = full_name[len(PACKAGE) + 1 :]
    cls = MESSAGES.get(name)
    if cls is None:
        return name, None
    message = cls()
    try:
        message.ParseFromString(wrapper.value)
    except DecodeError as exc:
        raise ProtocolError(f"malformed {name}") from exc
    return name, message


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

# Column metadata keys a Flight SQL server may attach to result/table schemas.
META_CATALOG_NAME = "ARROW:FLIGHT:SQL:CATALOG_NAME"
META_DB_SCHEMA_NAME = "ARROW:FLIGHT:SQL:DB_SCHEMA_NAME"  # the spec's spelling
META_SCHEMA_NAME = "ARROW:FLIGHT:SQL:SCHEMA_NAME"  # what the Go, C++ and Java libraries read
META_TABLE_NAME = "ARROW:FLIGHT:SQL:TABLE_NAME"
META_TYPE_NAME = "ARROW:FLIGHT:SQL:TYPE_NAME"
META_PRECISION = "ARROW:FLIGHT:SQL:PRECISION"
META_SCALE = "ARROW:FLIGHT:SQL:SCALE"
META_IS_AUTO_INCREMENT = "ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT"
META_IS_CASE_SENSITIVE = "ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE"
META_IS_READ_ONLY = "ARROW:FLIGHT:SQL:IS_READ_ONLY"
META_IS_SEARCHABLE = "ARROW:FLIGHT:SQL:IS_SEARCHABLE"
META_REMARKS = "ARROW:FLIGHT:SQL:REMARKS"

SqlInfoValue = str | bool | int | list[str] | dict[int, list[int]] | tuple[str, int]
"""A GetSqlInfo value: str, bool, int (→ bigint_value), ("int32", n) for int32 values and
bitmasks, list[str] (→ string_list) or dict[int, list[int]] (→ int32_to_int32_list_map)."""


def int32(value: int) -> tuple[str, int]:
    """Mark a GetSqlInfo value as int32 (`int32_bitmask` member) rather than int64."""
    return ("int32", value)


def sql_info_table(values: dict[int, SqlInfoValue], requested: list[int] | None = None) -> pa.Table:
    """Build the CommandGetSqlInfo result: one row per requested (known) code, in request order."""
    codes = [c for c in (requested or sorted(values)) if c in values]
    children: list[list[Any]] = [[], [], [], [], [], []]
    type_ids: list[int] = []
    offsets: list[int] = []
    for code in codes:
        value = values[code]
        item: Any
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


# --- What this server answers to GetSqlInfo and GetXdbcTypeInfo -------------------------

_NUMERIC_FUNCTIONS = (
    "abs acos asin atan atan2 cbrt ceil cos cot degrees exp floor ln log log10 log2 mod pi pow "
    "power radians random round sign sin sqrt tan trunc"
).split()
_STRING_FUNCTIONS = (
    "ascii chr concat concat_ws contains ends_with left length lower lpad ltrim md5 position "
    "regexp_extract regexp_matches regexp_replace repeat replace reverse right rpad rtrim "
    "split_part starts_with strpos substring trim upper"
).split()
_DATETIME_FUNCTIONS = (
    "age current_date current_time current_timestamp date_diff date_part date_trunc datediff "
    "datepart datetrunc day dayname epoch extract hour make_date make_timestamp minute month "
    "monthname now quarter second strftime strptime time_bucket to_timestamp week year"
).split()
_SYSTEM_FUNCTIONS = "coalesce current_database current_schema greatest ifnull least nullif typeof version".split()


def server_sql_info(name: str, version: str, statement_ttl_ms: int, keywords: list[str]) -> dict[int, SqlInfoValue]:
    """GetSqlInfo answers of a read-only DuckDB-dialect server without transactions."""
    S, i32 = SqlInfo, int32
    values: dict[int, SqlInfoValue] = {
        S.FLIGHT_SQL_SERVER_NAME: name,
        S.FLIGHT_SQL_SERVER_VERSION: version,
        S.FLIGHT_SQL_SERVER_ARROW_VERSION: pa.__version__,
        S.FLIGHT_SQL_SERVER_READ_ONLY: True,
        S.FLIGHT_SQL_SERVER_SQL: True,
        S.FLIGHT_SQL_SERVER_SUBSTRAIT: False,
        S.FLIGHT_SQL_SERVER_TRANSACTION: i32(0),  # SQL_SUPPORTED_TRANSACTION_NONE
        S.FLIGHT_SQL_SERVER_CANCEL: False,
        S.FLIGHT_SQL_SERVER_BULK_INGESTION: False,
        S.FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED: False,
        S.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT: i32(statement_ttl_ms),  # prepared-statement lifetime
        S.FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT: i32(0),
        S.SQL_DDL_CATALOG: False,
        S.SQL_DDL_SCHEMA: False,
        S.SQL_DDL_TABLE: False,
        S.SQL_IDENTIFIER_CASE: i32(1),  # SQL_CASE_SENSITIVITY_CASE_INSENSITIVE
        S.SQL_IDENTIFIER_QUOTE_CHAR: '"',
        S.SQL_QUOTED_IDENTIFIER_CASE: i32(1),
        S.SQL_ALL_TABLES_ARE_SELECTABLE: True,
        S.SQL_NULL_ORDERING: i32(3),  # SQL_NULLS_SORTED_AT_END (DuckDB: NULLS LAST)
        S.SQL_KEYWORDS: keywords,
        S.SQL_NUMERIC_FUNCTIONS: _NUMERIC_FUNCTIONS,
        S.SQL_STRING_FUNCTIONS: _STRING_FUNCTIONS,
        S.SQL_SYSTEM_FUNCTIONS: _SYSTEM_FUNCTIONS,
        S.SQL_DATETIME_FUNCTIONS: _DATETIME_FUNCTIONS,
        S.SQL_SEARCH_STRING_ESCAPE: "\\",
        S.SQL_EXTRA_NAME_CHARACTERS: "",
        S.SQL_SUPPORTS_COLUMN_ALIASING: True,
        S.SQL_NULL_PLUS_NULL_IS_NULL: True,
        S.SQL_SUPPORTS_CONVERT: {},
        S.SQL_SUPPORTS_TABLE_CORRELATION_NAMES: True,
        S.SQL_SUPPORTS_DIFFERENT_TABLE_CORRELATION_NAMES: False,
        S.SQL_SUPPORTS_EXPRESSIONS_IN_ORDER_BY: True,
        S.SQL_SUPPORTS_ORDER_BY_UNRELATED: True,
        S.SQL_SUPPORTED_GROUP_BY: i32(0b11),  # UNRELATED | BEYOND_SELECT
        S.SQL_SUPPORTS_LIKE_ESCAPE_CLAUSE: True,
        S.SQL_SUPPORTS_NON_NULLABLE_COLUMNS: True,
        S.SQL_SUPPORTED_GRAMMAR: i32(0b111),  # minimum | core | extended
        S.SQL_ANSI92_SUPPORTED_LEVEL: i32(0b011),  # entry | intermediate
        S.SQL_SUPPORTS_INTEGRITY_ENHANCEMENT_FACILITY: False,
        S.SQL_OUTER_JOINS_SUPPORT_LEVEL: i32(2),  # SQL_FULL_OUTER_JOINS
        S.SQL_SCHEMA_TERM: "schema",
        S.SQL_PROCEDURE_TERM: "procedure",
        S.SQL_CATALOG_TERM: "catalog",
        S.SQL_CATALOG_AT_START: True,
        S.SQL_SCHEMAS_SUPPORTED_ACTIONS: i32(0),
        S.SQL_CATALOGS_SUPPORTED_ACTIONS: i32(0),
        S.SQL_SUPPORTED_POSITIONED_COMMANDS: i32(0),
        S.SQL_SELECT_FOR_UPDATE_SUPPORTED: False,
        S.SQL_STORED_PROCEDURES_SUPPORTED: False,
        S.SQL_SUPPORTED_SUBQUERIES: i32(0b1111),  # comparisons | exists | in | quantified
        S.SQL_CORRELATED_SUBQUERIES_SUPPORTED: True,
        S.SQL_SUPPORTED_UNIONS: i32(0b11),  # UNION | UNION ALL
        S.SQL_DEFAULT_TRANSACTION_ISOLATION: i32(0),  # SQL_TRANSACTION_NONE
        S.SQL_TRANSACTIONS_SUPPORTED: False,
        S.SQL_SUPPORTED_TRANSACTIONS_ISOLATION_LEVELS: i32(0),
        S.SQL_DATA_DEFINITION_CAUSES_TRANSACTION_COMMIT: False,
        S.SQL_DATA_DEFINITIONS_IN_TRANSACTIONS_IGNORED: False,
        S.SQL_SUPPORTED_RESULT_SET_TYPES: i32(0b10),  # FORWARD_ONLY
        S.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_UNSPECIFIED: i32(0),
        S.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_FORWARD_ONLY: i32(0b10),  # READ_ONLY
        S.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_SCROLL_SENSITIVE: i32(0),
        S.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_SCROLL_INSENSITIVE: i32(0),
        S.SQL_BATCH_UPDATES_SUPPORTED: False,
        S.SQL_SAVEPOINTS_SUPPORTED: False,
        S.SQL_NAMED_PARAMETERS_SUPPORTED: False,
        S.SQL_LOCATORS_UPDATE_COPY: False,
        S.SQL_STORED_FUNCTIONS_USING_CALL_SYNTAX_SUPPORTED: False,
    }
    # Length/count limits: 0 = no limit or unknown.
    for code in range(S.SQL_MAX_BINARY_LITERAL_LENGTH, S.SQL_MAX_ROW_SIZE_INCLUDES_BLOBS):
        values[code] = 0
    values[S.SQL_MAX_ROW_SIZE_INCLUDES_BLOBS] = False
    for code in range(S.SQL_MAX_STATEMENT_LENGTH, S.SQL_MAX_USERNAME_LENGTH + 1):
        values[code] = 0
    return {int(k): v for k, v in values.items()}


# (type_name, data_type, column_size, prefix, suffix, case_sensitive, searchable, unsigned,
#  fixed_prec_scale, sql_data_type, datetime_subcode, num_prec_radix)
_XDBC_TYPES: list[tuple[Any, ...]] = [
    ("BIGINT", -5, 19, None, None, False, 2, False, False, -5, None, 10),
    ("BOOLEAN", -7, 1, None, None, False, 2, None, False, -7, None, None),
    ("BLOB", -3, None, "'", "'::BLOB", False, 2, None, False, -3, None, None),
    ("TINYINT", -6, 3, None, None, False, 2, False, False, -6, None, 10),
    ("DECIMAL", 3, 38, None, None, False, 2, False, True, 3, None, 10),
    ("INTEGER", 4, 10, None, None, False, 2, False, False, 4, None, 10),
    ("SMALLINT", 5, 5, None, None, False, 2, False, False, 5, None, 10),
    ("FLOAT", 6, 24, None, None, False, 2, False, False, 6, None, 2),
    ("DOUBLE", 8, 53, None, None, False, 2, False, False, 8, None, 2),
    ("VARCHAR", 12, None, "'", "'", True, 3, None, False, 12, None, None),
    ("DATE", 91, 10, "DATE '", "'", False, 2, None, False, 9, 1, None),
    ("TIME", 92, 15, "TIME '", "'", False, 2, None, False, 9, 2, None),
    ("TIMESTAMP", 93, 26, "TIMESTAMP '", "'", False, 2, None, False, 9, 3, None),
    ("TIMESTAMP WITH TIME ZONE", 93, 32, "TIMESTAMPTZ '", "'", False, 2, None, False, 9, 5, None),
]


def xdbc_type_info(wanted: int | None = None) -> pa.Table:
    """The CommandGetXdbcTypeInfo result (one data type, or all), ordered by data_type, type_name."""
    rows = []
    for name, dtype, size, prefix, suffix, case, search, unsigned, fixed, sql_type, sub, radix in sorted(
        _XDBC_TYPES, key=lambda t: (t[1], t[0])
    ):
        if wanted is not None and dtype != wanted:
            continue
        rows.append(
            {
                "type_name": name,
                "data_type": dtype,
                "column_size": size,
                "literal_prefix": prefix,
                "literal_suffix": suffix,
                "create_params": ["precision", "scale"] if name == "DECIMAL" else None,
                "nullable": 1,  # NULLABILITY_NULLABLE
                "case_sensitive": case,
                "searchable": search,
                "unsigned_attribute": unsigned,
                "fixed_prec_scale": fixed,
                "auto_increment": False if radix else None,
                "local_type_name": name,
                "minimum_scale": 0 if name == "DECIMAL" else None,
                "maximum_scale": 38 if name == "DECIMAL" else None,
                "sql_data_type": sql_type,
                "datetime_subcode": sub,
                "num_prec_radix": radix,
                "interval_precision": None,
            }
        )
    return pa.Table.from_pylist(rows, schema=XDBC_TYPE_INFO_SCHEMA)
