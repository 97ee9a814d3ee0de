"""Database rows as small typed records.

A row type is a frozen dataclass whose fields are the columns it reads, in the table's words, or a frozen pydantic
model (a row that is an answer's shape and a column or two more: `SampleRow` is a `SampleRead` and its
organization). `columns` writes its SELECT list and `from_row` builds it from a SQLAlchemy row: the one place an
untyped row becomes typed fields, so the list read and the fields used cannot drift apart.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy.engine import Row

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance | BaseModel")


def names(cls: type[DataclassInstance] | type[BaseModel]) -> list[str]:
    """The columns a row type reads, in its fields' order."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return list(cls.model_fields)
    return [f.name for f in fields(cls)]


def columns(cls: type[DataclassInstance] | type[BaseModel], table: str = "", prefix: str = "") -> str:
    """The SELECT list of a row type: `t.id, t.run_id, …` (table alias `t`); with a prefix, each column named
    `<prefix><column>` (two row types read from one joined query)."""
    qualifier = f"{table}." if table else ""
    return ", ".join(f"{qualifier}{n}" + (f" AS {prefix}{n}" if prefix else "") for n in names(cls))


def from_row(cls: type[R], row: Row[Any], prefix: str = "") -> R:
    """The typed record of `row`: each field from the column of its name (after `prefix`); other columns ignored.
    A pydantic row is built without validation: the database's types are the fields' already."""
    values = row._mapping
    data = {n: values[prefix + n] for n in names(cls)}
    if issubclass(cls, BaseModel):
        return cast(R, cls.model_construct(**data))
    return cls(**data)
