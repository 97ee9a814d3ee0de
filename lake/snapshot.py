"""One version of a Delta table as files: what a backup copies and a restore writes back.

A table at version v is its log up to v (commit files, and checkpoints taken at or before v) and the data
files that version's snapshot reads. Files of later versions are left out, so a restored table opens at
exactly v; files that only older versions read (compacted or vacuumed away) are left out too, so time travel
in a restored table starts at v.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import orjson
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from deltalake.fs import DeltaStorageHandler

from lake.writer import Lake

_LOG = "_delta_log"
_VERSIONED = re.compile(r"(\d{20})\.(json|checkpoint(\.\d+\.\d+)?\.parquet|crc)")
_CHUNK = 1 << 20


class _Stream(Protocol):
    def write(self, data: bytes) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class TableVersion:
    name: str
    version: int
    files: tuple[str, ...]  # paths under the lake root, log first


def storage(lake: Lake) -> pafs.FileSystem:
    """The lake root as a filesystem (a folder or an object store), paths relative to it."""
    return pafs.PyFileSystem(DeltaStorageHandler(lake.root, lake.storage_options or None))


def current_versions(lake: Lake) -> dict[str, int]:
    """Every table's latest version."""
    out: dict[str, int] = {}
    for name in lake.tables():
        lake.forget(name)  # a fresh look, not a cached object
        dt = lake.open(name)
        if dt is not None:
            out[name] = dt.version()
    return out


def newest_version_within(lake: Lake, name: str, newest: int, limits: Mapping[str, int]) -> int | None:
    """The newest version ≤ `newest` whose app transactions are all ≤ `limits` (app id → version): the table
    as it was before it recorded anything past them. None if even version 0 is past them."""
    for v in range(newest, -1, -1):
        dt = DeltaTable(lake.uri(name), version=v, storage_options=lake.storage_options or None)
        if all((dt.transaction_version(app) or 0) <= limit for app, limit in limits.items()):
            return v
    return None


def table_files(lake: Lake, name: str, version: int) -> TableVersion:
    """The files that make up `name` at `version`."""
    fs = storage(lake)
    log: list[str] = []
    checkpoint_marker: str | None = None
    for info in fs.get_file_info(pafs.FileSelector(f"{name}/{_LOG}", recursive=False)):
        if info.type != pafs.FileType.File:
            continue
        m = _VERSIONED.fullmatch(info.base_name)
        if m and int(m.group(1)) <= version:
            log.append(info.path)
        elif info.base_name == "_last_checkpoint":
            checkpoint_marker = info.path
    if checkpoint_marker is not None:
        with fs.open_input_stream(checkpoint_marker) as fh:
            if int(orjson.loads(fh.read())["version"]) <= version:
                log.append(checkpoint_marker)  # else readers find the newest checkpoint ≤ version by listing
    dt = DeltaTable(lake.uri(name), version=version, storage_options=lake.storage_options or None)
    prefix = lake.uri(name) + "/"
    data = []
    for uri in dt.file_uris():
        if not uri.startswith(prefix):
            raise ValueError(f"{name}: data file {uri} lies outside the table")
        data.append(f"{name}/{uri[len(prefix):]}")
    return TableVersion(name, version, tuple(sorted(log)) + tuple(sorted(data)))


def read_chunks(lake: Lake, path: str) -> Iterator[bytes]:
    with storage(lake).open_input_stream(path) as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def write_file(lake: Lake, path: str, chunks: Iterator[bytes]) -> None:
    if "://" not in lake.root:
        Path(lake.root).mkdir(parents=True, exist_ok=True)  # a folder root must exist; a prefix need not
    # The object store's own stream: deltalake's pyarrow wrapper hands it pyarrow Buffers, which it refuses
    # (deltalake 1.6); it creates parent folders itself.
    out = cast(_Stream, DeltaStorageHandler(lake.root, lake.storage_options or None)._handler.open_output_stream(
        path, None))  # its stub lacks close(), which it has
    try:
        for chunk in chunks:
            out.write(chunk)
    finally:
        out.close()


def is_empty(lake: Lake) -> bool:
    """Nothing at all under the root (a missing root is empty)."""
    try:
        return not storage(lake).get_file_info(pafs.FileSelector("", recursive=False, allow_not_found=True))
    except (FileNotFoundError, TableNotFoundError):
        return True
