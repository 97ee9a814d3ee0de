"""Flight SQL server over the Delta lake: tenant-isolated, sandboxed, read-only.

Request flow (what ADBC / JDBC / DBeaver do):

    Handshake (Basic)        → bearer token (auth.BearerAuthMiddlewareFactory)
    GetFlightInfo(CommandStatementQuery) or DoAction(CreatePreparedStatement)
        → a fresh sandboxed DuckDB connection (sandbox.py) holding only the caller's org's
          datasets for the tables the SQL names; the result schema is bound, nothing runs
    DoGet(TicketStatementQuery)
        → the query runs on that same connection and streams record batches

A query has one time limit (`query_timeout_s`), counted from the arrival of its statement
(GetFlightInfo, or the execution of a prepared statement): binding, waiting for a query slot,
running and streaming all spend it, and a ticket fetched after it is refused (TIMED_OUT).

Tickets and prepared-statement handles are random, single-server, and bound to the
caller's org, actor and bearer token; a ticket is consumed by its first DoGet (statements.py).
Metadata tickets carry the command itself and are always answered for the caller's
own org, so replaying them leaks nothing (metadata.py).

This module holds the RPC handlers: they decode a command (protocol.py), decide who may
ask, and bind, run and stream statements.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from importlib import metadata as importlib_metadata
from types import FrameType
from typing import Any, NoReturn, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.flight as flight
import structlog
from google.protobuf.message import Message

from core.net import peer_host
from flight import protocol as P
from flight.auth import (
    Authenticator,
    BearerAuthMiddleware,
    BearerAuthMiddlewareFactory,
    NoOpAuthHandler,
    Outcome,
    Principal,
    QueryEvent,
    SessionStore,
    caller,
    record,
)
from flight.metadata import MetadataAnswers, server_sql_info
from flight.schemas import serialize_schema
from flight.statements import Owner, Statement, StatementRegistry, close_sandbox
from lake.catalog import (
    LakeCatalog,
    OrgDataset,
    TableNotFound,
    TimeTravelError,
    parse_table_ref,
)
from lake.query import OrgSandboxes, bind
from lake.sandbox import (
    ConnectionPool,
    Deadline,
    QueryTimeout,
    Sandbox,
    SandboxSettings,
    SqlRefused,
    duckdb_keywords,
    engine_schema,
    plain_scan_table,
    prefetched,
)

log = structlog.get_logger(__name__)

SERVER_NAME = "Flask Track"
DEFAULT_PORT = 8815

_DEFAULT_BATCH_BYTES = 8 * 1024 * 1024  # the ADBC Go client accepts 16 MiB messages by default
_DEFAULT_ROW_BYTES = 15 * 1024 * 1024  # one row must fit in one message, with room for its framing


class RowTooLarge(Exception):
    """A single result row is larger than one message may carry."""


def _server_version() -> str:
    try:
        return importlib_metadata.version("flasktrack")
    except importlib_metadata.PackageNotFoundError:
        return "0.1.0"


# --- errors as Flight statuses ---------------------------------------------------------


def _status(exc: BaseException) -> BaseException:
    """The Flight error a client should see for `exc` (no server tracebacks leak out)."""
    if isinstance(exc, flight.FlightError):
        return exc
    if isinstance(exc, QueryTimeout):
        return flight.FlightTimedOutError(str(exc))
    if isinstance(exc, RowTooLarge):
        return flight.FlightServerError(str(exc))
    if isinstance(exc, SqlRefused):
        return flight.FlightUnauthorizedError(f"refused: {exc}")
    if isinstance(exc, TableNotFound):
        return flight.FlightServerError(f"Catalog Error: Table with name {exc} does not exist")
    if isinstance(exc, duckdb.Error | TimeTravelError | P.ProtocolError):
        return flight.FlightServerError(_first_lines(exc))
    return flight.FlightInternalError("internal error (see server log)")


def _first_lines(exc: BaseException, limit: int = 6) -> str:
    text = str(exc).strip()
    return "\n".join(text.splitlines()[:limit]) if text else type(exc).__name__


def _not_found(what: str) -> flight.FlightServerError:
    return flight.FlightServerError(f"not found: {what}")


def _unsupported(what: str) -> NotImplementedError:
    # UNIMPLEMENTED is what clients test for to fall back (ADBC: GetSqlInfo, GetSessionOptions,
    # CreatePreparedStatement); pyarrow only sends it for NotImplementedError.
    return NotImplementedError(f"not supported: {what}")


# Flight.proto CloseSessionResult{status: CLOSED} (field 1, varint 1); not Any-wrapped.
_CLOSE_SESSION_CLOSED = b"\x08\x01"

_Message = TypeVar("_Message", bound=Message)


# --- the server ---------------------------------------------------------------------------


class FlightSqlServer(flight.FlightServerBase):
    """Flight SQL over `<lake_uri>/<table>` Delta tables, one org per caller, read-only."""

    def __init__(
        self,
        location: str,
        lake_uri: str,
        authenticator: Authenticator,
        *,
        memory_limit: str = "1GB",
        threads: int = 2,
        query_timeout_s: float = 30.0,
        storage_options: dict[str, str] | None = None,
        catalog_name: str = "flasktrack",
        schema_name: str = "main",
        max_batch_bytes: int = _DEFAULT_BATCH_BYTES,
        max_row_bytes: int = _DEFAULT_ROW_BYTES,
        prefetch_batches: int = 4,
        max_concurrent_queries: int = 4,
        statement_ttl_s: float = 600.0,
        max_statements_per_session: int = 64,
        token_idle_ttl_s: float = 3600.0,
        token_max_ttl_s: float = 12 * 3600.0,
        warm_connections: int = 2,
        spill_dir: str | None = None,
        tls_certificates: list[flight.CertKeyPair] | None = None,
        trusted_proxies: Sequence[str] = (),
        principal_recheck_s: float = 30.0,
    ) -> None:
        self.authenticator = authenticator
        self.sessions = SessionStore(
            idle_ttl_s=token_idle_ttl_s, max_ttl_s=token_max_ttl_s, recheck_s=principal_recheck_s
        )
        self.catalog = LakeCatalog(
            lake_uri, storage_options=storage_options, catalog_name=catalog_name, schema_name=schema_name
        )
        self.settings = SandboxSettings(
            memory_limit=memory_limit,
            threads=threads,
            timeout_s=query_timeout_s,
            catalog=catalog_name,
            spill_dir=spill_dir,
        )
        # A warm connection for an organization's first query; then sandboxes built ahead for it (lake/query.py).
        self.pool = ConnectionPool(self.settings, size=min(warm_connections, 1))
        self.sandboxes = OrgSandboxes(self.settings, self.catalog, per_key=warm_connections, fallback=self.pool)
        self.max_batch_bytes = max_batch_bytes
        self.max_row_bytes = max(max_row_bytes, 1)
        self.prefetch_batches = prefetch_batches
        self.statement_ttl_s = statement_ttl_s
        self._tickets = StatementRegistry(max_per_session=max_statements_per_session)
        self._prepared = StatementRegistry(max_per_session=max_statements_per_session)
        self._slots = threading.BoundedSemaphore(max_concurrent_queries)
        self.metadata = MetadataAnswers(
            self.catalog,
            server_sql_info(SERVER_NAME, _server_version(), int(statement_ttl_s * 1000), duckdb_keywords()),
        )
        self.stop_requested = threading.Event()  # set by signals (see serve) or shutdown()
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        super().__init__(
            location,
            auth_handler=NoOpAuthHandler(),
            middleware={
                "auth": BearerAuthMiddlewareFactory(authenticator, self.sessions, trusted_proxies=trusted_proxies)
            },
            tls_certificates=tls_certificates,
        )

    def shutdown(self) -> None:
        """Stop serving (waits for running calls), release every DuckDB connection. Idempotent."""
        with self._shutdown_lock:
            if self._shut_down:
                return
            self._shut_down = True
        self.stop_requested.set()
        super().shutdown()
        self._tickets.close_all()
        self._prepared.close_all()
        self.sandboxes.close()
        self.pool.close()

    # --- Flight RPCs ----------------------------------------------------------------------

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        session = caller(context)
        deadline = Deadline(self.settings.timeout_s)  # the statement has arrived: its time runs
        name, command = self._command(descriptor)
        if isinstance(command, P.CommandStatementQuery):
            entry = self._prepare(context, session, command.query, deadline)
            self._tickets.add(entry)
            return self._ticket_info(descriptor, entry)
        if isinstance(command, P.CommandPreparedStatementQuery):
            entry = self._execute_prepared(context, session, command.prepared_statement_handle, deadline)
            return self._ticket_info(descriptor, entry)
        schema = self.metadata.schema(self._metadata_command(session, name, command))
        endpoint = flight.FlightEndpoint(descriptor.command, [])
        return flight.FlightInfo(schema, descriptor, [endpoint], -1, -1)

    def get_schema(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        session = caller(context)
        name, command = self._command(descriptor)
        if isinstance(command, P.CommandStatementQuery):
            entry = self._prepare(context, session, command.query, Deadline(self.settings.timeout_s))
            close_sandbox(entry.release())
            return flight.SchemaResult(entry.schema)
        if isinstance(command, P.CommandPreparedStatementQuery):
            prepared = self._owned(self._prepared, command.prepared_statement_handle, session, "prepared statement")
            return flight.SchemaResult(prepared.schema)
        return flight.SchemaResult(self.metadata.schema(self._metadata_command(session, name, command)))

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.FlightDataStream:
        session = caller(context)
        try:
            name, command = P.unpack(ticket.ticket)
        except P.ProtocolError as exc:
            raise _status(exc) from None
        if isinstance(command, P.TicketStatementQuery):
            entry = self._owned(self._tickets, command.statement_handle, session, "ticket", consume=True)
            self._same_role(entry, session)
            return self._stream(context, session, entry)
        if command is None:
            raise _unsupported(f"ticket {name}")
        principal = session.principal
        table = self.metadata.table(self._metadata_command(session, name, command), principal.org_id, principal.role)
        return flight.RecordBatchStream(table)

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> Iterator[bytes]:
        session = caller(context)
        kind = action.type
        if kind == "CreatePreparedStatement":
            request = self._action_body(action, P.ActionCreatePreparedStatementRequest)
            if request.HasField("transaction_id"):
                raise _unsupported("transactions (the server is read-only)")
            # Binding is bounded by a limit of its own; each execution gets a new one.
            entry = self._prepare(context, session, request.query, Deadline(self.settings.timeout_s), prepared=True)
            self._prepared.add(entry)
            result = P.ActionCreatePreparedStatementResult(
                prepared_statement_handle=entry.handle, dataset_schema=serialize_schema(entry.schema)
            )
            return iter([P.pack(result)])
        if kind == "ClosePreparedStatement":
            closing = self._action_body(action, P.ActionClosePreparedStatementRequest)
            handle = closing.prepared_statement_handle
            entry = self._owned(self._prepared, handle, session, "prepared statement", consume=True)
            close_sandbox(entry.release())
            return iter([])
        if kind == "CloseSession":  # Flight session action (JDBC sends it on close): log out
            self.sessions.revoke(session.token)
            self._tickets.close_session(session.token)
            self._prepared.close_session(session.token)
            return iter([_CLOSE_SESSION_CLOSED])
        if kind in ("BeginTransaction", "EndTransaction", "BeginSavepoint", "EndSavepoint"):
            raise _unsupported(f"{kind}: transactions (the server is read-only)")
        raise _unsupported(f"action {kind}")

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [
            ("CreatePreparedStatement", "Bind a SELECT; returns a handle and the result schema."),
            ("ClosePreparedStatement", "Release a prepared statement."),
            ("CloseSession", "Log out: the bearer token and its statements are released."),
        ]

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        session = caller(context)
        name, command = self._command(descriptor)
        with_sql = P.CommandStatementQuery | P.CommandStatementUpdate | P.ActionCreatePreparedStatementRequest
        sql = command.query if isinstance(command, with_sql) else ""
        if isinstance(command, P.CommandPreparedStatementQuery):
            prepared = self._owned(self._prepared, command.prepared_statement_handle, session, "prepared statement")
            sql = prepared.sql
            reason = "query parameters are not supported: inline the values in the SQL"
        elif isinstance(command, P.CommandStatementIngest):
            reason = f"read-only server: bulk ingestion into {command.table!r} is refused"
        else:
            reason = f"read-only server: {name} is refused (updates and ingestion are not accepted)"
        self._audit(session.principal, context, sql, "refused", reason=reason)
        raise flight.FlightUnauthorizedError(f"refused: {reason}")

    def do_exchange(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.MetadataRecordBatchWriter,
    ) -> None:
        caller(context)
        raise _unsupported("DoExchange")

    def list_flights(self, context: flight.ServerCallContext, criteria: bytes) -> Iterator[flight.FlightInfo]:
        caller(context)
        return iter([])

    # --- statements -----------------------------------------------------------------------

    def _prepare(
        self,
        context: flight.ServerCallContext,
        session: BearerAuthMiddleware,
        sql: str,
        deadline: Deadline,
        *,
        prepared: bool = False,
    ) -> Statement:
        """Check and bind `sql` on a fresh sandbox holding the caller's datasets, within `deadline`."""
        principal = session.principal
        self._require_query_role(principal, context, sql)
        started = time.perf_counter()
        whole = self._whole_table(principal, sql)
        if whole is not None:
            name, dataset, schema = whole
            return self._entry(
                context, session, sql, schema, (name,), started, None, deadline, prepared, scan=dataset
            )
        sandbox = self.sandboxes.take(principal.org_id, principal.role, deadline)
        datasets: dict[str, OrgDataset] = {}
        try:
            bind(sandbox, self.catalog, principal.org_id, principal.role, sql, datasets)
            sandbox.arm(deadline)
            try:
                schema = sandbox.result_schema(sql)
            finally:
                sandbox.disarm()
        except Exception as raw:  # noqa: BLE001 - every failure is audited, then mapped to a status
            exc = sandbox.translate(raw)
            sandbox.close()
            self.sandboxes.finished(principal.org_id, principal.role, ())
            outcome: Outcome = "refused" if isinstance(exc, SqlRefused) else "error"
            self._audit(
                principal,
                context,
                sql,
                outcome,
                reason=_first_lines(exc, 3),
                duration_ms=_ms(started),
                tables=tuple(datasets),
            )
            if not isinstance(exc, SqlRefused | duckdb.Error | TableNotFound | TimeTravelError | QueryTimeout):
                log.exception("flight.prepare_failed")
            raise _status(exc) from None
        return self._entry(context, session, sql, schema, tuple(datasets), started, sandbox, deadline, prepared)

    def _entry(
        self,
        context: flight.ServerCallContext,
        session: BearerAuthMiddleware,
        sql: str,
        schema: pa.Schema,
        tables: tuple[str, ...],
        started: float,
        sandbox: Sandbox | None,
        deadline: Deadline,
        prepared: bool,
        scan: OrgDataset | None = None,
    ) -> Statement:
        ttl = self.statement_ttl_s
        return Statement(
            handle=secrets.token_bytes(16),
            sql=sql,
            owner=Owner.of(session),
            schema=schema,
            tables=tables,
            prepare_ms=_ms(started),
            sandbox=sandbox,
            deadline=deadline,
            expires_at=time.monotonic() + ttl,
            scan=scan,
            ttl_s=ttl if prepared else 0.0,
            client_address=_peer(context),
        )

    def _whole_table(self, principal: Principal, sql: str) -> tuple[str, OrgDataset, pa.Schema] | None:
        """For `SELECT * FROM t` (t in the caller's view): the dataset to stream without an engine.

        None means "take the general path", which also produces every error message.
        """
        name = plain_scan_table(sql, self.catalog.catalog_name)
        if name is None:
            return None
        try:
            ref = parse_table_ref(name)
            if ref is None:
                return None
            dataset = self.catalog.dataset(ref, principal.org_id, principal.role)
        except Exception:  # noqa: BLE001 - the general path reports (and audits) the problem
            return None
        schema = engine_schema(dataset.schema)
        same_types = schema.names == dataset.schema.names and all(
            f.type.equals(g.type) for f, g in zip(dataset.schema, schema, strict=True)
        )
        return (name, dataset, schema) if same_types else None

    def _execute_prepared(
        self, context: flight.ServerCallContext, session: BearerAuthMiddleware, handle: bytes, deadline: Deadline
    ) -> Statement:
        prepared = self._owned(self._prepared, handle, session, "prepared statement")
        self._same_role(prepared, session)
        sandbox = prepared.release()
        if sandbox is None:  # already executed once: bind again on a fresh connection
            entry = self._prepare(context, session, prepared.sql, deadline)
            self._tickets.add(entry)
            return entry
        entry = Statement(
            handle=secrets.token_bytes(16),
            sql=prepared.sql,
            owner=prepared.owner,
            schema=prepared.schema,
            tables=prepared.tables,
            prepare_ms=prepared.prepare_ms,
            sandbox=sandbox,
            deadline=deadline,
            expires_at=time.monotonic() + self.statement_ttl_s,
            client_address=_peer(context),
            scan=prepared.scan,
        )
        self._tickets.add(entry)
        return entry

    def _ticket_info(self, descriptor: flight.FlightDescriptor, entry: Statement) -> flight.FlightInfo:
        ticket = P.pack(P.TicketStatementQuery(statement_handle=entry.handle))
        return flight.FlightInfo(entry.schema, descriptor, [flight.FlightEndpoint(ticket, [])], -1, -1)

    def _stream(
        self, context: flight.ServerCallContext, session: BearerAuthMiddleware, entry: Statement
    ) -> flight.FlightDataStream:
        sandbox = entry.release()
        if sandbox is None and entry.scan is None:  # pragma: no cover - tickets carry one or the other
            raise _not_found("ticket")
        principal = session.principal
        deadline = entry.deadline
        if deadline.passed:  # fetched too late: the query's time is spent before it ran
            close_sandbox(sandbox)
            reason = (
                f"the ticket was fetched after the query's {deadline.timeout_s:g} s time limit "
                "(counted from GetFlightInfo): run the query again"
            )
            self._audit(principal, context, entry.sql, "error", reason=reason, tables=entry.tables)
            raise flight.FlightTimedOutError(f"query timeout: {reason}")
        max_bytes = self.max_batch_bytes
        max_row_bytes = self.max_row_bytes
        batch_rows = _batch_rows(entry.schema, max_bytes)

        def batches() -> Iterator[pa.RecordBatch]:
            started = time.perf_counter()
            rows = 0
            outcome: Outcome = "ok"
            reason: str | None = None
            source: Generator[pa.RecordBatch, None, None] | None = None
            # Waiting for a slot spends the query's own time: a busy server cannot stretch it.
            remaining = deadline.remaining()
            acquired = self._slots.acquire(timeout=remaining) if remaining is None or remaining > 0 else False
            try:
                if not acquired:
                    raise deadline.exceeded("waited for a free query slot (server busy)")
                if sandbox is None:
                    assert entry.scan is not None
                    source = _scan_batches(entry.scan, entry.schema, batch_rows, deadline, self.prefetch_batches)
                else:
                    sandbox.arm(deadline)
                    source = sandbox.batches(entry.sql, batch_rows, prefetch=self.prefetch_batches)
                for batch in source:
                    pieces = _split(batch, max_bytes) if batch.nbytes > max_bytes else (batch,)
                    for piece in pieces:
                        if piece.num_rows == 1 and piece.nbytes > max_row_bytes:
                            raise RowTooLarge(
                                f"a result row takes {piece.nbytes} bytes, more than the {max_row_bytes} one "
                                "message may carry: select less per row (e.g. left(col, n))"
                            )
                        rows += piece.num_rows
                        yield piece
            except GeneratorExit:  # the client stopped reading (e.g. a GUI showing the first page)
                reason = f"client closed the stream after {rows} rows"
                raise
            except BaseException as raw:  # noqa: BLE001 - audited, then mapped to a Flight status
                exc = sandbox.translate(raw) if sandbox is not None else raw
                outcome = "refused" if isinstance(exc, SqlRefused) else "error"
                reason = _first_lines(exc, 3)
                if not isinstance(
                    exc, QueryTimeout | SqlRefused | RowTooLarge | duckdb.Error | OSError | flight.FlightError
                ):
                    log.exception("flight.stream_failed")
                raise _status(exc) from None
            finally:
                if source is not None:
                    with contextlib.suppress(Exception):
                        source.close()  # stops the prefetch thread before its connection closes
                # The slot is free once DuckDB has let go of the connection (an interrupted
                # call may still be returning), so running queries stay bounded.
                release = self._slots.release if acquired else None
                if sandbox is not None:
                    sandbox.close(then=release)
                    self.sandboxes.finished(principal.org_id, principal.role, entry.tables)
                elif release is not None:
                    release()
                self._audit(
                    principal,
                    context,
                    entry.sql,
                    outcome,
                    rows=rows,
                    reason=reason,
                    duration_ms=entry.prepare_ms + _ms(started),
                    tables=entry.tables,
                    client_address=entry.client_address,
                )

        return flight.GeneratorStream(entry.schema, batches())

    def _owned(
        self,
        registry: StatementRegistry,
        handle: bytes,
        session: BearerAuthMiddleware,
        what: str,
        *,
        consume: bool = False,
    ) -> Statement:
        """Look a handle up for its owner only; anyone else is refused and audited."""
        entry, mine = registry.lookup(handle, Owner.of(session), consume=consume)
        if entry is None:
            raise _not_found(f"{what} (unknown, expired or already used)")
        if not mine:
            reason = f"{what} belongs to another session"
            self._audit(session.principal, None, "", "denied", reason=reason)
            raise flight.FlightUnauthorizedError(f"permission denied: {reason}")
        return entry

    def _same_role(self, entry: Statement, session: BearerAuthMiddleware) -> None:
        """A statement bound under the caller's former role (it changed since) runs no more."""
        if entry.owner.role != session.principal.role:
            close_sandbox(entry.release())
            reason = f"your role changed to {session.principal.role!r} since this statement was prepared"
            self._audit(session.principal, None, entry.sql, "denied", reason=reason)
            raise flight.FlightUnauthorizedError(f"permission denied: {reason}; prepare it again")

    # --- metadata ----------------------------------------------------------------------

    def _metadata_command(
        self, session: BearerAuthMiddleware, name: str, command: P.FlightSqlMessage | None
    ) -> P.MetadataCommand:
        """The command, if it is a catalog question this caller may ask (metadata.py answers it)."""
        if not P.is_metadata_command(command):
            self._refuse_command(session, name)
        if not isinstance(command, P.CommandGetSqlInfo):  # clients read GetSqlInfo on connect, whatever the role
            self._require_metadata_role(session.principal, name)
        return command

    # --- checks and audit -----------------------------------------------------------------

    def _command(self, descriptor: flight.FlightDescriptor) -> tuple[str, P.FlightSqlMessage | None]:
        if descriptor.descriptor_type != flight.DescriptorType.CMD:
            raise _unsupported("path descriptors (send a Flight SQL command)")
        try:
            return P.unpack(descriptor.command)
        except P.ProtocolError as exc:
            raise _status(exc) from None

    def _refuse_command(self, session: BearerAuthMiddleware, name: str) -> NoReturn:
        if name in ("CommandStatementUpdate", "CommandPreparedStatementUpdate", "CommandStatementIngest"):
            raise flight.FlightUnauthorizedError(f"refused: read-only server: {name} is refused")
        raise _unsupported(f"command {name}")

    def _require_query_role(self, principal: Principal, context: flight.ServerCallContext, sql: str) -> None:
        if not principal.may_query:
            reason = f"role {principal.role!r} may not run queries"
            self._audit(principal, context, sql, "denied", reason=reason)
            raise flight.FlightUnauthorizedError(f"permission denied: {reason}")

    def _require_metadata_role(self, principal: Principal, name: str) -> None:
        if not principal.may_query:
            reason = f"role {principal.role!r} may not browse the catalog ({name})"
            self._audit(principal, None, "", "denied", reason=reason)
            raise flight.FlightUnauthorizedError(f"permission denied: {reason}")

    def _audit(
        self,
        principal: Principal | None,
        context: flight.ServerCallContext | None,
        sql: str,
        outcome: Outcome,
        *,
        rows: int = 0,
        reason: str | None = None,
        duration_ms: float = 0.0,
        tables: tuple[str, ...] = (),
        client_address: str | None = None,
    ) -> None:
        event = QueryEvent(
            sql=sql,
            outcome=outcome,
            rows=rows,
            duration_ms=round(duration_ms, 3),
            reason=reason,
            client_address=client_address or (_peer(context) if context is not None else None),
            tables=tables,
        )
        record(self.authenticator, principal, event)
        log.info(
            "flight.query",
            outcome=outcome,
            org_id=principal.org_id if principal else None,
            actor_id=principal.actor_id if principal else None,
            rows=rows,
            duration_ms=event.duration_ms,
            reason=reason,
        )

    @staticmethod
    def _action_body(action: flight.Action, cls: type[_Message]) -> _Message:
        try:
            name, message = P.unpack(action.body.to_pybytes())
        except P.ProtocolError as exc:
            raise _status(exc) from None
        if not isinstance(message, cls):
            raise flight.FlightServerError(f"{action.type}: expected {cls.DESCRIPTOR.name}, got {name}")
        return message


def _peer(context: flight.ServerCallContext | None) -> str | None:
    """The caller's address as its session resolved it (trusted proxies applied), else the peer's host."""
    if context is None:
        return None
    middleware = context.get_middleware("auth")
    if isinstance(middleware, BearerAuthMiddleware) and middleware.session.client_address:
        return middleware.session.client_address
    try:
        peer = context.peer()
    except Exception:  # noqa: BLE001
        return None
    return peer_host(peer.decode() if isinstance(peer, bytes) else peer)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _batch_rows(schema: pa.Schema, max_bytes: int) -> int:
    """Rows per batch so a batch stays under `max_bytes` (strings guessed at 32 bytes)."""
    width = 0
    for f in schema:
        try:
            width += max(f.type.bit_width // 8, 1)
        except ValueError:
            width += 36
    return max(1024, min(1 << 20, max_bytes // max(width, 1)))


def _scan_batches(
    dataset: OrgDataset, schema: pa.Schema, batch_rows: int, deadline: Deadline, prefetch: int
) -> Generator[pa.RecordBatch, None, None]:
    """A whole-table read straight from the files (no engine, no copies), as `schema`."""
    for batch in prefetched(dataset.read_whole(batch_rows), prefetch, wait_s=deadline.remaining):
        if deadline.passed:
            raise deadline.exceeded()
        yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)


def _split(batch: pa.RecordBatch, max_bytes: int) -> Iterator[pa.RecordBatch]:
    pieces = -(-batch.nbytes // max_bytes)
    step = -(-batch.num_rows // pieces)
    for offset in range(0, batch.num_rows, step):
        yield batch.slice(offset, step)


# --- entry point ----------------------------------------------------------------------------


def serve(server: FlightSqlServer) -> None:
    """Block until `server.shutdown()` is called, SIGINT, or SIGTERM; then shut down gracefully.

    pyarrow's own `serve()` waits in C++ where Python signal handlers never run, so the wait
    happens here. SIGTERM is handled only if nobody installed a handler for it already.
    """
    log.info("flight.serving", port=server.port, lake=server.catalog.lake_uri)
    signalled: list[int] = []  # a signal handler must not take locks: it only appends here
    previous: Callable[[int, FrameType | None], object] | int | None = None  # what signal.signal returns
    in_main = threading.current_thread() is threading.main_thread()
    if in_main and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: signalled.append(signum))
    try:
        while not signalled and not server.stop_requested.is_set():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        log.info("flight.stopping", port=server.port)
        server.shutdown()


def run_server(
    host: str,
    port: int,
    lake_uri: str,
    authenticator: Authenticator,
    **opts: Any,
) -> None:
    """Start the Flight SQL server on grpc://host:port (grpc+tls:// with `tls_certificates`) and block
    (`flasktrack flight`)."""
    scheme = "grpc+tls" if opts.get("tls_certificates") else "grpc"
    server = FlightSqlServer(f"{scheme}://{host}:{port}", lake_uri, authenticator, **opts)
    serve(server)
