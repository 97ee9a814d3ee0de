"""What the platform can store, checked once at the door: every request model derives from `Input`.

PostgreSQL text and jsonb hold no NUL and no lone surrogate; the audit chain's canonical form
(domain/canonical.py) holds integers of 64 bits at most, and a jsonb number comes back as an integer
when it has no fraction (1e308 returns as a 309-digit integer). A value that gets past the API and
cannot be written makes the workflow's activity fail on every retry, so it is refused here with 422,
naming the field, instead.

- text: no control characters except tab, newline and carriage return (free text keeps its lines);
  no lone surrogates. Keys of free-form objects take no control character at all.
- numbers: finite and within ±(2**63 - 1), the stored range; a bigger magnitude goes in as text.
- strings and collections: every str field of a request model states its `max_length`; free-form
  values (run parameters, form values, protocol documents) are bounded in depth, entries and text.

Query and path parameters go through the same `problem()` (api/app.py), so a NUL in a filter is a
422 too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1  # integer columns (version numbers)
MAX_TEXT = 10_000  # a string inside a free-form value (form text fields have the same cap)
MAX_KEY = 128  # a key of a free-form object
MAX_ITEMS = 1_000  # entries of one object or array inside a free-form value
MAX_DEPTH = 24  # nesting of a free-form value (a protocol document nests its steps deeply)

# Allowed in free text; every other C0/C1 control character is refused.
_TEXT_CONTROLS = frozenset("\t\n\r")

# The same rules as JSON Schema patterns, stated in /openapi.json (api/openapi.py) so a client knows them.
# (Lone surrogates, refused too, are left out: UTF-8 text cannot hold them, nor can every regex engine.)
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
KEY_PATTERN = rf"^[^\x00-\x1f\x7f-\x9f]{{1,{MAX_KEY}}}$"


def _char_problem(text: str, *, allowed: frozenset[str]) -> str | None:
    for char in text:
        code = ord(char)
        if (code < 0x20 or 0x7F <= code <= 0x9F) and char not in allowed:
            return f"control character U+{code:04X} is not allowed"
        if 0xD800 <= code <= 0xDFFF:
            return f"lone surrogate U+{code:04X} is not valid Unicode text"
    return None


def text_problem(text: str) -> str | None:
    """Why this free text cannot be stored, or None."""
    return _char_problem(text, allowed=_TEXT_CONTROLS)


def key_problem(key: str) -> str | None:
    """Why this key (of a free-form object, a checklist, a query parameter) cannot be stored, or None."""
    if not key:
        return "an empty key is not allowed"
    if len(key) > MAX_KEY:
        return f"a key is at most {MAX_KEY} characters"
    return _char_problem(key, allowed=frozenset())


def number_problem(number: int | float) -> str | None:
    if isinstance(number, bool):
        return None
    if isinstance(number, float) and number != number or number in (float("inf"), float("-inf")):
        return "NaN and infinity cannot be recorded"
    if abs(number) > INT64_MAX:
        return f"numbers are at most ±{INT64_MAX} (send a bigger one as text)"
    return None


def problem(value: object, path: str = "", depth: int = 0, *, free_form: bool = False) -> str | None:
    """The first reason `value` cannot be stored, prefixed with where it is inside the value; None when it can.

    Strings at the top of a model field have their length checked by the field's own `max_length`; strings
    inside free-form values by MAX_TEXT."""
    where = f"{path}: " if path and depth else ""  # the field itself is named by the error's location
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if free_form and len(value) > MAX_TEXT:
            return f"{where}text is at most {MAX_TEXT} characters"
        why = text_problem(value)
        return f"{where}{why}" if why else None
    if isinstance(value, int | float):
        why = number_problem(value)
        return f"{where}{why}" if why else None
    if isinstance(value, BaseModel):
        return None  # a nested request model checks itself
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if depth >= MAX_DEPTH:
            return f"{where}nested deeper than {MAX_DEPTH} levels"
        if len(value) > MAX_ITEMS:
            return f"{where}more than {MAX_ITEMS} entries"
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"{where}keys must be text"
                inner = f"{path}.{key}" if path else key
                why = key_problem(key)
                if why:
                    return f"{f'{path}: ' if path else ''}key {key!r}: {why}"
                why = problem(item, inner, depth + 1, free_form=True)
                if why:
                    return why
        else:
            for i, item in enumerate(value):
                why = problem(item, f"{path}[{i}]" if path else f"[{i}]", depth + 1, free_form=True)
                if why:
                    return why
    return None  # dates, uuids, decimals parsed by pydantic: typed values the database takes as they are


def _refuse(why: str) -> PydanticCustomError:
    return PydanticCustomError("unstorable", "{why}", {"why": why})


def _checked(value: str) -> str:
    why = problem(value)
    if why:
        raise _refuse(why)
    return value


# A key (of a checklist, a free-form object) as the schema states it; checked by `key_problem`.
Key = Annotated[str, WithJsonSchema({"type": "string", "pattern": KEY_PATTERN})]

# For parameters that are not part of a model (Body(...) and the like).
SafeText = Annotated[str, AfterValidator(_checked)]


class Input(BaseModel):
    """The base of every request model: unknown fields refused, and every field's value storable."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: object, info: ValidationInfo) -> object:
        why = problem(value, info.field_name or "")
        if why:
            raise _refuse(why)
        return value


_INSTANT_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _instant_text(value: object) -> object:
    # A body's instant is RFC 3339 text with its offset (what `format: date-time` promises): pydantic alone would
    # take a number as a Unix time.
    if isinstance(value, str) and _INSTANT_TEXT.fullmatch(value) or isinstance(value, dt.datetime):
        return value
    raise ValueError("an instant with its offset, as in 2026-05-01T09:30:00Z")


def _date_text(value: object) -> object:
    if isinstance(value, str) and _DATE_TEXT.fullmatch(value) or isinstance(value, dt.date):
        return value
    raise ValueError("a date, as in 2026-05-01")


def _aware_instant(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("an instant needs its offset (Z or ±hh:mm)")
    return value


BodyInstant = Annotated[dt.datetime, BeforeValidator(_instant_text), AfterValidator(_aware_instant)]
"""An instant in a request body: RFC 3339 text with its offset, nothing else."""
BodyDate = Annotated[dt.date, BeforeValidator(_date_text)]
"""A date in a request body: YYYY-MM-DD text, nothing else."""
