"""Typed report parameters: declared by a definition, checked when a report is executed, and written into the SQL
as literals of their type (`$name` in the SQL). A value is never pasted as text: an integer is an int, a date an
ISO date, a string a quoted SQL string with its quotes doubled, so no value can change the statement's shape."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from domain.errors import Invalid
from domain.reports.models import ParameterSpec

PLACEHOLDER = re.compile(r"\$([a-z][a-z0-9_]{0,62})\b")


def placeholders(sql: str) -> set[str]:
    return set(PLACEHOLDER.findall(sql))


def check_declared(sql: str, specs: Sequence[ParameterSpec]) -> None:
    """Every `$name` in the SQL is a declared parameter (Invalid naming the others)."""
    declared = {p.name for p in specs}
    unknown = sorted(placeholders(sql) - declared)
    if unknown:
        raise Invalid("the SQL names parameters the definition does not declare",
                      reasons=[f"sql: ${n} is not a declared parameter" for n in unknown])


def _no() -> Any:
    raise ValueError("not a string")


def _typed(spec: ParameterSpec, value: Any) -> Any:
    t = spec.type
    if t == "integer":
        if type(value) is not int:
            raise ValueError("an integer")
        return value
    if t == "number":
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError("a number")
        return float(value)
    if t == "boolean":
        if type(value) is not bool:
            raise ValueError("true or false")
        return value
    if t == "date":
        try:
            return dt.date.fromisoformat(value).isoformat() if isinstance(value, str) else _no()
        except ValueError:
            raise ValueError("a date (YYYY-MM-DD)") from None
    if t == "timestamp":
        try:
            instant = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else _no()
        except ValueError:
            raise ValueError("a timestamp (RFC 3339 with its offset)") from None
        if instant.tzinfo is None:
            raise ValueError("a timestamp with its offset")
        return instant.astimezone(dt.UTC).isoformat()
    if not isinstance(value, str) or len(value) > 1000:
        raise ValueError("a string (at most 1000 characters)")
    if spec.choices and value not in spec.choices:
        raise ValueError(f"one of {', '.join(spec.choices)}")
    return value


def resolve(specs: Sequence[ParameterSpec], values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters' values: given ones checked against their type, missing ones from their default; Invalid
    naming every parameter that is wrong, missing, or not declared."""
    values = dict(values or {})
    problems = [f"parameters.{k}: not a parameter of this report" for k in sorted(values)
                if k not in {p.name for p in specs}]
    out: dict[str, Any] = {}
    for spec in specs:
        raw = values.get(spec.name, spec.default)
        if raw is None:
            if spec.required:
                problems.append(f"parameters.{spec.name}: required")
            out[spec.name] = None
            continue
        try:
            out[spec.name] = _typed(spec, raw)
        except ValueError as exc:
            problems.append(f"parameters.{spec.name}: expected {exc.args[0] if exc.args else spec.type}")
    if problems:
        raise Invalid("the report's parameters are not right", reasons=problems)
    return out


def literal(spec: ParameterSpec, value: Any) -> str:
    if value is None:
        return "NULL"
    t = spec.type
    if t == "boolean":
        return "TRUE" if value else "FALSE"
    if t == "integer":
        return str(int(value))
    if t == "number":
        return repr(float(value))
    text = str(value).replace("'", "''")
    if t == "date":
        return f"DATE '{text}'"
    if t == "timestamp":
        return f"TIMESTAMPTZ '{text}'"
    return f"'{text}'"


def bind(sql: str, specs: Sequence[ParameterSpec], values: Mapping[str, Any]) -> str:
    """The SQL with each `$name` replaced by its value as a typed literal."""
    by_name = {p.name: p for p in specs}

    def sub(match: re.Match[str]) -> str:
        spec = by_name.get(match.group(1))
        if spec is None:
            raise Invalid(f"${match.group(1)} is not a declared parameter")
        return literal(spec, values.get(spec.name))

    return PLACEHOLDER.sub(sub, sql)
