"""Fresh, locked-down DuckDB connections for running untrusted analyst SQL.

Each query gets its own in-memory DuckDB database that holds only the caller's org's
datasets, configured before any user SQL runs:

- `enable_external_access=false`: no files (read_csv/read_text/glob/COPY … TO/ATTACH/
  EXPORT), no INSTALL/LOAD, no CREATE SECRET;
- `autoload_known_extensions` / `autoinstall_known_extensions` = false;
- `python_enable_replacements=false`: SQL cannot read Python variables of the server;
- `memory_limit`, `threads`, no spilling to disk unless a spill folder is given;
- then `lock_configuration=true`, so SET/RESET/PRAGMA cannot undo any of it.

Statements are checked before execution: exactly one SELECT (the server is read-only).
There is no statement timeout in DuckDB: `Sandbox.arm(deadline)` calls `con.interrupt()` on a
timer when the query's one `Deadline` passes.

Opening a database costs ~15 ms, so `ConnectionPool` keeps a couple ready in the
background; a connection serves one query and is closed afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import structlog

log = structlog.get_logger(__name__)


class SqlRefused(Exception):
    """The statement is not allowed here (not a single SELECT, or the sandbox refused it)."""


class QueryTimeout(Exception):
    """The query ran past its deadline and was interrupted."""


@dataclass(frozen=True)
class SandboxSettings:
    memory_limit: str = "1GB"
    threads: int = 2
    timeout_s: float = 30.0
    catalog: str = "flasktrack"
    spill_dir: str | None = None  # None: no spilling, a query over memory_limit fails


def open_connection(settings: SandboxSettings) -> duckdb.DuckDBPyConnection:
    """A new in-memory database, locked down (see module docstring)."""
    con = duckdb.connect(
        ":memory:",
        config={
            "threads": settings.threads,
            "memory_limit": settings.memory_limit,
            "autoload_known_extensions": False,
            "autoinstall_known_extensions": False,
            "allow_community_extensions": False,
            "python_enable_replacements": False,
        },
    )
    try:
        # The catalog clients see (<catalog>.main.<table>) is an attached in-memory database.
        con.execute(f"ATTACH ':memory:' AS {quote_ident(settings.catalog)}")
        con.execute(f"USE {quote_ident(settings.catalog)}")
        con.execute("DETACH memory")
        con.execute(f"SET temp_directory = '{_sql_str(settings.spill_dir or '')}'")
        con.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ results come back in UTC, whatever the host
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _sql_str(value: str) -> str:
    return value.replace("'", "''")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ConnectionPool:
    """Keeps up to `size` sandboxed connections ready; each is handed out once."""

    def __init__(self, settings: SandboxSettings, size: int = 2) -> None:
        self.settings = settings
        self._size = size
        self._ready: queue.Queue[duckdb.DuckDBPyConnection] = queue.Queue(maxsize=max(size, 1))
        self._wanted = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        if size > 0:
            self._thread = threading.Thread(target=self._fill, name="lake-sandbox-pool", daemon=True)
            self._thread.start()
            self._wanted.set()

    def take(self) -> duckdb.DuckDBPyConnection:
        try:
            con = self._ready.get_nowait()
        except queue.Empty:
            con = open_connection(self.settings)
        self._wanted.set()
        return con

    def close(self) -> None:
        self._closed.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        while True:
            try:
                self._ready.get_nowait().close()
            except queue.Empty:
                break

    def _fill(self) -> None:
        while not self._closed.is_set():
            self._wanted.wait()
            self._wanted.clear()
            while not self._closed.is_set() and self._ready.qsize() < self._size:
                try:
                    con = open_connection(self.settings)
                except Exception:  # noqa: BLE001 - keep the pool alive; take() opens inline
                    log.exception("lake.sandbox_pool_open_failed")
                    time.sleep(1.0)
                    break
                try:
                    self._ready.put_nowait(con)
                except queue.Full:
                    con.close()
                    break


def duckdb_keywords() -> list[str]:
    """DuckDB's SQL keywords, upper case (for GetSqlInfo)."""
    con = duckdb.connect(":memory:")
    try:
        return sorted(r[0].upper() for r in con.execute("SELECT keyword_name FROM duckdb_keywords()").fetchall())
    finally:
        con.close()


_ALLOWED = {duckdb.StatementType.SELECT}
# DuckDB type ids whose names are plain SQL type names (no user-chosen text such as ENUM values or STRUCT keys).
_PLAIN_TYPES = frozenset({
    "boolean", "tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger",
    "ubigint", "uhugeint", "float", "double", "decimal", "varchar", "blob", "date", "time", "timestamp",
    "timestamp with time zone", "timestamp_s", "timestamp_ms", "timestamp_ns", "interval", "uuid",
})


def check_statement(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but exactly one SELECT (raises SqlRefused; parse errors propagate)."""
    statements = con.extract_statements(sql)
    if not statements:
        raise SqlRefused("empty statement")
    if len(statements) > 1:
        raise SqlRefused("one statement per query, please (this server runs a single SELECT)")
    kind = statements[0].type
    if kind not in _ALLOWED:
        raise SqlRefused(f"read-only server: {kind.name} statements are refused; only SELECT runs here")
    if statements[0].named_parameters:
        raise SqlRefused("query parameters are not supported: inline the values in the SQL")


_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_PLAIN_SCAN = re.compile(
    rf"^\s*(?:select\s+\*\s+from|from|table)\s+(?P<qualified>(?:{_IDENT}\s*\.\s*){{0,2}}{_IDENT})\s*;?\s*$",
    re.IGNORECASE,
)


def plain_scan_table(sql: str, catalog: str) -> str | None:
    """The table name if `sql` only reads a whole table (`SELECT * FROM t`, `FROM t`, `TABLE t`,
    optionally qualified as `main.t` or `<catalog>.main.t`).

    Such a query needs no SQL engine: the server streams the table's dataset directly.
    """
    match = _PLAIN_SCAN.match(sql)
    if match is None:
        return None
    parts = [
        p[1:-1].replace('""', '"') if p.startswith('"') else p for p in re.findall(_IDENT, match.group("qualified"))
    ]
    qualifier = [p.lower() for p in parts[:-1]]
    if qualifier not in ([], ["main"], [catalog.lower(), "main"]):
        return None
    return parts[-1]


_ENGINE_SCHEMAS: dict[bytes, pa.Schema] = {}
_ENGINE_LOCK = threading.Lock()


def engine_schema(schema: pa.Schema) -> pa.Schema:
    """The schema DuckDB (in the sandbox's settings) gives `SELECT *` over data of `schema`.

    Binds an empty table of that schema on a private connection: no user input involved.
    """
    key = schema.serialize().to_pybytes()
    with _ENGINE_LOCK:
        cached = _ENGINE_SCHEMAS.get(key)
        if cached is not None:
            return cached
        con = duckdb.connect(":memory:", config={"threads": 1, "python_enable_replacements": False})
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.register("t", schema.empty_table())
            result = con.sql("SELECT * FROM t").limit(0).to_arrow_table().schema
        finally:
            con.close()
        if len(_ENGINE_SCHEMAS) > 1024:
            _ENGINE_SCHEMAS.clear()
        _ENGINE_SCHEMAS[key] = result
        return result


def parse_tree(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    """DuckDB's parse tree of a statement that `check_statement` accepted (parse only).

    A SELECT the serializer cannot represent is refused: what cannot be inspected does not run.
    """
    rows = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
    tree: dict[str, Any] = json.loads(rows[0][0]) if rows else {"error": True}
    if tree.get("error"):
        raise SqlRefused("this form of SELECT is not supported here")
    return tree


def _nodes(tree: object) -> Iterator[dict[str, Any]]:
    stack: list[object] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def referenced_tables(tree: dict[str, Any]) -> set[str]:
    """Names of the base tables a SELECT mentions (last name part; CTE names may be included).

    From the parse tree: `get_table_names` binds the query, which fails before the tables exist.
    """
    return {
        n["table_name"] for n in _nodes(tree) if n.get("type") == "BASE_TABLE" and isinstance(n.get("table_name"), str)
    }


# Table functions that only compute (no catalog, no files, no SQL in a string).
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})


def check_references(tree: dict[str, Any], tables: set[str], catalog: str) -> None:
    """Only the platform's tables exist for the query: every table it names must be one of
    `tables` (the caller's registered lake tables) or a CTE of the query; the database's own
    catalog (`pg_attribute`, `duckdb_tables`, `information_schema.*`, `sqlite_master`, …) and
    table functions other than TABLE_FUNCTIONS do not. Raises duckdb.CatalogException (as for
    an unknown table) or SqlRefused."""
    nodes = list(_nodes(tree))
    ctes = {
        str(item["key"]).lower()
        for n in nodes
        if isinstance(n.get("cte_map"), dict)
        for item in n["cte_map"].get("map") or []
        if isinstance(item, dict) and "key" in item
    }
    known = {t.lower() for t in tables}
    for n in nodes:
        kind = n.get("type")
        if kind == "BASE_TABLE":
            name = str(n.get("table_name", "")).lower()
            schema, cat = str(n.get("schema_name", "")).lower(), str(n.get("catalog_name", "")).lower()
            ours = (cat in ("", catalog.lower()) and schema in ("", "main")) or (not cat and schema == catalog.lower())
            if not ours or not (name in known or (name in ctes and not schema and not cat)):
                shown = ".".join(p for p in (n.get("catalog_name"), n.get("schema_name"), n.get("table_name")) if p)
                raise duckdb.CatalogException(f"Catalog Error: Table with name {shown} does not exist!")
        elif kind == "TABLE_FUNCTION":
            function = n.get("function") or {}
            fname = str(function.get("function_name", "")).lower()
            if fname not in TABLE_FUNCTIONS or function.get("schema") or function.get("catalog"):
                raise SqlRefused(
                    f"table function {fname}() is not available here; only the lake's tables and "
                    f"{', '.join(sorted(TABLE_FUNCTIONS))}() can be queried"
                )
        elif kind == "SHOW_REF" and n.get("show_type") == "SHOW_SPECIAL":
            raise SqlRefused("SHOW is not available here: list tables with the catalog (GetTables) or DESCRIBE <table>")


class Deadline:
    """One query's time limit, fixed when its statement arrives: waiting for a query slot,
    binding, running and streaming the result all spend the same `timeout_s` (<= 0: none)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.ends_at: float | None = time.monotonic() + timeout_s if timeout_s > 0 else None

    def remaining(self) -> float | None:
        """Seconds left (never below 0), None without a limit."""
        if self.ends_at is None:
            return None
        return max(0.0, self.ends_at - time.monotonic())

    @property
    def passed(self) -> bool:
        return self.ends_at is not None and time.monotonic() >= self.ends_at

    def exceeded(self, what: str = "interrupted") -> QueryTimeout:
        return QueryTimeout(f"query {what} after {self.timeout_s:g} s (query timeout)")


class Sandbox:
    """One query's connection: register the org's datasets, then bind and stream SQL.

    DuckDB checks for an interrupt between vectors only: one huge value (a constant folded
    while binding, `repeat('x', 10^9)`) keeps it busy long after `interrupt()`. So DuckDB
    works on its own thread and the caller answers at the deadline; the connection is
    closed (and `close(then=…)` callbacks run) once DuckDB has actually let go of it.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        settings: SandboxSettings,
        deadline: Deadline | None = None,
        registered: dict[str, object] | None = None,
    ) -> None:
        self.con = con
        self.settings = settings
        self.deadline = deadline or Deadline(settings.timeout_s)
        self.expired = False  # the deadline passed while DuckDB worked on this connection
        self._timer: threading.Timer | None = None
        # name -> the dataset its view reads (set up ahead by a sandbox pool, or here)
        self._registered: dict[str, object] = dict(registered or {})
        self._closed = False
        self._lock = threading.Lock()
        self._busy = 0  # DuckDB calls running on worker threads
        self._closing = False
        self._after_close: list[Callable[[], object]] = []

    def register(self, name: str, dataset: pads.Dataset, select: str = "SELECT * FROM {base}") -> None:
        """Expose `dataset` as <catalog>.main.<name>: a view (`select` over `{base}`) of a registered Arrow scan.

        A name already registered with another dataset (set up ahead, before the table's newest version) is
        pointed at this one."""
        key = name.lower()  # DuckDB's names are case-insensitive, quoted or not: "RUNS" is runs
        known = self._registered.get(key)
        if known is dataset:
            return
        source = f"__flasktrack_src_{next(_SOURCE_NUMBERS)}"
        self.con.register(source, dataset)
        self.con.execute(
            f"CREATE {'OR REPLACE ' if known is not None else ''}VIEW "
            f"{quote_ident(self.settings.catalog)}.main.{quote_ident(name)} "
            f"AS {select.format(base=quote_ident(source))}"
        )
        self._registered[key] = dataset

    @property
    def registered(self) -> dict[str, object]:
        return dict(self._registered)

    def arm(self, deadline: Deadline) -> None:
        """Interrupt DuckDB when `deadline` passes (at once if it already has); until `disarm()`."""
        self.disarm()
        self.deadline = deadline
        remaining = deadline.remaining()
        if remaining is not None:
            self._timer = threading.Timer(remaining, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def result_schema(self, sql: str) -> pa.Schema:
        """The Arrow schema of the query's result, without running it (bounded by the deadline)."""
        with self._translated():
            return self._bounded(lambda: self._schema_of(sql))

    def _schema_of(self, sql: str) -> pa.Schema:
        """Bound, the query's columns have DuckDB types; when all are plain scalars, DuckDB converts a row of typed
        NULLs to Arrow instead of planning the query itself under a LIMIT 0 (which starts the scans of its tables:
        milliseconds). Either way DuckDB's own Arrow conversion decides the types, on this connection."""
        relation = self.con.sql(sql)
        names, types = relation.columns, relation.types
        unique = len({n.lower() for n in names}) == len(names)  # else DuckDB's Arrow names get suffixes (a, a_1)
        if names and unique and all(t.id in _PLAIN_TYPES for t in types):
            probe = "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS c{i}" for i, t in enumerate(types))
            check_statement(self.con, probe)
            typed = self.con.sql(probe).to_arrow_table().schema
            return pa.schema([f.with_name(n) for f, n in zip(typed, names, strict=True)])
        return relation.limit(0).to_arrow_table().schema

    def stream(self, sql: str, batch_size: int) -> pa.RecordBatchReader:
        """Start the query; batches are produced as the reader is consumed."""
        with self._translated():
            return self.con.sql(sql).to_arrow_reader(batch_size)

    def batches(self, sql: str, batch_size: int, prefetch: int = 0) -> Generator[pa.RecordBatch, None, None]:
        """Run `sql` and yield its batches; with `prefetch` > 0 a thread reads up to that many
        batches ahead, so DuckDB keeps computing while the caller sends the previous ones, and
        the caller stops waiting at the deadline whatever DuckDB is doing."""
        if prefetch <= 0:
            with self._translated():
                yield from self.stream(sql, batch_size)
            return
        with self._translated():
            yield from prefetched(
                self._worked(lambda: self.stream(sql, batch_size)),
                prefetch,
                on_abort=self.con.interrupt,
                wait_s=self.deadline.remaining,
            )

    def _bounded(self, work: Callable[[], T]) -> T:
        """`work()` on a worker thread; QueryTimeout as soon as the deadline passes."""
        outcome: list[object] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append(work())
            except BaseException as exc:  # noqa: BLE001 - handed over to the waiting thread
                outcome.append(_Failure(exc))
            finally:
                done.set()
                self._leave()

        self._enter()
        # Not a daemon: the interpreter waits for DuckDB to return before it exits (a daemon
        # thread inside DuckDB at exit aborts the process).
        threading.Thread(target=run, name="flight-query", daemon=False).start()
        if not done.wait(self.deadline.remaining()):
            self._expire()
            raise self.deadline.exceeded()
        result = outcome[0]
        if isinstance(result, _Failure):
            raise result.exc
        return result  # type: ignore[return-value]

    def _worked(self, open_reader: Callable[[], pa.RecordBatchReader]) -> Iterator[pa.RecordBatch]:
        """The reader's batches, opened and read on the (prefetch) thread that iterates this."""
        self._enter()
        try:
            yield from open_reader()
        finally:
            self._leave()

    def _expire(self) -> None:
        self.expired = True
        with contextlib.suppress(Exception):
            self.con.interrupt()

    def _enter(self) -> None:
        with self._lock:
            self._busy += 1

    def _leave(self) -> None:
        with self._lock:
            self._busy -= 1
            finish = self._closing and self._busy == 0 and not self._closed
            if finish:
                self._closed = True
        if finish:
            self._finish_close()

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            mapped = self.translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def translate(self, exc: BaseException) -> BaseException:
        """SqlRefused for sandbox refusals, QueryTimeout for interrupts; anything else as is."""
        if isinstance(exc, QueryTimeout):
            return exc
        if self.expired or isinstance(exc, duckdb.InterruptException):
            return self.deadline.exceeded()
        if isinstance(exc, duckdb.PermissionException) or "Permission Error" in str(exc):
            return SqlRefused(_first_line(exc))
        return exc

    def close(self, then: Callable[[], object] | None = None) -> None:
        """Close the connection now, or as soon as DuckDB returns from a call still running
        (interrupted); `then` runs once it is closed."""
        with self._lock:
            if then is not None:
                self._after_close.append(then)
            self._closing = True
            if self._closed:
                now, finish = then, False
            else:
                now, finish = None, self._busy == 0
                if finish:
                    self._closed = True
        if now is not None:
            now()
        if finish:
            self._finish_close()
        elif not self._closed:
            self._expire()  # a worker still runs: make it stop at DuckDB's next check

    def _finish_close(self) -> None:
        """Closing a database costs milliseconds of CPU: done off the query's path (its answer is complete), on
        a thread of its own that the interpreter waits for at exit (DuckDB must not be inside a call then)."""
        self.disarm()
        threading.Thread(target=self._close_now, name="lake-sandbox-close", daemon=False).start()

    def _close_now(self) -> None:
        with contextlib.suppress(Exception):
            self.con.close()
        for callback in self._after_close:
            with contextlib.suppress(Exception):
                callback()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_END = object()
_SOURCE_NUMBERS = itertools.count()  # names of registered Arrow scans (queries cannot name them: check_references)


@dataclass(frozen=True)
class _Failure:
    exc: BaseException


T = TypeVar("T")


def prefetched(
    source: Iterable[T],
    depth: int,
    on_abort: Callable[[], object] | None = None,
    wait_s: Callable[[], float | None] | None = None,
) -> Generator[T, None, None]:
    """Iterate `source` in a thread up to `depth` items ahead of the consumer.

    The producer's errors are raised in the consumer. `wait_s` bounds how long the consumer
    waits for the next item (None: no bound); past it, QueryTimeout. If the consumer stops
    early, the producer is told to stop (`on_abort` can interrupt a blocking producer) and
    closes the source itself once it returns; the consumer does not wait for that.
    """
    if depth <= 0:
        yield from source
        return
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(source)
        try:
            for item in iterator:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed over to the consuming thread
            put(_Failure(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()  # releases what the source holds, on the thread that used it

    producer = threading.Thread(target=produce, name="flight-prefetch", daemon=False)  # see Sandbox._bounded
    producer.start()
    try:
        while True:
            try:
                item = ready.get(timeout=wait_s() if wait_s is not None else None)
            except queue.Empty:
                raise QueryTimeout("query interrupted: it ran past the query timeout") from None
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        if producer.is_alive() and on_abort is not None:
            with contextlib.suppress(Exception):
                on_abort()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
