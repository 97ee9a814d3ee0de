"""An uploaded file's bytes: spooled to a temporary file while they arrive, measured and hashed on the way, and
their type read from the content (magic bytes), never from the name.

`Spool` never holds the file in memory: each chunk is hashed (SHA-256), counted against the limit, checked for
being text, and written to an anonymous temporary file, which disappears when it is closed. Past the limit it
raises `TooLarge` at once, so a too large upload stops being read there.

What a lab keeps as evidence, and what is accepted (`ALLOWED`): photos (JPEG, PNG, HEIC/HEIF from phones and
tablets, WebP, TIFF from microscopes and scanners), PDF printouts and reports, and plain text or CSV exports of
instruments. The type is what the bytes are (the `filetype` library's signatures; text is UTF-8 without control
characters but tab, line feed, form feed and carriage return); a type the client declares must agree with it.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

import filetype

from domain.errors import DomainError, Invalid

HEAD_BYTES = 8192  # what the signatures look at (filetype reads as many)
MAX_FILENAME = 200


class TooLarge(DomainError):
    """The upload is larger than the limit: nothing is stored."""

    status = 413


class UnsupportedType(DomainError):
    """The file's content is not a type evidence may have, or not the type it was sent as: nothing is stored."""

    status = 415


@dataclass(frozen=True)
class Kind:
    mime: str
    name: str  # in the lab's words, for refusals
    declared_as: frozenset[str]  # the media types a client may send it as (besides a generic one)


def _kind(mime: str, name: str, *aliases: str) -> Kind:
    return Kind(mime, name, frozenset({mime, *aliases}))


_TEXT_TYPES = ("text/plain", "text/csv", "text/tab-separated-values", "application/csv", "text/x-csv",
               "application/vnd.ms-excel")  # Windows browsers send .csv as the last one
ALLOWED: dict[str, Kind] = {k.mime: k for k in (
    _kind("image/jpeg", "a JPEG image", "image/jpg", "image/pjpeg"),
    _kind("image/png", "a PNG image", "image/x-png"),
    _kind("image/heic", "a HEIC image", "image/heif", "image/heic-sequence", "image/heif-sequence"),
    _kind("image/webp", "a WebP image"),
    _kind("image/tiff", "a TIFF image", "image/tif", "image/x-tiff"),
    _kind("application/pdf", "a PDF document", "application/x-pdf"),
    _kind("text/plain", "plain text", *_TEXT_TYPES),
)}
GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream"})  # "the client does not know"
ACCEPTED = sorted({*(m for k in ALLOWED.values() for m in k.declared_as)})

# Text is UTF-8 without other control characters (a NUL or ESC means a binary file or a terminal capture).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Spooled:
    """What the bytes are: their hash, size, first bytes, whether they are text."""

    sha256: str
    size: int
    head: bytes
    text: bool


class Spool:
    """An upload's bytes on their way in (see the module doc); a context manager that removes them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.file: BinaryIO = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._hash = hashlib.sha256()
        self._size = 0
        self._head = bytearray()
        self._decoder: codecs.IncrementalDecoder | None = codecs.getincrementaldecoder("utf-8")("strict")

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        data = bytes(chunk)
        self._size += len(data)
        if self._size > self.limit:
            raise TooLarge(f"the file is larger than {self.limit} bytes ({_mib(self.limit)}): not stored",
                           reasons=[f"file: larger than {self.limit} bytes"])
        self._hash.update(data)
        if len(self._head) < HEAD_BYTES:
            self._head += data[:HEAD_BYTES - len(self._head)]
        if self._decoder is not None:
            try:
                if _CONTROL.search(self._decoder.decode(data)):
                    self._decoder = None
            except UnicodeDecodeError:
                self._decoder = None
        self.file.write(data)

    def finish(self) -> Spooled:
        """The bytes' facts; the file rewound for reading."""
        text = self._decoder is not None
        if self._decoder is not None:
            try:
                self._decoder.decode(b"", final=True)  # a multi-byte character cut at the end is not text
            except UnicodeDecodeError:
                text = False
        self.file.flush()
        self.file.seek(0)
        return Spooled(self._hash.hexdigest(), self._size, bytes(self._head), text)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.3g} MiB" if n >= 1 << 20 else f"{n / 1024:.3g} KiB"


def media_type(value: str | None) -> str:
    """`Image/JPEG; charset=x` → `image/jpeg`."""
    return (value or "").split(";", 1)[0].strip().lower()


def content_type_of(spooled: Spooled, declared: str | None, filename: str) -> str:
    """The media type evidence is stored and served with: what the bytes are, in the declared words where they
    agree (a CSV is text whose name or declared type says CSV). UnsupportedType (415) with the reason, or Invalid
    (422) for an empty file."""
    if spooled.size == 0:
        raise Invalid("the file is empty: nothing to keep as evidence", reasons=["file: empty"])
    said = media_type(declared)
    guess = filetype.guess(spooled.head)
    if guess is not None and guess.mime in ALLOWED:
        kind = ALLOWED[guess.mime]
    elif spooled.text:  # before other signatures: a CSV may begin with "BM", a bitmap's two letters
        kind = ALLOWED["text/plain"]
    elif guess is not None:
        raise UnsupportedType(
            f"the file's content is {guess.mime} (.{guess.extension}), which is not kept as evidence: "
            f"send a photo (JPEG, PNG, HEIC, WebP, TIFF), a PDF, or a text or CSV file",
            reasons=[f"file: content is {guess.mime}"])
    else:
        raise UnsupportedType(
            "the file's content is not a type kept as evidence (a photo: JPEG, PNG, HEIC, WebP, TIFF; a PDF; "
            "UTF-8 text or CSV), whatever its name says", reasons=["file: content of an unknown type"])
    if said not in GENERIC and said not in kind.declared_as:
        raise UnsupportedType(
            f"the file was sent as {said[:100]} but its content is {kind.name} ({kind.mime}): send it with its "
            f"own type", reasons=[f"file: declared {said[:100]}, content is {kind.mime}"])
    if kind.mime != "text/plain":
        return kind.mime
    lowered = filename.lower()
    if said == "text/tab-separated-values" or lowered.endswith((".tsv", ".tab")):
        return "text/tab-separated-values"
    if said in ("text/csv", "application/csv", "text/x-csv", "application/vnd.ms-excel") or lowered.endswith(".csv"):
        return "text/csv"
    return "text/plain"


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\"\\/:*?<>|;]+")


def safe_filename(raw: str | None) -> str:
    """The name a file is kept and served under: its last path segment, NFC, without control or other unprintable
    characters, quotes, separators or characters Windows refuses, at most 200 characters (the extension kept);
    `evidence` when nothing is left."""
    name = re.split(r"[\\/]", unicodedata.normalize("NFC", raw or ""))[-1]
    name = "".join(c if c.isprintable() else "_" for c in _UNSAFE.sub("_", name)).strip(" ._")
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:MAX_FILENAME - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else name[:MAX_FILENAME]
    return name.strip(" ._") or "evidence"


def content_disposition(filename: str) -> str:
    """`attachment`, with the name in ASCII (others replaced by `_`) and in full as RFC 5987 UTF-8."""
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def served_type(content_type: str) -> str:
    """The Content-Type a stored file is sent with: text says it is UTF-8 (it was checked to be)."""
    return content_type + ("; charset=utf-8" if content_type.startswith("text/") else "")


def chunks(content: BinaryIO, size: int = 1 << 16) -> Iterator[bytes]:
    """The bytes of an open object, chunk by chunk; closes it at the end (or when the download stops)."""
    with content:
        while chunk := content.read(size):
            yield chunk
