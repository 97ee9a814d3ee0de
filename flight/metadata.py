"""What this server answers to the Flight SQL metadata commands: GetSqlInfo, catalogs, schemas,
tables, table types, keys and XDBC type info, always for the caller's own org.

Who may ask is decided by the RPC handlers (flight/server.py); the shapes of the answers are
Flight SQL's (flight/schemas.py).
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa

from flight.protocol import (
    CommandGetCatalogs,
    CommandGetCrossReference,
    CommandGetDbSchemas,
    CommandGetExportedKeys,
    CommandGetImportedKeys,
    CommandGetPrimaryKeys,
    CommandGetSqlInfo,
    CommandGetTables,
    CommandGetTableTypes,
    CommandGetXdbcTypeInfo,
    MetadataCommand,
)
from flight.schemas import (
    CATALOGS_SCHEMA,
    DB_SCHEMAS_SCHEMA,
    KEYS_SCHEMA,
    PRIMARY_KEYS_SCHEMA,
    SQL_INFO_SCHEMA,
    TABLE_TYPES_SCHEMA,
    TABLES_SCHEMA,
    TABLES_WITH_SCHEMA_SCHEMA,
    XDBC_TYPE_INFO_SCHEMA,
    SqlInfo,
    SqlInfoValue,
    int32,
    serialize_schema,
    sql_info_table,
)
from lake.catalog import TABLE_TYPE, LakeCatalog, like_to_regex


class MetadataAnswers:
    """The answers to the metadata commands over one lake catalog, for one caller's org and role."""

    def __init__(self, catalog: LakeCatalog, sql_info: dict[int, SqlInfoValue]) -> None:
        self.catalog = catalog
        self.sql_info = sql_info

    def schema(self, command: MetadataCommand) -> pa.Schema:
        if isinstance(command, CommandGetTables):
            return TABLES_WITH_SCHEMA_SCHEMA if command.include_schema else TABLES_SCHEMA
        return _RESULT_SCHEMAS[type(command)]

    def table(self, command: MetadataCommand, org_id: str, role: str) -> pa.Table:
        cat = self.catalog
        if isinstance(command, CommandGetSqlInfo):
            return sql_info_table(self.sql_info, list(command.info))
        if isinstance(command, CommandGetCatalogs):
            return pa.Table.from_pylist([{"catalog_name": cat.catalog_name}], schema=CATALOGS_SCHEMA)
        if isinstance(command, CommandGetDbSchemas):
            catalog = command.catalog if command.HasField("catalog") else None
            pattern = command.db_schema_filter_pattern if command.HasField("db_schema_filter_pattern") else None
            rows = []
            if _catalog_matches(catalog, cat.catalog_name) and _pattern_matches(pattern, cat.schema_name):
                rows.append({"catalog_name": cat.catalog_name, "db_schema_name": cat.schema_name})
            return pa.Table.from_pylist(rows, schema=DB_SCHEMAS_SCHEMA)
        if isinstance(command, CommandGetTables):
            return self._tables(command, org_id, role)
        if isinstance(command, CommandGetTableTypes):
            return pa.Table.from_pylist([{"table_type": TABLE_TYPE}], schema=TABLE_TYPES_SCHEMA)
        if isinstance(command, CommandGetXdbcTypeInfo):
            return xdbc_type_info(command.data_type if command.HasField("data_type") else None)
        # Primary/foreign keys: Delta tables declare none.
        return _RESULT_SCHEMAS[type(command)].empty_table()

    def _tables(self, command: CommandGetTables, org_id: str, role: str) -> pa.Table:
        cat = self.catalog
        include_schema = bool(command.include_schema)
        schema = TABLES_WITH_SCHEMA_SCHEMA if include_schema else TABLES_SCHEMA
        types = list(command.table_types)
        catalog = command.catalog if command.HasField("catalog") else None
        schema_pattern = command.db_schema_filter_pattern if command.HasField("db_schema_filter_pattern") else None
        table_pattern = command.table_name_filter_pattern if command.HasField("table_name_filter_pattern") else None
        if (
            not _catalog_matches(catalog, cat.catalog_name)
            or not _pattern_matches(schema_pattern, cat.schema_name)
            or (types and TABLE_TYPE not in types)
        ):
            return schema.empty_table()
        rows: list[dict[str, str | bytes]] = []
        for table in cat.visible_tables(org_id, role):
            if not _pattern_matches(table_pattern, table):
                continue
            row: dict[str, str | bytes] = {
                "catalog_name": cat.catalog_name,
                "db_schema_name": cat.schema_name,
                "table_name": table,
                "table_type": TABLE_TYPE,
            }
            if include_schema:
                row["table_schema"] = serialize_schema(cat.info(table).schema)
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=schema)


# Result schema per metadata command (GetTables: depends on include_schema, see MetadataAnswers.schema).
_RESULT_SCHEMAS: dict[type[MetadataCommand], pa.Schema] = {
    CommandGetSqlInfo: SQL_INFO_SCHEMA,
    CommandGetXdbcTypeInfo: XDBC_TYPE_INFO_SCHEMA,
    CommandGetCatalogs: CATALOGS_SCHEMA,
    CommandGetDbSchemas: DB_SCHEMAS_SCHEMA,
    CommandGetTables: TABLES_SCHEMA,
    CommandGetTableTypes: TABLE_TYPES_SCHEMA,
    CommandGetPrimaryKeys: PRIMARY_KEYS_SCHEMA,
    CommandGetExportedKeys: KEYS_SCHEMA,
    CommandGetImportedKeys: KEYS_SCHEMA,
    CommandGetCrossReference: KEYS_SCHEMA,
}


def _catalog_matches(catalog: str | None, name: str) -> bool:
    """An unset catalog filter matches; "" (tables without a catalog) matches none of ours."""
    return catalog is None or catalog == name


def _pattern_matches(pattern: str | None, value: str) -> bool:
    """An unset or empty LIKE pattern matches everything."""
    return not pattern or bool(like_to_regex(pattern).match(value))


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


class _XdbcType(NamedTuple):
    type_name: str
    data_type: int
    column_size: int | None
    literal_prefix: str | None
    literal_suffix: str | None
    case_sensitive: bool
    searchable: int
    unsigned_attribute: bool | None
    fixed_prec_scale: bool
    sql_data_type: int
    datetime_subcode: int | None
    num_prec_radix: int | None


_XDBC_TYPES = [
    _XdbcType("BIGINT", -5, 19, None, None, False, 2, False, False, -5, None, 10),
    _XdbcType("BOOLEAN", -7, 1, None, None, False, 2, None, False, -7, None, None),
    _XdbcType("BLOB", -3, None, "'", "'::BLOB", False, 2, None, False, -3, None, None),
    _XdbcType("TINYINT", -6, 3, None, None, False, 2, False, False, -6, None, 10),
    _XdbcType("DECIMAL", 3, 38, None, None, False, 2, False, True, 3, None, 10),
    _XdbcType("INTEGER", 4, 10, None, None, False, 2, False, False, 4, None, 10),
    _XdbcType("SMALLINT", 5, 5, None, None, False, 2, False, False, 5, None, 10),
    _XdbcType("FLOAT", 6, 24, None, None, False, 2, False, False, 6, None, 2),
    _XdbcType("DOUBLE", 8, 53, None, None, False, 2, False, False, 8, None, 2),
    _XdbcType("VARCHAR", 12, None, "'", "'", True, 3, None, False, 12, None, None),
    _XdbcType("DATE", 91, 10, "DATE '", "'", False, 2, None, False, 9, 1, None),
    _XdbcType("TIME", 92, 15, "TIME '", "'", False, 2, None, False, 9, 2, None),
    _XdbcType("TIMESTAMP", 93, 26, "TIMESTAMP '", "'", False, 2, None, False, 9, 3, None),
    _XdbcType("TIMESTAMP WITH TIME ZONE", 93, 32, "TIMESTAMPTZ '", "'", False, 2, None, False, 9, 5, None),
]


def xdbc_type_info(wanted: int | None = None) -> pa.Table:
    """The CommandGetXdbcTypeInfo result (one data type, or all), ordered by data_type, type_name."""
    rows = []
    for t in sorted(_XDBC_TYPES, key=lambda t: (t.data_type, t.type_name)):
        if wanted is not None and t.data_type != wanted:
            continue
        decimal = t.type_name == "DECIMAL"
        rows.append(
            {
                "type_name": t.type_name,
                "data_type": t.data_type,
                "column_size": t.column_size,
                "literal_prefix": t.literal_prefix,
                "literal_suffix": t.literal_suffix,
                "create_params": ["precision", "scale"] if decimal else None,
                "nullable": 1,  # NULLABILITY_NULLABLE
                "case_sensitive": t.case_sensitive,
                "searchable": t.searchable,
                "unsigned_attribute": t.unsigned_attribute,
                "fixed_prec_scale": t.fixed_prec_scale,
                "auto_increment": False if t.num_prec_radix else None,
                "local_type_name": t.type_name,
                "minimum_scale": 0 if decimal else None,
                "maximum_scale": 38 if decimal else None,
                "sql_data_type": t.sql_data_type,
                "datetime_subcode": t.datetime_subcode,
                "num_prec_radix": t.num_prec_radix,
                "interval_precision": None,
            }
        )
    return pa.Table.from_pylist(rows, schema=XDBC_TYPE_INFO_SCHEMA)
