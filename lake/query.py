"""SQL over one organization's lake tables, in the sandbox Flight SQL uses (lake/sandbox.py, lake/catalog.py).

`bind` is the one way a statement meets the lake: exactly one SELECT, checked on DuckDB's parse tree, with only
the caller's organization's datasets registered for the tables it names (what the role may read), and no other
table or table function. The Flight SQL server binds its statements with it; `LakeQueries` runs them for the web
pages (the analyst's console), capped to a number of rows.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import duckdb
import pyarrow as pa
import structlog

from domain.analysis import LakeColumn, LakeTable, QueryAnswer, QueryFailed
from lake.catalog import VIEWS, LakeCatalog, OrgDataset, TableNotFound, TimeTravelError, parse_table_ref
from lake.sandbox import (
    ConnectionPool,
    Deadline,
    QueryTimeout,
    Sandbox,
    SandboxSettings,
    SqlRefused,
    check_references,
    check_statement,
    open_connection,
    parse_tree,
    referenced_tables,
)
from lake.schema_meta import META_REMARKS, META_TYPE_NAME

log = structlog.get_logger(__name__)


def register_tables(sandbox: Sandbox, catalog: LakeCatalog, org_id: str, role: str, tree: dict[str, Any],
                    registered: dict[str, OrgDataset]) -> None:
    """Register the org's dataset of every lake table the SQL names and the role may read (into `registered`);
    any other name stays unknown to DuckDB ("table does not exist")."""
    for name in sorted(referenced_tables(tree)):
        ref = parse_table_ref(name)
        if ref is None:
            continue
        view = VIEWS.get(ref.name)
        try:
            dataset = catalog.dataset(replace(ref, name=view.base) if view else ref, org_id, role)
        except TableNotFound:
            continue  # not in this org's view: DuckDB reports "table does not exist"
        if view is not None:
            sandbox.register(name, dataset.rows, view.select)
        else:
            sandbox.register(name, dataset.rows)
        registered[name] = dataset


def bind(sandbox: Sandbox, catalog: LakeCatalog, org_id: str, role: str, sql: str,
         registered: dict[str, OrgDataset]) -> None:
    """Check `sql` and register what it may read: raises SqlRefused, duckdb errors, TimeTravelError; the tables
    registered so far are in `registered` whatever happens (for the audit entry)."""
    check_statement(sandbox.con, sql)
    tree = parse_tree(sandbox.con, sql)
    register_tables(sandbox, catalog, org_id, role, tree, registered)
    check_references(tree, set(registered), catalog.catalog_name)


class OrgSandboxes:
    """Sandboxes built ahead, per (organization, role): opened, locked down and holding the organization's datasets
    of the tables its recent queries named, registered at their current versions. Each is handed out once, to one
    query, and closed after it, as one built on the query's path would be; what moves off that path is the cost of
    opening a database (~30 ms of CPU) and of registering the tables.

    A query's bind (`bind`) still checks every table against the catalog: a table named that was not set up ahead is
    registered then, one set up ahead at an older version is pointed at the newest one, and only the tables the
    query names and the role may read are allowed by `check_references`; what was set up ahead is a subset of what
    the organization and role may read (`catalog.dataset` answered it for them). Refills run in the background once
    a query has finished (not while it runs: both would share the same few cores). Keys not used for `idle_s` are
    dropped, and at most `max_keys` are kept.
    """

    def __init__(self, settings: SandboxSettings, catalog: LakeCatalog, *, per_key: int = 2, max_keys: int = 32,
                 max_tables: int = 8, idle_s: float = 600.0, fallback: ConnectionPool | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.fallback = fallback
        self.per_key = per_key
        self.max_keys = max_keys
        self.max_tables = max_tables
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._ready: OrderedDict[tuple[str, str], list[Sandbox]] = OrderedDict()
        self._tables: dict[tuple[str, str], dict[str, None]] = {}  # names recently queried, oldest first
        self._used: dict[tuple[str, str], float] = {}
        self._wanted: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._closed = False
        self._thread: threading.Thread | None = None
        if per_key > 0:
            self._thread = threading.Thread(target=self._fill, name="lake-sandbox-orgs", daemon=True)
            self._thread.start()

    def take(self, org_id: str, role: str, deadline: Deadline) -> Sandbox:
        """A sandbox for one query of this organization and role: built ahead if one is ready, else now."""
        key = (org_id, role)
        with self._lock:
            ready = self._ready.get(key)
            built = ready.pop(0) if ready else None
            self._used[key] = time.monotonic()
        if built is None:
            con = self.fallback.take() if self.fallback is not None else open_connection(self.settings)
            return Sandbox(con, self.settings, deadline)
        built.deadline = deadline
        return built

    def finished(self, org_id: str, role: str, tables: Iterable[str]) -> None:
        """A query of this organization and role is over: note the tables it read, and build its replacement."""
        if self._thread is None:
            return
        key = (org_id, role)
        with self._lock:
            if self._closed:
                return
            recent = self._tables.setdefault(key, {})
            for name in tables:
                ref = parse_table_ref(name)
                if ref is not None and ref.version is None and ref.as_of is None:  # current versions only
                    recent.pop(name, None)
                    recent[name] = None
            while len(recent) > self.max_tables:
                del recent[next(iter(recent))]
        self._wanted.put(key)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ready = [s for sandboxes in self._ready.values() for s in sandboxes]
            self._ready.clear()
        self._wanted.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)
        for sandbox in ready:
            sandbox.close()

    def _fill(self) -> None:
        while True:
            try:
                key = self._wanted.get(timeout=30.0)
            except queue.Empty:
                self._drop_idle()
                continue
            if key is None:
                return
            try:
                self._top_up(key)
            except Exception:  # noqa: BLE001 - the next query builds its own sandbox on its path
                log.warning("lake.sandbox_prebuild_failed", exc_info=True)
                time.sleep(1.0)
            self._drop_idle()

    def _top_up(self, key: tuple[str, str]) -> None:
        while True:
            with self._lock:
                if self._closed or len(self._ready.get(key, ())) >= self.per_key:
                    return
                names = list(self._tables.get(key, ()))
            sandbox = self._build(key, names)
            evicted: list[Sandbox] = []
            with self._lock:
                if self._closed:
                    evicted.append(sandbox)
                else:
                    self._ready.setdefault(key, []).append(sandbox)
                    self._ready.move_to_end(key)
                    while len(self._ready) > self.max_keys:
                        _, dropped = self._ready.popitem(last=False)
                        evicted.extend(dropped)
            for s in evicted:
                s.close()

    def _build(self, key: tuple[str, str], names: list[str]) -> Sandbox:
        org_id, role = key
        sandbox = Sandbox(open_connection(self.settings), self.settings)
        try:
            tree = {"type": "BASE_TABLE_LIST", "tables": [{"type": "BASE_TABLE", "table_name": n} for n in names]}
            register_tables(sandbox, self.catalog, org_id, role, tree, {})
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def _drop_idle(self) -> None:
        now = time.monotonic()
        dropped: list[Sandbox] = []
        with self._lock:
            for key in [k for k, used in self._used.items() if now - used > self.idle_s]:
                dropped.extend(self._ready.pop(key, []))
                self._tables.pop(key, None)
                del self._used[key]
        for s in dropped:
            s.close()


def _first_lines(exc: BaseException, limit: int = 3) -> str:
    text = str(exc).strip()
    return "\n".join(text.splitlines()[:limit]) if text else type(exc).__name__


class LakeQueries:
    """The analyst's console: an organization's tables and SQL over them, at most `max_concurrent` at once."""

    def __init__(self, lake_uri: str, *, storage_options: dict[str, str] | None = None,
                 settings: SandboxSettings | None = None, max_concurrent: int = 2) -> None:
        self.settings = settings or SandboxSettings(memory_limit="512MB", threads=1, timeout_s=20.0)
        self.catalog = LakeCatalog(lake_uri, storage_options=storage_options, catalog_name=self.settings.catalog)
        self.pool = ConnectionPool(self.settings, size=0)  # opened per query: no thread in the API process
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def tables(self, org_id: uuid.UUID, role: str) -> list[LakeTable]:
        out = []
        self.catalog.table_names(fresh=True)  # a table created a moment ago is listed (one folder listing)
        for name in self.catalog.visible_tables(str(org_id), role):
            try:
                info = self.catalog.info(name)
            except TableNotFound:
                continue
            columns = tuple(
                LakeColumn(f.name, (f.metadata or {}).get(META_TYPE_NAME.encode(), b"").decode() or str(f.type),
                           ((f.metadata or {}).get(META_REMARKS.encode()) or b"").decode() or None,
                           info.units.get(f.name))
                for f in info.schema)
            out.append(LakeTable(name, info.description, columns))
        return out

    def run(self, org_id: uuid.UUID, role: str, sql: str, max_rows: int) -> QueryAnswer:
        """The first `max_rows` rows of the query's answer; QueryFailed with the reason otherwise."""
        started = time.perf_counter()
        deadline = Deadline(self.settings.timeout_s)
        remaining = deadline.remaining()
        if not self._slots.acquire(timeout=remaining if remaining is not None else None):
            raise QueryFailed("the lake is busy with other queries: try again in a moment", "error")
        registered: dict[str, OrgDataset] = {}
        try:
            sandbox = Sandbox(self.pool.take(), self.settings, deadline)
        except BaseException:
            self._slots.release()
            raise
        batches: list[pa.RecordBatch] = []
        try:
            try:
                bind(sandbox, self.catalog, str(org_id), role, sql, registered)
                sandbox.arm(deadline)
                schema = sandbox.result_schema(sql)
                rows = 0
                source = sandbox.batches(sql, batch_size=min(max_rows + 1, 2048), prefetch=1)
                try:
                    for batch in source:
                        batches.append(batch)
                        rows += batch.num_rows
                        if rows > max_rows:
                            break
                finally:
                    source.close()
            except Exception as raw:  # noqa: BLE001 - every failure is the analyst's to read
                exc = sandbox.translate(raw)
                if isinstance(exc, SqlRefused):
                    raise QueryFailed(_first_lines(exc), "refused", tuple(registered)) from None
                if isinstance(exc, QueryTimeout | duckdb.Error | TableNotFound | TimeTravelError):
                    raise QueryFailed(_first_lines(exc), "error", tuple(registered)) from None
                raise
        finally:
            sandbox.close(then=self._slots.release)
        table = pa.Table.from_batches(batches) if batches else schema.empty_table()
        return QueryAnswer(table.slice(0, max_rows), table.num_rows > max_rows, tuple(registered),
                           (time.perf_counter() - started) * 1000)
