"""Cursor pagination and name/code search for every list: newest first, keyset on (time, id).

A cursor is the opaque, URL-safe encoding of the last row's sort key; the next page continues strictly below
it, so rows created meanwhile never shift a page and no row is returned twice. Search is PostgreSQL full-text
search (`simple` configuration: codes and names are not English prose) with prefix matching, so typing `S-0001`
or `agro` finds what a person means.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from domain.errors import Invalid

T = TypeVar("T")

CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,200}$"
MAX_SEARCH_LENGTH = 200
_WORD = re.compile(r"[^\W_]+")  # the punctuation the search columns split on, `_` included


class Page(BaseModel, Generic[T]):
    """One page of a list; `next_cursor` continues it (null on the last page)."""

    items: list[T]
    next_cursor: str | None = None


Value = dt.datetime | uuid.UUID | None


def encode_values(values: list[Value]) -> str:
    """An opaque cursor for a sort key of times, ids and nulls."""
    parts = ["" if v is None else v.astimezone(dt.UTC).isoformat() if isinstance(v, dt.datetime) else str(v)
             for v in values]
    return base64.urlsafe_b64encode("|".join(parts).encode()).decode().rstrip("=")


def decode_values(cursor: str, kinds: list[type[dt.datetime] | type[uuid.UUID]], *,
                  nullable: frozenset[int] = frozenset()) -> list[Value]:
    """The sort key in `cursor`, checked against its `kinds` (positions in `nullable` may be null); Invalid
    (422) for anything this API did not hand out."""
    try:
        if not re.fullmatch(CURSOR_PATTERN, cursor):
            raise ValueError("pattern")
        parts = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
        if len(parts) != len(kinds):
            raise ValueError("arity")
        values: list[Value] = []
        for i, (part, kind) in enumerate(zip(parts, kinds, strict=True)):
            if part == "" and i in nullable:
                values.append(None)
            elif kind is dt.datetime:
                at = dt.datetime.fromisoformat(part)
                if at.tzinfo is None:
                    raise ValueError("naive time")
                values.append(at)
            else:
                values.append(uuid.UUID(part))
        return values
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor is not valid", reasons=["cursor: not a cursor returned by this API"]) from None


@dataclass(frozen=True)
class Keyset:
    """The sort key of the last row on a page: (time, id), newest first."""

    at: dt.datetime
    id: uuid.UUID

    def encode(self) -> str:
        return encode_values([self.at, self.id])

    @classmethod
    def decode(cls, cursor: str) -> Keyset:
        at, ident = decode_values(cursor, [dt.datetime, uuid.UUID])
        assert isinstance(at, dt.datetime) and isinstance(ident, uuid.UUID)
        return cls(at, ident)


def after(cursor: str | None, at_column: str, id_column: str) -> tuple[str, dict[str, object]]:
    """The SQL condition (and its parameters) for rows after `cursor` in (at DESC, id DESC) order; `TRUE`
    without a cursor."""
    if cursor is None:
        return "TRUE", {}
    k = Keyset.decode(cursor)
    return f"({at_column}, {id_column}) < (:cursor_at, :cursor_id)", {"cursor_at": k.at, "cursor_id": k.id}


def next_cursor(rows: list[T], limit: int, *,
                at: str = "created_at", ident: str = "id") -> str | None:
    """The cursor after the last of `rows` when the page is full (the caller fetched `limit` rows), else None."""
    if len(rows) < limit or not rows:
        return None
    last = rows[-1]
    return Keyset(getattr(last, at), getattr(last, ident)).encode()


def search_query(text: str | None) -> str | None:
    """A tsquery (for `to_tsquery('simple', …)`) matching every word of `text` as a prefix; None for no search.

    Only word characters reach the query, so no input can be a tsquery syntax error."""
    if text is None:
        return None
    if len(text) > MAX_SEARCH_LENGTH:
        raise Invalid("search text is too long", reasons=[f"q: at most {MAX_SEARCH_LENGTH} characters"])
    words = _WORD.findall(text.lower())
    if not words:
        return None
    return " & ".join(f"{w}:*" for w in words[:16])
