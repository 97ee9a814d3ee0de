"""Canonical JSON: the exact bytes the audit chain hashes.

Sorted keys, no whitespace, UTF-8. Floats never reach hashed bytes as floats
(languages format them differently): they become decimal strings. Timestamps are
UTC with microseconds in one fixed format.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import Enum

import orjson

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class CanonicalError(ValueError):
    pass


def format_ts(ts: dt.datetime) -> str:
    if ts.tzinfo is None:
        raise CanonicalError("timestamps must be timezone-aware")
    u = ts.astimezone(dt.UTC)
    # Four-digit years always (strftime gives "999" for year 999; PostgreSQL gives "0999").
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}Z"


def parse_ts(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, TS_FORMAT).replace(tzinfo=dt.UTC)


def normalize(value: object) -> object:
    """JSON-safe value with every float as a decimal string and every timestamp fixed-format."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise CanonicalError("NaN and infinity cannot be recorded")
        return format(Decimal(repr(value)), "f") if abs(value) < 1e16 else repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CanonicalError("NaN and infinity cannot be recorded")
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return format_ts(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return normalize(value.value)
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CanonicalError("object keys must be strings")
            out[k] = normalize(v)
        return out
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    if hasattr(value, "model_dump"):
        return normalize(value.model_dump(mode="json"))
    raise CanonicalError(f"cannot record a value of type {type(value).__name__}")


def canonical_bytes(value: object) -> bytes:
    return orjson.dumps(normalize(value), option=orjson.OPT_SORT_KEYS)
