"""Report executions over the lake: the analyst console's sandbox (lake/query.py), with every table pinned.

A report reads each lake table at one Delta version: the current one when it is executed, the recorded one when a
finalized report is reproduced (time travel). The versions it read come back with its rows, so the execution's
record names them (domain/reports). Views (`runs_current`, …) pin their base table. A table the SQL names with its
own version (`runs@v3`) stays at that version.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace

import duckdb
import pyarrow as pa

from domain.analysis import QueryFailed
from domain.reports.engine import LakeResult
from lake.catalog import VIEWS, LakeCatalog, TableNotFound, TableRef, TimeTravelError, parse_table_ref
from lake.query import LakeQueries, _first_lines
from lake.sandbox import (
    Deadline,
    QueryTimeout,
    Sandbox,
    SqlRefused,
    check_references,
    check_statement,
    parse_tree,
    referenced_tables,
)


@dataclass
class _Bound:
    registered: list[str]
    versions: dict[str, int]


def _register_pinned(sandbox: Sandbox, catalog: LakeCatalog, org_id: str, role: str, sql: str,
                     pinned: Mapping[str, int] | None, bound: _Bound) -> None:
    check_statement(sandbox.con, sql)
    tree = parse_tree(sandbox.con, sql)
    for name in sorted(referenced_tables(tree)):
        ref = parse_table_ref(name)
        if ref is None:
            continue
        view = VIEWS.get(ref.name)
        base = replace(ref, name=view.base) if view else ref
        try:
            if base.version is None and base.as_of is None:
                if pinned is not None and base.name in pinned:
                    version = int(pinned[base.name])
                elif pinned is not None:
                    raise TimeTravelError(f"table {base.name} was not read when this report was executed")
                else:
                    if not catalog.is_visible(base.name, org_id, role):
                        raise TableNotFound(base.name)
                    version = catalog.info(base.name).version
                base = TableRef(base.name, version=version)
            dataset = catalog.dataset(base, org_id, role)
        except TableNotFound:
            continue  # not in this org's view: DuckDB reports "table does not exist"
        assert base.version is not None or base.as_of is not None
        if base.version is not None:
            bound.versions[base.name] = base.version
        if view is not None:
            sandbox.register(name, dataset.rows, view.select)
        else:
            sandbox.register(name, dataset.rows)
        bound.registered.append(name)
    check_references(tree, set(bound.registered), catalog.catalog_name)


class ReportQueries(LakeQueries):
    """The analyst console's queries, and report executions with every table at a known Delta version."""

    def check(self, org_id: uuid.UUID, role: str, sql: str) -> tuple[str, ...]:
        """Validate without running: the tables it would read; QueryFailed with the sandbox's reason otherwise."""
        bound = _Bound([], {})
        sandbox = Sandbox(self.pool.take(), self.settings, Deadline(self.settings.timeout_s))
        try:
            try:
                _register_pinned(sandbox, self.catalog, str(org_id), role, sql, None, bound)
                sandbox.result_schema(sql)  # binds: unknown columns and functions are reported here
            except Exception as raw:  # noqa: BLE001 - every failure is the author's to read
                raise self._failed(sandbox, raw, bound) from None
        finally:
            sandbox.close()
        return tuple(bound.registered)

    def execute(self, org_id: uuid.UUID, role: str, sql: str, *, pinned: Mapping[str, int] | None = None,
                max_rows: int) -> LakeResult:
        """Every row (at most `max_rows`, else QueryFailed) of `sql` over the org's tables, each at the version in
        `pinned` (time travel) or, without it, at its current version; the versions read come back."""
        started = time.perf_counter()
        deadline = Deadline(self.settings.timeout_s)
        remaining = deadline.remaining()
        if not self._slots.acquire(timeout=remaining if remaining is not None else None):
            raise QueryFailed("the lake is busy with other queries: try again in a moment", "error")
        bound = _Bound([], {})
        try:
            sandbox = Sandbox(self.pool.take(), self.settings, deadline)
        except BaseException:
            self._slots.release()
            raise
        batches: list[pa.RecordBatch] = []
        try:
            try:
                _register_pinned(sandbox, self.catalog, str(org_id), role, sql, pinned, bound)
                sandbox.arm(deadline)
                schema = sandbox.result_schema(sql)
                rows = 0
                source = sandbox.batches(sql, batch_size=2048, prefetch=1)
                try:
                    for batch in source:
                        batches.append(batch)
                        rows += batch.num_rows
                        if rows > max_rows:
                            raise QueryFailed(f"the report has more than {max_rows} rows: narrow it (a WHERE, "
                                              "a GROUP BY, a parameter) or preview it", "error",
                                              tuple(bound.registered))
                finally:
                    source.close()
            except QueryFailed:
                raise
            except Exception as raw:  # noqa: BLE001 - every failure is the author's to read
                raise self._failed(sandbox, raw, bound) from None
        finally:
            sandbox.close(then=self._slots.release)
        table = pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()
        return LakeResult(table, dict(sorted(bound.versions.items())), tuple(bound.registered),
                          (time.perf_counter() - started) * 1000)

    @staticmethod
    def _failed(sandbox: Sandbox, raw: BaseException, bound: _Bound) -> BaseException:
        exc = sandbox.translate(raw)
        if isinstance(exc, SqlRefused):
            return QueryFailed(_first_lines(exc), "refused", tuple(bound.registered))
        if isinstance(exc, QueryTimeout | duckdb.Error | TableNotFound | TimeTravelError):
            return QueryFailed(_first_lines(exc), "error", tuple(bound.registered))
        return exc
