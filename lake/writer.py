"""Exactly-once appends to the lake's Delta tables.

delta-rs records an app transaction `(app_id, version)` with a commit but does not skip a duplicate,
so the check is ours: read `transaction_version(app_id)` on a `DeltaTable`, decide what is still
missing, and commit through **that same object**. If anyone committed in between, the commit fails
with `CommitFailedError`; we reload and decide again. Passing the URI instead would reload the table
inside `write_deltalake` and lose the check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import structlog
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.fs import DeltaStorageHandler
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from core.config import Settings
from lake.tables import PARTITION

log = structlog.get_logger("flasktrack.lake")


@dataclass(frozen=True)
class Append:
    """Rows to append and the app transactions the same commit records (app_id → version)."""

    data: pa.Table
    transactions: Mapping[str, int]
    empty_ok: bool = False  # commit even without rows (the app transactions, a schema change are the point)


# Given the table as it is now (None: not created yet), what is still to be written; None = nothing.
Plan = Callable[[DeltaTable | None], Append | None]


class CommitRetriesExhausted(RuntimeError):
    pass


class _NotCreatedYet(LookupError):
    """The table was just created (by us or a racing writer) but does not open yet: tried again."""


class Lake:
    """The lake root: a folder, or an object-store URI with its storage options."""

    def __init__(self, root: str, storage_options: Mapping[str, str] | None = None, *, max_attempts: int = 20) -> None:
        self.root = root.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.max_attempts = max_attempts
        self._open: dict[str, DeltaTable] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Lake:
        return cls(settings.resolved_lake_uri, settings.resolved_lake_storage_options)

    def uri(self, name: str) -> str:
        return f"{self.root}/{name}"

    def open(self, name: str) -> DeltaTable | None:
        """The table at its latest version (cached, refreshed incrementally); None if it does not exist."""
        dt = self._open.get(name)
        if dt is not None:
            dt.update_incremental()
            return dt
        try:
            dt = DeltaTable(self.uri(name), storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None
        self._open[name] = dt
        return dt

    def forget(self, name: str) -> None:
        self._open.pop(name, None)

    def tables(self) -> list[str]:
        """Names of the Delta tables directly under the root."""
        try:
            fs = pafs.PyFileSystem(DeltaStorageHandler(self.root, self.storage_options or None))
            infos = fs.get_file_info(pafs.FileSelector("", recursive=False, allow_not_found=True))
        except (FileNotFoundError, TableNotFoundError):
            return []
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)
        return [n for n in names if DeltaTable.is_deltatable(self.uri(n), self.storage_options or None)]

    def txn_version(self, name: str, app_id: str) -> int:
        dt = self.open(name)
        return (dt.transaction_version(app_id) or 0) if dt is not None else 0

    def _retrying(self, name: str) -> Retrying:
        """Optimistic concurrency: a commit that lost a race (CommitFailedError) is decided again on the
        reloaded table, after a growing pause, up to `max_attempts` times; then the last error is raised."""

        def reload(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning("delta commit conflict; reloading", table=name, attempt=state.attempt_number - 1,
                        error=str(error))
            self.forget(name)

        return Retrying(retry=retry_if_exception_type((CommitFailedError, _NotCreatedYet)),
                        stop=stop_after_attempt(self.max_attempts), wait=wait_exponential(multiplier=0.01, max=1.0),
                        before_sleep=reload, reraise=True)

    def append_once(self, name: str, plan: Plan, *, description: str | None = None) -> bool:
        """Commit what `plan` says is missing, exactly once. True if a commit was made."""
        try:
            return self._retrying(name)(self._append, name, plan, description)
        except (CommitFailedError, _NotCreatedYet) as exc:
            raise CommitRetriesExhausted(f"{name}: no commit after {self.max_attempts} attempts") from exc

    def _append(self, name: str, plan: Plan, description: str | None) -> bool:
        dt = self.open(name)
        step = plan(dt)
        if dt is None and step is not None and (step.data.num_rows or step.empty_ok):
            self._create(name, step.data.schema, description)
            dt = self.open(name)
            step = plan(dt)  # decided again against the table we (or a racing writer) just created
        if step is None or (step.data.num_rows == 0 and not step.empty_ok):
            return False
        if dt is None:
            raise _NotCreatedYet(name)
        write_deltalake(
            dt, step.data, mode="append", partition_by=[PARTITION], schema_mode="merge",
            commit_properties=CommitProperties(
                app_transactions=[Transaction(app, version) for app, version in step.transactions.items()]),
        )
        return True

    def create(self, name: str, schema: pa.Schema, description: str | None) -> None:
        """The table, empty, unless it exists."""
        if self.open(name) is None:
            self._create(name, schema, description)

    def _create(self, name: str, schema: pa.Schema, description: str | None) -> None:
        try:
            DeltaTable.create(self.uri(name), schema, mode="error", partition_by=[PARTITION], name=name,
                              description=description, storage_options=self.storage_options or None)
        except DeltaError as exc:
            if "already exists" not in str(exc):
                raise
        self.forget(name)

    def describe(self, name: str, *, columns: Mapping[str, Mapping[str, str]] | None = None,
                 description: Callable[[pa.Schema], str] | str | None = None) -> None:
        """Bring column metadata (comment, unit) and the table description up to date; each change is a
        small metadata commit, made only when something differs."""
        try:
            self._retrying(name)(self._describe, name, columns, description)
        except CommitFailedError:
            log.warning("table metadata not updated", table=name)

    def _describe(self, name: str, columns: Mapping[str, Mapping[str, str]] | None,
                  description: Callable[[pa.Schema], str] | str | None) -> None:
        dt = self.open(name)
        if dt is None:
            return
        current = {f.name: dict(f.metadata) for f in dt.schema().fields}
        for col, meta in (columns or {}).items():
            if col in current and any(current[col].get(k) != v for k, v in meta.items()):
                dt.alter.set_column_metadata(col, dict(meta))
        if description is not None:
            text = description if isinstance(description, str) else description(self.schema(name))
            if (dt.metadata().description or "") != text:
                dt.alter.set_table_description(text)

    def schema(self, name: str) -> pa.Schema | None:
        dt = self.open(name)
        return pa.schema(dt.schema().to_arrow()) if dt is not None else None
