"""Reading a `multipart/form-data` upload as it streams: the file part's bytes go straight to a sink (a Spool),
the few text fields are kept, bounded; nothing else is held.

Used by the API (POST /api/v1/evidence) and the task page's upload, so both refuse the same things the same
way: not multipart (415), unreadable or over the part and field limits (422), no file or two files (422).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from domain.errors import Invalid
from domain.evidence.content import UnsupportedType, media_type
from domain.limits import text_problem

FILE_FIELD = "file"
MAX_PARTS = 12
MAX_FIELD_BYTES = 1024  # a text field: an id, a key, a token


@dataclass
class UploadForm:
    """The text fields and what the file part said of itself (its bytes went to the sink)."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    file_type: str | None = None
    has_file: bool = False


class _Reader:
    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self.sink = sink
        self.form = UploadForm()
        self.parts = 0
        self.problems: list[str] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._skip = False
        self._value = bytearray()
        self.ended = False

    def on_end(self) -> None:
        self.ended = True

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise Invalid(f"the form has more than {MAX_PARTS} parts", reasons=[f"body: more than {MAX_PARTS} parts"])
        self._headers, self._name, self._is_file, self._skip, self._value = {}, None, False, False, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        kind, options = parse_options_header(self._headers.get("content-disposition", b""))
        if kind != b"form-data" or b"name" not in options:
            raise Invalid("a part of the form has no name", reasons=["body: a part without a form-data name"])
        self._name = options[b"name"].decode("utf-8", "replace")
        self._is_file = b"filename" in options
        self._skip = self._is_file and not options[b"filename"]  # a form's file input left empty
        if self._is_file and not self._skip:
            if self._name != FILE_FIELD:
                raise Invalid(f"only one file is taken, as the field {FILE_FIELD!r}",
                              reasons=[f"{self._name[:64]}: a file where none is taken"])
            if self.form.has_file:
                raise Invalid("one file per upload", reasons=[f"{FILE_FIELD}: sent twice"])
            self.form.has_file = True
            self.form.filename = options[b"filename"].decode("utf-8", "replace")
            declared = self._headers.get("content-type")
            self.form.file_type = declared.decode("latin-1") if declared is not None else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._skip:
            return
        if self._is_file:
            self.sink(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise Invalid(f"the field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes",
                          reasons=[f"{(self._name or '?')[:64]}: longer than {MAX_FIELD_BYTES} bytes"])

    def on_part_end(self) -> None:
        if self._is_file or self._name is None:
            return
        name = self._name
        try:
            value = bytes(self._value).decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid(f"the field {name[:64]!r} is not UTF-8 text", reasons=[f"{name[:64]}: not UTF-8"]) from None
        why = text_problem(name) or text_problem(value)
        if why:
            raise Invalid(f"the field {name[:64]!r}: {why}", reasons=[f"{name[:64]}: {why}"])
        if name in self.form.fields:
            raise Invalid(f"the field {name[:64]!r} is sent twice", reasons=[f"{name[:64]}: sent twice"])
        self.form.fields[name] = value


async def read_upload(content_type: str | None, chunks: AsyncIterator[bytes], sink: Callable[[bytes], None]
                      ) -> UploadForm:
    """Read the whole body: the file part's bytes to `sink` as they arrive (it may raise, e.g. TooLarge, to stop
    there), the text fields into the answer. UnsupportedType when the body is not multipart/form-data; Invalid
    when it cannot be read or has no file."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        said = media_type(content_type) or "no Content-Type"
        raise UnsupportedType(f"send the file as multipart/form-data (a form with a `{FILE_FIELD}` field), not "
                              f"{said[:100]}", reasons=[f"body: {said[:100]}, not multipart/form-data"])
    reader = _Reader(sink)
    callbacks = {name: getattr(reader, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
        "on_part_data", "on_part_end", "on_end")}
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]  # a TypedDict of these callables
        async for chunk in chunks:
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise Invalid("the body is not a readable multipart form", reasons=[f"body: {str(exc)[:200]}"]) from None
    if not reader.ended:
        raise Invalid("the body ended before the form did (no closing boundary)",
                      reasons=["body: cut short"])
    if not reader.form.has_file:
        raise Invalid(f"no file: send it as the form field {FILE_FIELD!r}", reasons=[f"{FILE_FIELD}: required"])
    return reader.form
