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
There is no statement timeout in DuckDB: `Deadline` calls `con.interrupt()` on a timer.

Opening a database costs ~15 ms, so `ConnectionPool` keeps a couple ready in the
background; a connection serves one query and is closed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

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
            self._thread = threading.Thread(target=self._fill, name="flight-sandbox-pool", daemon=True)
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
                    log.exception("flight.sandbox_pool_open_failed")
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


def referenced_tables(con: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    """Names of the base tables a SELECT mentions (last name part; CTE names may be included).

    Parse only: `get_table_names` binds the query, which fails before the tables exist.
    """
    rows = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
    tree = json.loads(rows[0][0]) if rows else {}
    if tree.get("error"):
        return set()  # the real parse error surfaces when the query is bound
    names: set[str] = set()
    stack: list[object] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
                names.add(node["table_name"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


class Deadline:
    """Interrupts a connection once `timeout_s` has elapsed since `start()`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, timeout_s: float) -> None:
        self._con = con
        self.timeout_s = timeout_s
        self.expired = False
        self._timer: threading.Timer | None = None

    def start(self) -> Deadline:
        """(Re)arm the timer: the full timeout counts from now."""
        self.cancel()
        self.expired = False
        if self.timeout_s > 0:
            self._timer = threading.Timer(self.timeout_s, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self.expired = True
        with contextlib.suppress(Exception):
            self._con.interrupt()


class Sandbox:
    """One query's connection: register the org's datasets, then bind and stream SQL."""

    def __init__(self, con: duckdb.DuckDBPyConnection, settings: SandboxSettings) -> None:
        self.con = con
        self.settings = settings
        self.deadline = Deadline(con, settings.timeout_s)
        self._registered: set[str] = set()
        self._closed = False

    def register(self, name: str, dataset: pads.Dataset) -> None:
        """Expose `dataset` as <catalog>.main.<name> (a view over a registered Arrow scan)."""
        if name in self._registered:
            return
        source = f"__flasktrack_src_{len(self._registered)}"
        self.con.register(source, dataset)
        self.con.execute(
            f"CREATE VIEW {quote_ident(self.settings.catalog)}.main.{quote_ident(name)} "
            f"AS SELECT * FROM {quote_ident(source)}"
        )
        self._registered.add(name)

    def result_schema(self, sql: str) -> pa.Schema:
        """The Arrow schema of the query's result, without running it."""
        with self._translated():
            return self.con.sql(sql).limit(0).to_arrow_table().schema

    def stream(self, sql: str, batch_size: int) -> pa.RecordBatchReader:
        """Start the query; batches are produced as the reader is consumed."""
        with self._translated():
            return self.con.sql(sql).to_arrow_reader(batch_size)

    def batches(self, sql: str, batch_size: int, prefetch: int = 0) -> Generator[pa.RecordBatch, None, None]:
        """Run `sql` and yield its batches; with `prefetch` > 0 a thread reads up to that many
        batches ahead, so DuckDB keeps computing while the caller sends the previous ones."""
        reader = self.stream(sql, batch_size)
        with self._translated():
            yield from prefetched(reader, prefetch, on_abort=self.con.interrupt)

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
        if self.deadline.expired or isinstance(exc, duckdb.InterruptException):
            return QueryTimeout(f"query interrupted after {self.settings.timeout_s:g} s (query timeout)")
        if isinstance(exc, duckdb.PermissionException) or "Permission Error" in str(exc):
            return SqlRefused(_first_line(exc))
        return exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.deadline.cancel()
        with contextlib.suppress(Exception):
            self.con.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_END = object()


@dataclass(frozen=True)
class _Failure:
    exc: BaseException


T = TypeVar("T")


def prefetched(
    source: Iterable[T], depth: int, on_abort: Callable[[], object] | None = None
) -> Generator[T, None, None]:
    """Iterate `source` in a thread up to `depth` items ahead of the consumer.

    The producer's errors are raised in the consumer. If the consumer stops early, the
    producer is told to stop (`on_abort` can interrupt a blocking producer) and joined,
    so the source's resources can be released safely afterwards.
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
        try:
            for item in source:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed over to the consuming thread
            put(_Failure(exc))

    producer = threading.Thread(target=produce, name="flight-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        if producer.is_alive():
            if on_abort is not None:
                with contextlib.suppress(Exception):
                    on_abort()
            producer.join(timeout=10)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
