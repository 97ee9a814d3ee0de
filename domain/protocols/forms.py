"""Check and normalize what a technician submits for a task: form values and checklist confirmations.

Pure and quick, so a workflow Update validator may call it. Normalized values (`normalize_values`) are
JSON-safe and canonical, fit for hashing into the audit log:

- number: decimal text; with a precision, exactly that many decimal places ("7.5" at precision 2 ->
  "7.50"), without one, no trailing zeros ("7.50" -> "7.5"). Floats are read through their shortest
  repr, so 0.1 stays "0.1". Never a float.
- integer: int. boolean: bool. text, choice, refs: the string as submitted.
- datetime: UTC with microseconds, "2024-05-01T07:30:00.000000Z" (the audit log's one timestamp
  format, domain/canonical.py); a timezone is required on input.
- date: "YYYY-MM-DD".
- every field of the form is present; a field left empty ("" or null) is null.

`typed_values` gives the same values as Python types for the lake (Decimal, int, datetime, date, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Context, Decimal
from typing import Any

from domain.protocols.expressions import decimal_places, decimal_text, read_number
from domain.protocols.plan import FormField, Problem, TaskNode

JsonValue = str | int | bool | None

MAX_TEXT_LENGTH = 10_000  # longer write-ups go in as evidence: Temporal payloads must stay small
MAX_REF_LENGTH = 128
MAX_DECIMAL_PLACES = 12  # for number fields without a precision
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # as domain.canonical, which the sandbox cannot import (orjson)
_NUMBER_LIMIT = Decimal(10) ** 18
_EXACT = Context(prec=60)  # wide enough that quantizing any accepted number is exact


class SubmissionError(ValueError):
    """Values that do not fit the form; `problems` lists every one."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems


class _Invalid(Exception):
    pass


def validate_submission(
    node: TaskNode, values: Mapping[str, object], checklist: Mapping[str, bool] | Sequence[str]
) -> list[Problem]:
    """Every problem with the submission, e.g. `values.ph: above max 7.5`; empty when it can be accepted."""
    problems = _value_problems(node, values)
    confirmed = (
        {key for key, ok in checklist.items() if ok is True} if isinstance(checklist, Mapping) else set(checklist)
    )
    listed = [item.key for item in node.checklist]
    problems += [Problem(path=f"checklist.{key}", message="not confirmed") for key in listed if key not in confirmed]
    offered = checklist.keys() if isinstance(checklist, Mapping) else checklist
    problems += [
        Problem(path=f"checklist.{key}", message="not on this checklist")
        for key in dict.fromkeys(offered)
        if key not in listed
    ]
    return problems


def normalize_values(node: TaskNode, values: Mapping[str, object]) -> dict[str, JsonValue]:
    """The canonical JSON-safe values (rules in the module doc); SubmissionError if any is invalid."""
    return {key: _to_json(value) for key, value in typed_values(node, values).items()}


def typed_values(node: TaskNode, values: Mapping[str, object]) -> dict[str, object]:
    """The values as Python types for the lake; SubmissionError if any is invalid."""
    problems = _value_problems(node, values)
    if problems:
        raise SubmissionError(problems)
    fields = node.form.fields if node.form else []
    return {field.key: _read(field, values.get(field.key)) for field in fields}


def _value_problems(node: TaskNode, values: Mapping[str, object]) -> list[Problem]:
    fields = node.form.fields if node.form else []
    problems = []
    for field in fields:
        try:
            _read(field, values.get(field.key))
        except _Invalid as invalid:
            problems.append(Problem(path=f"values.{field.key}", message=str(invalid)))
    known = {field.key for field in fields}
    problems += [
        Problem(path=f"values.{key}", message="not a field of this form") for key in values if key not in known
    ]
    return problems


def _read(field: FormField, raw: object) -> Any:
    """The typed value of one field, None when left empty; raises _Invalid with the reason."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if field.required:
            raise _Invalid("required")
        return None
    if field.type == "number":
        return _number(field, raw)
    if field.type == "integer":
        return _integer(field, raw)
    if field.type == "boolean":
        if not isinstance(raw, bool):
            raise _Invalid("must be true or false")
        return raw
    if field.type == "datetime":
        return _datetime(raw)
    if field.type == "date":
        return _date(raw)
    if not isinstance(raw, str):
        raise _Invalid("must be text")
    if field.type == "choice":
        if raw not in (field.options or []):
            raise _Invalid(f"not one of: {', '.join(field.options or [])}")
    elif field.type == "text":
        limit = field.max_length or MAX_TEXT_LENGTH
        if len(raw) > limit:
            raise _Invalid(f"longer than {limit} characters")
    elif len(raw) > MAX_REF_LENGTH or not raw.isprintable() or any(char.isspace() for char in raw):
        raise _Invalid(f"must be an id without spaces, at most {MAX_REF_LENGTH} characters")
    return raw


def _number(field: FormField, raw: object) -> Decimal:
    number = None if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal | str) else read_number(raw)
    if number is None:
        raise _Invalid("not a number")
    if abs(number) >= _NUMBER_LIMIT:
        raise _Invalid("out of range")
    if number == 0:
        number = Decimal(0)  # "-0.0" is zero: no sign in the record
    places = decimal_places(number)
    most = MAX_DECIMAL_PLACES if field.precision is None else field.precision
    if places > most:
        raise _Invalid(f"more than {most} decimal places")
    _check_limits(field, number)
    if field.precision is None:
        return Decimal(decimal_text(number))
    return number.quantize(Decimal(1).scaleb(-field.precision), context=_EXACT)


def _integer(field: FormField, raw: object) -> int:
    if isinstance(raw, bool):
        raise _Invalid("must be a whole number")
    number = read_number(raw) if isinstance(raw, int | float | Decimal | str) else None
    if number is None or number != number.to_integral_value():
        raise _Invalid("must be a whole number")
    if abs(number) >= _NUMBER_LIMIT:
        raise _Invalid("out of range")
    _check_limits(field, number)
    return int(number)


def _check_limits(field: FormField, number: Decimal) -> None:
    if field.min is not None and number < field.min:
        raise _Invalid(f"below min {decimal_text(field.min)}")
    if field.max is not None and number > field.max:
        raise _Invalid(f"above max {decimal_text(field.max)}")


def _datetime(raw: object) -> datetime:
    moment = raw if isinstance(raw, datetime) else None
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None or moment.utcoffset() is None:
        raise _Invalid("not an ISO-8601 date-time with a timezone, e.g. 2024-05-01T09:30:00+02:00")
    return moment.astimezone(UTC)


def _date(raw: object) -> date:
    if isinstance(raw, date) and not isinstance(raw, datetime):
        return raw
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw.strip())
        except ValueError:
            pass
    raise _Invalid("not an ISO-8601 date (YYYY-MM-DD)")


def _to_json(value: object) -> JsonValue:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.strftime(TIMESTAMP_FORMAT)
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    raise TypeError(f"unexpected form value {value!r}")
