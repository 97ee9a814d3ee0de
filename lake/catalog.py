"""The lake as the Flight SQL server sees it: tables, per-org views, time travel.

Every table lives at `<lake_uri>/<name>` and is partitioned by `org_id`. A caller only
ever gets datasets restricted to their own org: the partition predicate prunes other
orgs' files before anything is read, and a row filter on `org_id` backs it up.

Which tables an org sees: the shared tables (`audit_log`, `step_events`, `runs`, and the material: `samples`,
`batches`, `lineage_edges`, `sample_movements`) always,
and a `form_*` table once the org has a partition in it or has approved a protocol version
using the form (the sink records `published:<org>` on the table then: empty, typed, queryable).
Another org's form tables are not listed and cannot be queried (not even their column names leak).
Which of those a caller sees is the platform's rule (`domain.roles.may_read_lake_table`): `audit_log`
only for roles that read the whole audit log over the API too.

Views: `runs_current` (the newest revision of each run) over `runs`, wherever `runs` is visible, and likewise
`samples_current` and `batches_current`;
a view is registered in the sandbox as SQL over its base table's org dataset (time travel included).

Time travel: `name@v<N>` (a Delta version) or `name@<ISO-8601 timestamp>` (the latest
version committed at or before that instant; no zone = UTC).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from cachetools import LRUCache, TTLCache
from deltalake import DeltaTable

from domain.roles import may_read_lake_table
from lake import schema_meta as schemas
from lake.tables import PARTITION, published_app_id

SHARED_TABLES = frozenset({"audit_log", "step_events", "runs", "samples", "batches", "lineage_edges",
                           "sample_movements", "registry_items", "evidence_files", "evidence_links",
                           "reports", "report_executions", "report_exports", "compliance_events", "capa_actions",
                           "audits", "audit_findings", "alerts"})
TABLE_TYPE = "TABLE"

_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}$")
_VERSION = re.compile(r"^v(\d{1,18})$")


@dataclass(frozen=True)
class View:
    """A read-only view over one lake table, as SQL over `{base}` (the caller's rows of that table)."""

    name: str
    base: str
    select: str
    description: str


def current_view(base: str, key: str, what: str, plural: str, extra: str = "") -> View:
    """`<base>_current`: of `base` (one row per revision), only each record's row (by `key`) with the highest
    revision."""
    return View(f"{base}_current", base,
                f"SELECT * FROM {{base}} QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY revision DESC) = 1",
                f"The current state of each {what}: of `{base}` (one row per revision), only each {plural} row with "
                f"the highest revision{extra}.")


VIEWS: dict[str, View] = {v.name: v for v in (
    current_view("runs", "run_id", "protocol run", "run's"),
    current_view("samples", "sample_id", "sample", "sample's"),
    current_view("batches", "batch_id", "batch", "batch's"),
    current_view("registry_items", "item_id", "registry record", "record's",
                 " (archived records included: `archived_at` is set)"),
    current_view("compliance_events", "event_id", "compliance event", "event's"),
    current_view("capa_actions", "action_id", "CAPA action", "action's"),
    current_view("audits", "audit_id", "audit", "audit's"),
    current_view("alerts", "alert_id", "alert", "alert's"),
    current_view("authorizations", "authorization_id", "authorization record", "record's"),
)}


class TableNotFound(LookupError):
    """The table does not exist in the caller's view of the lake."""


class TimeTravelError(ValueError):
    """A `name@...` reference that cannot be resolved (bad syntax, no such version/instant)."""


@dataclass(frozen=True)
class TableRef:
    """A table as written in SQL: `runs`, `form_x@v3`, `runs@2026-11-01T12:00:00Z`."""

    name: str
    version: int | None = None
    as_of: datetime | None = None

    @property
    def sql_name(self) -> str:
        if self.version is not None:
            return f"{self.name}@v{self.version}"
        if self.as_of is not None:
            return f"{self.name}@{self.as_of.isoformat().replace('+00:00', 'Z')}"
        return self.name


def parse_table_ref(text: str) -> TableRef | None:
    """Parse a referenced table name; None if it cannot be a lake table at all."""
    name, sep, suffix = text.partition("@")
    name = name.lower()  # DuckDB resolves identifiers case-insensitively
    if not _TABLE_NAME.match(name):
        return None
    if not sep:
        return TableRef(name)
    version = _VERSION.match(suffix)
    if version:
        return TableRef(name, version=int(version.group(1)))
    try:
        instant = datetime.fromisoformat(suffix)
    except ValueError:
        raise TimeTravelError(
            f'cannot read "{text}": after @ put v<version> or an ISO-8601 timestamp '
            '(e.g. "runs@v3", "runs@2026-11-01T12:00:00Z")'
        ) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return TableRef(name, as_of=instant.astimezone(UTC))


def list_table_names(lake_uri: str, storage_options: dict[str, str] | None = None) -> list[str]:
    """Names of the Delta tables directly under the lake folder (or object-store prefix)."""
    parsed = urlparse(lake_uri)
    if parsed.scheme not in ("", "file"):
        # Object stores: list through delta-rs' own storage layer, as the sink does.
        from lake.writer import Lake

        return [n for n in Lake(lake_uri, storage_options).tables() if _TABLE_NAME.match(n)]
    root = parsed.path if parsed.scheme == "file" else lake_uri
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    return sorted(
        e.name
        for e in entries
        if e.is_dir() and _TABLE_NAME.match(e.name) and os.path.isdir(os.path.join(e.path, "_delta_log"))
    )


def table_uri(lake_uri: str, name: str) -> str:
    return lake_uri.rstrip("/") + "/" + name


@dataclass(frozen=True)
class TableInfo:
    """A table's current shape, for GetTables: Arrow schema with remarks, description."""

    name: str
    schema: pa.Schema
    description: str | None
    version: int
    units: dict[str, str] = dataclass_field(default_factory=dict)  # column → unit, from the column's Delta metadata


class _Cached:
    """One DeltaTable kept loaded and refreshed cheaply (`update_incremental`)."""

    def __init__(self, table: DeltaTable, now: float) -> None:
        self.table = table
        self.lock = threading.Lock()
        self.checked_at = now
        self.orgs: tuple[int, frozenset[str]] | None = None  # (version, orgs with a partition)
        self.published: dict[str, bool] = {}  # org → published the form, at version orgs[0]
        self.info: TableInfo | None = None


class LakeCatalog:
    """Discovers tables under `lake_uri` and hands out org-restricted Arrow datasets."""

    def __init__(
        self,
        lake_uri: str,
        *,
        storage_options: dict[str, str] | None = None,
        refresh_interval_s: float = 0.5,
        listing_ttl_s: float = 2.0,
        catalog_name: str = "flasktrack",
        schema_name: str = "main",
        pinned_cache_size: int = 32,
        dataset_cache_size: int = 256,
    ) -> None:
        self.lake_uri = lake_uri.rstrip("/")
        self.storage_options = storage_options
        self.refresh_interval_s = refresh_interval_s
        self.listing_ttl_s = listing_ttl_s
        self.catalog_name = catalog_name
        self.schema_name = schema_name
        self._lock = threading.Lock()
        self._tables: dict[str, _Cached] = {}
        self._listing: TTLCache[str, list[str]] = TTLCache(1, listing_ttl_s)  # the lake's table names
        # (name, version) → DeltaTable at that version; (name, version, org) → org dataset
        self._pinned: LRUCache[tuple[str, int], DeltaTable] = LRUCache(pinned_cache_size)
        self._datasets: LRUCache[tuple[str, int, str], OrgDataset] = LRUCache(dataset_cache_size)

    # --- discovery ------------------------------------------------------------------

    def table_names(self, *, fresh: bool = False) -> list[str]:
        if not fresh:
            with self._lock:
                listed = self._listing.get(self.lake_uri)
            if listed is not None:
                return listed
        names = list_table_names(self.lake_uri, self.storage_options)
        with self._lock:
            self._listing[self.lake_uri] = names
        return names

    def visible_tables(self, org_id: str, role: str) -> list[str]:
        """The org's tables this role may read, and the views over them."""
        names = []
        for name in self.table_names():
            if not may_read_lake_table(role, name):
                continue
            try:
                if self._visible(name, org_id):
                    names.append(name)
            except TableNotFound:
                continue  # removed, or not readable right now
        return sorted(names + [v.name for v in VIEWS.values() if v.base in names])

    def is_visible(self, name: str, org_id: str, role: str) -> bool:
        if not _TABLE_NAME.match(name) or not may_read_lake_table(role, name):
            return False
        if name not in self.table_names() and name not in self.table_names(fresh=True):
            return False
        return self._visible(name, org_id)

    def _visible(self, name: str, org_id: str) -> bool:
        cached = self._current(name)
        with cached.lock:
            return self._visible_locked(cached, name, org_id)

    @staticmethod
    def _visible_locked(cached: _Cached, name: str, org_id: str) -> bool:
        table = cached.table
        if PARTITION not in table.metadata().partition_columns:
            return False  # a table not partitioned by org cannot be served per tenant
        if name in SHARED_TABLES:
            return True
        version = table.version()
        if cached.orgs is None or cached.orgs[0] != version:
            orgs = frozenset(p[PARTITION] for p in table.partitions() if p.get(PARTITION))
            cached.orgs = (version, orgs)
            cached.published = {}
        if org_id in cached.orgs[1]:
            return True
        if org_id not in cached.published:
            cached.published[org_id] = table.transaction_version(published_app_id(org_id)) is not None
        return cached.published[org_id]

    def info(self, name: str) -> TableInfo:
        view = VIEWS.get(name)
        if view is not None:  # the base table's columns under the view's name and description
            base = self.info(view.base)
            fields = [f.with_metadata({**(f.metadata or {}), schemas.META_TABLE_NAME.encode(): name.encode()})
                      for f in base.schema]
            meta = {schemas.META_REMARKS: view.description}
            return TableInfo(name, pa.schema(fields, metadata=meta), view.description, base.version, base.units)
        cached = self._current(name)
        with cached.lock:
            version = cached.table.version()
            if cached.info is None or cached.info.version != version:
                cached.info = self._describe(name, cached.table, version)
            return cached.info

    # --- data -----------------------------------------------------------------------

    def dataset(self, ref: TableRef, org_id: str, role: str) -> OrgDataset:
        """The org's rows of `ref` (current, a version, or as of an instant) as a dataset.

        Raises TableNotFound when the table is not in the view of the org and role. Datasets are cached
        per (table, version, org): building one lists the files, which costs milliseconds.
        """
        if not self.is_visible(ref.name, org_id, role):
            raise TableNotFound(ref.name)
        if ref.version is None and ref.as_of is None:
            cached = self._current(ref.name)
            with cached.lock:
                version = cached.table.version()
                return self._org_dataset(ref.name, version, cached.table, org_id)
        table = self._pinned_table(ref)
        return self._org_dataset(ref.name, table.version(), table, org_id)

    def _org_dataset(self, name: str, version: int, table: DeltaTable, org_id: str) -> OrgDataset:
        key = (name, version, org_id)
        with self._lock:
            dataset = self._datasets.get(key)
        if dataset is None:
            dataset = _org_dataset(table, org_id, self._local_root(name))
            with self._lock:
                self._datasets[key] = dataset
        return dataset

    def _local_root(self, name: str) -> str | None:
        parsed = urlparse(self.lake_uri)
        if parsed.scheme not in ("", "file"):
            return None
        return os.path.join(parsed.path if parsed.scheme == "file" else self.lake_uri, name)

    def _pinned_table(self, ref: TableRef) -> DeltaTable:
        uri = table_uri(self.lake_uri, ref.name)
        if ref.as_of is not None:
            version = self._version_at(ref, uri)
        else:
            assert ref.version is not None
            version = ref.version
        key = (ref.name, version)
        with self._lock:
            table = self._pinned.get(key)
        if table is not None:
            return table
        try:
            table = DeltaTable(uri, version=version, storage_options=self.storage_options)
        except Exception as exc:  # noqa: BLE001 - delta-rs raises a generic error for a missing version
            raise TimeTravelError(f'"{ref.sql_name}": table {ref.name} has no version {version}') from exc
        with self._lock:
            self._pinned[key] = table
        return table

    def _version_at(self, ref: TableRef, uri: str) -> int:
        assert ref.as_of is not None
        table = DeltaTable(uri, storage_options=self.storage_options)
        history = table.history()
        at_ms = ref.as_of.timestamp() * 1000
        versions = [h["version"] for h in history if h.get("timestamp", 0) <= at_ms]
        if not versions:
            raise TimeTravelError(f'"{ref.sql_name}": table {ref.name} did not exist yet at that instant')
        return int(max(versions))

    def _current(self, name: str) -> _Cached:
        now = time.monotonic()
        with self._lock:
            cached = self._tables.get(name)
        if cached is None:
            try:
                table = DeltaTable(table_uri(self.lake_uri, name), storage_options=self.storage_options)
            except Exception as exc:  # noqa: BLE001 - TableNotFoundError and storage errors alike
                raise TableNotFound(name) from exc
            with self._lock:
                cached = self._tables.setdefault(name, _Cached(table, now))
            return cached
        if now - cached.checked_at >= self.refresh_interval_s:
            with cached.lock:
                if now - cached.checked_at >= self.refresh_interval_s:
                    cached.table.update_incremental()
                    cached.checked_at = now
        return cached

    def _describe(self, name: str, table: DeltaTable, version: int) -> TableInfo:
        metadata = table.metadata()
        delta_schema = table.schema()
        schema = pa.schema(delta_schema.to_arrow())  # what queries return, without listing files
        comments = {f.name: f.metadata.get("comment") for f in delta_schema.fields}
        units = {f.name: str(f.metadata["unit"]) for f in delta_schema.fields if f.metadata.get("unit")}
        fields = []
        for f in schema:
            meta = {
                schemas.META_CATALOG_NAME: self.catalog_name,
                schemas.META_DB_SCHEMA_NAME: self.schema_name,
                schemas.META_SCHEMA_NAME: self.schema_name,
                schemas.META_TABLE_NAME: name,
                schemas.META_TYPE_NAME: sql_type_name(f.type),
                schemas.META_IS_READ_ONLY: "1",
                schemas.META_IS_SEARCHABLE: "1",
                schemas.META_IS_AUTO_INCREMENT: "0",
                schemas.META_IS_CASE_SENSITIVE: "1" if pa.types.is_string(f.type) else "0",
            }
            comment = comments.get(f.name)
            if comment:
                meta[schemas.META_REMARKS] = str(comment)
            fields.append(f.with_metadata(meta))
        schema_meta = {schemas.META_REMARKS: metadata.description} if metadata.description else None
        return TableInfo(name, pa.schema(fields, metadata=schema_meta), metadata.description, version, units)


@dataclass(frozen=True)
class OrgDataset:
    """One org's rows of one table version."""

    org_id: str
    files: pads.FileSystemDataset  # the org's files only (partition pruning)
    rows: pads.Dataset  # the same with a row filter on org_id as a second lock: what SQL sees
    local_root: str | None = None  # the table's folder when the lake is on local disk

    @property
    def schema(self) -> pa.Schema:
        return self.files.schema

    def read_whole(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        return read_whole(self.files, self.org_id, batch_rows, local_root=self.local_root)


def _org_dataset(table: DeltaTable, org_id: str, local_root: str | None) -> OrgDataset:
    files = table.to_pyarrow_dataset(file_pruning_predicate=[(PARTITION, "=", org_id)])
    return OrgDataset(org_id, files, files.filter(pc.field(PARTITION) == org_id), local_root)


_LOCAL_FS = pafs.LocalFileSystem()


def read_whole(
    dataset: pads.FileSystemDataset, org_id: str, batch_rows: int, *, local_root: str | None = None
) -> Iterator[pa.RecordBatch]:
    """Every row of an org dataset, in the dataset's schema, decoded `batch_rows` at a time.

    The dataset scanner decodes a whole Parquet row group before its first batch; reading
    each file with `iter_batches` streams within row groups, so decoding overlaps sending and
    memory stays bounded by the batch size. Every file must belong to `org_id`'s partition
    (checked); partition values are added back, columns missing from older files are nulls.
    """
    if not isinstance(dataset, pads.FileSystemDataset):
        raise TypeError("read_whole needs a file-backed dataset")
    schema = dataset.schema
    for fragment in dataset.get_fragments():
        keys = pads.get_partition_keys(fragment.partition_expression)
        if keys.get(PARTITION) != org_id:
            raise PermissionError(f"a file outside the org's partition reached a scan: {fragment.path}")
        parquet = pq.ParquetFile(_open(dataset, fragment.path, local_root), pre_buffer=True)
        physical = parquet.schema_arrow
        columns = [f.name for f in schema if f.name in physical.names and f.name not in keys]
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns, use_threads=True):
            n = batch.num_rows
            arrays = []
            for field in schema:
                if field.name in keys:
                    arrays.append(pa.repeat(pa.scalar(keys[field.name], field.type), n))
                elif field.name in physical.names:
                    column = batch.column(field.name)
                    arrays.append(column if column.type.equals(field.type) else column.cast(field.type))
                else:
                    arrays.append(pa.nulls(n, field.type))
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _open(dataset: pads.FileSystemDataset, path: str, local_root: str | None) -> pa.NativeFile:
    """Local files straight from disk (no Python file-system layer in the read path)."""
    if local_root is not None:
        full = os.path.join(local_root, path)
        if os.path.isfile(full):
            return _LOCAL_FS.open_input_file(full)
    return dataset.filesystem.open_input_file(path)


def sql_type_name(arrow_type: pa.DataType) -> str:
    """The SQL (DuckDB) name of an Arrow type, for ARROW:FLIGHT:SQL:TYPE_NAME."""
    t = arrow_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "VARCHAR"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_int8(t):
        return "TINYINT"
    if pa.types.is_int16(t):
        return "SMALLINT"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_float32(t):
        return "FLOAT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP WITH TIME ZONE" if t.tz else "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BLOB"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{sql_type_name(t.value_type)}[]"
    if pa.types.is_struct(t):
        return "STRUCT"
    if pa.types.is_map(t):
        return "MAP"
    return str(t).upper()


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """A Flight SQL filter pattern (`%` any run, `_` one char, `\\` escapes) as a regex."""
    out: list[str] = []
    escaped = False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("^" + "".join(out) + "$", re.DOTALL)
