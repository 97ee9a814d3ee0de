"""Flight SQL wire messages and their google.protobuf.Any wrapping.

The messages are described in flight/proto/flight_sql.proto and generated from it (`make proto`),
typed stubs included, so every command is a concrete class a handler can dispatch on. Result
schemas and GetSqlInfo codes are Arrow, not protobuf: flight/schemas.py.
"""

from __future__ import annotations

from typing import TypeGuard, get_args

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from flight.proto.flight_sql_pb2 import (
    ActionBeginSavepointRequest,
    ActionBeginSavepointResult,
    ActionBeginTransactionRequest,
    ActionBeginTransactionResult,
    ActionCancelQueryRequest,
    ActionCancelQueryResult,
    ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult,
    ActionCreatePreparedSubstraitPlanRequest,
    ActionEndSavepointRequest,
    ActionEndTransactionRequest,
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
    CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate,
    CommandStatementIngest,
    CommandStatementQuery,
    CommandStatementSubstraitPlan,
    CommandStatementUpdate,
    DoPutPreparedStatementResult,
    DoPutUpdateResult,
    SubstraitPlan,
    TicketStatementQuery,
)

__all__ = [
    "ActionBeginSavepointRequest",
    "ActionBeginSavepointResult",
    "ActionBeginTransactionRequest",
    "ActionBeginTransactionResult",
    "ActionCancelQueryRequest",
    "ActionCancelQueryResult",
    "ActionClosePreparedStatementRequest",
    "ActionCreatePreparedStatementRequest",
    "ActionCreatePreparedStatementResult",
    "ActionCreatePreparedSubstraitPlanRequest",
    "ActionEndSavepointRequest",
    "ActionEndTransactionRequest",
    "CommandGetCatalogs",
    "CommandGetCrossReference",
    "CommandGetDbSchemas",
    "CommandGetExportedKeys",
    "CommandGetImportedKeys",
    "CommandGetPrimaryKeys",
    "CommandGetSqlInfo",
    "CommandGetTableTypes",
    "CommandGetTables",
    "CommandGetXdbcTypeInfo",
    "CommandPreparedStatementQuery",
    "CommandPreparedStatementUpdate",
    "CommandStatementIngest",
    "CommandStatementQuery",
    "CommandStatementSubstraitPlan",
    "CommandStatementUpdate",
    "DoPutPreparedStatementResult",
    "DoPutUpdateResult",
    "FlightSqlMessage",
    "MESSAGES",
    "MetadataCommand",
    "PACKAGE",
    "ProtocolError",
    "SubstraitPlan",
    "TicketStatementQuery",
    "is_metadata_command",
    "pack",
    "unpack",
]

PACKAGE = "arrow.flight.protocol.sql"
TYPE_URL_PREFIX = "type.googleapis.com/"

# The catalog questions a client may ask (GetFlightInfo / GetSchema commands, DoGet tickets).
MetadataCommand = (
    CommandGetSqlInfo
    | CommandGetXdbcTypeInfo
    | CommandGetCatalogs
    | CommandGetDbSchemas
    | CommandGetTables
    | CommandGetTableTypes
    | CommandGetPrimaryKeys
    | CommandGetExportedKeys
    | CommandGetImportedKeys
    | CommandGetCrossReference
)

# Every message of flight_sql.proto (a test checks none is missing).
FlightSqlMessage = (
    MetadataCommand
    | ActionCreatePreparedStatementRequest
    | SubstraitPlan
    | ActionCreatePreparedSubstraitPlanRequest
    | ActionCreatePreparedStatementResult
    | ActionClosePreparedStatementRequest
    | ActionBeginTransactionRequest
    | ActionBeginSavepointRequest
    | ActionBeginTransactionResult
    | ActionBeginSavepointResult
    | ActionEndTransactionRequest
    | ActionEndSavepointRequest
    | CommandStatementQuery
    | CommandStatementSubstraitPlan
    | TicketStatementQuery
    | CommandPreparedStatementQuery
    | CommandStatementUpdate
    | CommandPreparedStatementUpdate
    | CommandStatementIngest
    | DoPutUpdateResult
    | DoPutPreparedStatementResult
    | ActionCancelQueryRequest
    | ActionCancelQueryResult
)

_METADATA_COMMANDS: tuple[type[MetadataCommand], ...] = get_args(MetadataCommand)

# Every message this module knows, by short name (the part of the type URL after the package).
MESSAGES: dict[str, type[FlightSqlMessage]] = {cls.DESCRIPTOR.name: cls for cls in get_args(FlightSqlMessage)}


class ProtocolError(ValueError):
    """A command that is not a well-formed Flight SQL message."""


def is_metadata_command(message: FlightSqlMessage | None) -> TypeGuard[MetadataCommand]:
    return isinstance(message, _METADATA_COMMANDS)


def pack(message: Message) -> bytes:
    """Serialize `message` wrapped in google.protobuf.Any, as Flight SQL expects."""
    wrapper = any_pb2.Any()
    wrapper.Pack(message, type_url_prefix=TYPE_URL_PREFIX)
    return wrapper.SerializeToString()


def unpack(payload: bytes) -> tuple[str, FlightSqlMessage | None]:
    """Decode an Any-wrapped Flight SQL command: (short message name, message or None if unknown)."""
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
