"""Work names material by id or code: a run's subjects, a form's `sample_ref` / `batch_ref` values. Each must be an
existing record of the organization (row-level security hides the others) that work may still use: a consumed,
disposed or contaminated sample, an archived one, a rejected or closed batch is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from sqlalchemy.orm import Session

from domain.protocols.plan import TaskNode
from domain.samples import batches, service

Kind = Literal["sample", "batch"]


def problem(session: Session, kind: Kind, ref: str) -> tuple[str | None, str | None]:
    """(the record's code, None) when `ref` names a usable record; (None, why not) otherwise."""
    if kind == "sample":
        sample = service.find(session, ref)
        if sample is None:
            return None, f"no sample '{ref}' in this organization"
        return (None, why) if (why := service.unusable_reason(sample)) else (sample.code, None)
    batch = batches.find(session, ref)
    if batch is None:
        return None, f"no batch '{ref}' in this organization"
    return (None, why) if (why := batches.unusable_reason(batch)) else (batch.code, None)


def check_subjects(session: Session, subjects: Sequence[tuple[Kind, str]]) -> tuple[list[str], list[str]]:
    """The subjects' codes (what the run records: readable in Temporal's UI and filters) and every problem."""
    codes, problems = [], []
    for i, (kind, ref) in enumerate(subjects):
        code, why = problem(session, kind, ref)
        if why:
            problems.append(f"subjects[{i}]: {why}")
        codes.append(code or ref)
    return codes, problems


def form_problems(session: Session, node: TaskNode, values: Mapping[str, object]) -> list[str]:
    """Every `sample_ref` / `batch_ref` value of the submission that names no usable record, e.g.
    `values.parent: sample S-000012 is disposed: autoclaved`."""
    out = []
    for field in node.form.fields if node.form else []:
        value = values.get(field.key)
        if field.type not in ("sample_ref", "batch_ref") or not isinstance(value, str) or not value.strip():
            continue
        _, why = problem(session, "sample" if field.type == "sample_ref" else "batch", value.strip())
        if why:
            out.append(f"values.{field.key}: {why}")
    return out
