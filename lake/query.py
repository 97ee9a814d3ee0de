"""SQL over one organization's lake tables, in the sandbox Flight SQL uses (lake/sandbox.py, lake/catalog.py).

`bind` is the one way a statement meets the lake: exactly one SELECT, checked on DuckDB's parse tree, with only
the caller's organization's datasets registered for the tables it names (what the role may read), and no other
table or table function. The Flight SQL server binds its statements with it; `LakeQueries` runs them for the web
pages (the analyst's console), capped to a number of rows.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from typing import Any

import duckdb
import pyarrow as pa

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
    parse_tree,
    referenced_tables,
)
from lake.schema_meta import META_REMARKS, META_TYPE_NAME


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
