"""A task's form as a page shows it: one control per field of the protocol's typed form, with what the person
typed and the server's own message beside it.

Nothing here decides whether a value is acceptable: the posted text goes to the completion as typed (numbers as
decimal text, a yes/no as a boolean), and the domain's validation (domain/protocols/forms.py, run by the
workflow) answers every problem as `values.<field>: <why>` or `checklist.<item>: <why>`, which `place_reasons`
puts beside the field or item it names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.protocols.plan import FormField, FormSpec


@dataclass
class FieldView:
    spec: FormField
    value: str = ""  # as typed, shown again after a refusal
    error: str | None = None

    @property
    def control_id(self) -> str:
        return f"field-{self.spec.key}"

    @property
    def hint(self) -> str:
        """The field's rule in words, for people and screen readers (aria-describedby)."""
        s = self.spec
        parts: list[str] = []
        if s.min is not None and s.max is not None:
            parts.append(f"from {s.min} to {s.max}")
        elif s.min is not None:
            parts.append(f"at least {s.min}")
        elif s.max is not None:
            parts.append(f"at most {s.max}")
        if s.unit:
            parts.append(f"in {s.unit}")
        if s.precision is not None:
            parts.append(f"up to {s.precision} decimal places")
        if s.max_length is not None:
            parts.append(f"at most {s.max_length} characters")
        if s.type == "datetime":
            parts.append("with its offset, e.g. 2024-05-01T09:30:00+02:00")
        if s.type.endswith("_ref"):
            parts.append(f"a {s.type.removesuffix('_ref')} id, without spaces")
        if not s.required:
            parts.append("optional")
        return ", ".join(parts)


@dataclass
class ChecklistView:
    key: str
    text: str
    checked: bool = False
    error: str | None = None


@dataclass
class FormView:
    fields: list[FieldView]
    checklist: list[ChecklistView]
    general: list[str] = field(default_factory=list)  # reasons that name no field: the run on hold, a claim


def form_view(form: Mapping[str, Any] | None, checklist: Sequence[Mapping[str, str]]) -> FormView:
    spec = FormSpec.model_validate(form) if form else None
    return FormView(fields=[FieldView(f) for f in (spec.fields if spec else [])],
                    checklist=[ChecklistView(i["key"], i["text"]) for i in checklist])


def submitted(view: FormView, posted: Mapping[str, str]) -> tuple[dict[str, object], list[str]]:
    """The values and confirmed checklist keys a POST carries (`v.<field>`, `c.<item>`), kept in `view` too."""
    values: dict[str, object] = {}
    for f in view.fields:
        raw = posted.get(f"v.{f.spec.key}", "")
        f.value = raw
        if f.spec.type == "boolean":
            values[f.spec.key] = {"yes": True, "no": False}.get(raw)
        else:
            values[f.spec.key] = raw if raw.strip() else None
    confirmed = []
    for item in view.checklist:
        item.checked = posted.get(f"c.{item.key}") == "on"
        if item.checked:
            confirmed.append(item.key)
    return values, confirmed


def place_reasons(view: FormView, reasons: Sequence[str]) -> None:
    """Each reason beside the field or checklist item it names; the others above the form."""
    fields = {f.spec.key: f for f in view.fields}
    items = {i.key: i for i in view.checklist}
    for reason in reasons:
        where, _, why = reason.partition(": ")
        kind, _, key = where.partition(".")
        if kind == "values" and key in fields:
            fields[key].error = why
        elif kind == "checklist" and key in items:
            items[key].error = why
        else:
            view.general.append(reason)
