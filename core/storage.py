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
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import urlparse

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


class S3ObjectStore:
    """Objects under `s3://bucket/prefix/` on AWS S3 or an S3-compatible server. Write-once by the server's own
    check: every put carries `If-None-Match: *`, so of two concurrent puts of one key exactly one is stored and
    the other is answered 412 (a key found by the cheaper HEAD first is not uploaded at all). A server that
    ignored the condition would break the promise: AWS S3, MinIO, R2 and moto honour it."""

    def __init__(self, bucket: str, prefix: str = "", storage_options: dict[str, str] | None = None) -> None:
        import boto3  # only deployments with an object store pay for importing it
        from botocore.config import Config

        opts = {k.upper(): v for k, v in (storage_options or {}).items()}
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client: Any = boto3.client(
            "s3", endpoint_url=opts.get("AWS_ENDPOINT_URL"), region_name=opts.get("AWS_REGION", "us-east-1"),
            aws_access_key_id=opts.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=opts.get("AWS_SECRET_ACCESS_KEY"),
            config=Config(retries={"mode": "standard", "max_attempts": 5}))

    @classmethod
    def from_uri(cls, uri: str, storage_options: dict[str, str] | None = None) -> S3ObjectStore:
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise ValueError(f"an s3:// URL names a bucket: {uri}")
        return cls(parsed.netloc, parsed.path, storage_options)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_once(self, key: str, source: BinaryIO) -> bool:
        from botocore.exceptions import ClientError

        full = self._key(key)
        if self.exists(key):
            return False
        try:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=_seekable(source), IfNoneMatch="*")
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            # 412: the key exists; 409: another conditional put of the key was in flight and won.
            if status == 412 or (status == 409 and self.exists(key)):
                return False
            raise
        return True

    def open(self, key: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectMissing(key) from None
            raise
        return cast(BinaryIO, answer["Body"])

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise
        return True


def _seekable(source: BinaryIO) -> BinaryIO:
    """The S3 client signs a body it can measure and rewind: a pipe or socket is spooled first (to disk past
    8 MiB)."""
    try:
        if source.seekable():
            return source
    except (AttributeError, ValueError):
        pass
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - handed to the caller's put
    shutil.copyfileobj(source, spool, 1 << 20)
    spool.seek(0)
    return cast(BinaryIO, spool)


def open_store(uri: str, storage_options: dict[str, str] | None = None) -> ObjectStore:
    """The store at `uri`: a folder path (or file:// URL), or `s3://bucket/prefix` with its storage options
    (core/config.py `Settings.resolved_objects_storage_options`)."""
    if uri.startswith("file://"):
        uri = uri.removeprefix("file://")
    if uri.startswith(("s3://", "s3a://")):
        return S3ObjectStore.from_uri(uri, storage_options)
    if "://" in uri:
        raise ValueError(f"unsupported object store URL scheme: {uri.split('://', 1)[0]}://")
    return LocalObjectStore(uri)
