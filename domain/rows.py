"""Database rows as small typed records.

A row type is a frozen dataclass whose fields are the columns it reads, in the table's words. `columns` writes
its SELECT list and `from_row` builds it from a SQLAlchemy row: the one place an untyped row becomes typed fields,
so the list read and the fields used cannot drift apart.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Row

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


def columns(cls: type[DataclassInstance], table: str = "", prefix: str = "") -> str:
    """The SELECT list of a row type: `t.id, t.run_id, …` (table alias `t`); with a prefix, each column named
    `<prefix><column>` (two row types read from one joined query)."""
    qualifier = f"{table}." if table else ""
    return ", ".join(f"{qualifier}{f.name}" + (f" AS {prefix}{f.name}" if prefix else "") for f in fields(cls))


def from_row(cls: type[R], row: Row[Any], prefix: str = "") -> R:
    """The typed record of `row`: each field from the column of its name (after `prefix`); other columns ignored."""
    values = row._mapping
    return cls(**{f.name: values[prefix + f.name] for f in fields(cls)})
