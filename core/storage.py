"""Where files live: a content-addressed, write-once object store (evidence files, report artifacts).

One small interface with a local-folder implementation (the default, under the data folder) and an object-store
one for production. Keys are relative paths such as `evidence/<org>/<sha256>`: callers put an organization's
files under its own prefix, so a storage credential can be scoped to one organization. A key is written once:
`put_once` never replaces existing bytes, which is what makes "nothing is ever silently overwritten" hold for
files as it does for rows.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
MAX_KEY_LENGTH = 512


class ObjectMissing(LookupError):
    """No object under this key."""


def check_key(key: str) -> str:
    """The key, or ValueError: relative segments of letters, digits, `._-`, no `..`, no leading dot."""
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise ValueError(f"invalid object key {key[:80]!r}")
    return key


class ObjectStore(Protocol):
    """Write-once storage of immutable objects."""

    def put_once(self, key: str, source: BinaryIO) -> bool:
        """Store the bytes read from `source` (from its current position) under `key` unless the key exists;
        True when stored now, False when the key already held an object (left unchanged)."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The object's bytes for reading; ObjectMissing when there is none."""
        ...

    def exists(self, key: str) -> bool: ...


class LocalObjectStore:
    """Objects as read-only files under a root folder. A put writes a temporary file in the target folder and
    hard-links it into place: the link fails when the name exists, so two concurrent puts of one key store one
    file and a crash never leaves a partial object under the key."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_once(self, key: str, source: BinaryIO) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        finally:
            os.unlink(tmp)

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


def open_store(uri: str, storage_options: dict[str, str] | None = None) -> ObjectStore:
    """The store at `uri`: a folder path (or file:// URL) for now; object-store URLs come with their own class."""
    if uri.startswith("file://"):
        uri = uri.removeprefix("file://")
    if "://" in uri:
        raise ValueError(f"unsupported object store URL scheme: {uri.split('://', 1)[0]}://")
    return LocalObjectStore(uri)
