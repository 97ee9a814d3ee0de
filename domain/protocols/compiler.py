"""Compile a protocol document into an execution plan, listing every problem with its path.

Schema problems (wrong shape or type) come from pydantic; every content rule is then checked in one pass
over the whole tree, so an author sees all problems at once, never just the first. A document with schema
problems is not a dead end: the parts pydantic refused are set aside (`_without_misshapen`) and the rest is
checked too, its problems named by their paths in the document as written.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from pydantic import BaseModel, ValidationError

from domain.canonical import canonical_bytes
from domain.protocols import expressions
from domain.protocols.definition import (
    KNOWN_ROLES,
    REGULATORY_TAGS,
    STEP_KINDS,
    ApprovalStep,
    EscalationDef,
    FormDef,
    FormFieldDef,
    OnRejectDef,
    ParallelStep,
    ProtocolDefinition,
    RepeatStep,
    Step,
    TaskStep,
    TimerStep,
    parse_duration,
)
from domain.protocols.expressions import COMPARISONS, Expr, ExpressionError, decimal_places, decimal_text
from domain.protocols.forms import MAX_TEXT_LENGTH
from domain.protocols.plan import (
    ApprovalNode,
    ChecklistItem,
    EscalationLevel,
    ExecutionPlan,
    FormField,
    FormSpec,
    OnReject,
    ParallelNode,
    Problem,
    Produces,
    RepeatNode,
    SequenceNode,
    StepIndexEntry,
    StepNode,
    TaskNode,
    TimerNode,
)
from domain.samples.models import MAX_PRODUCED, OPERATIONS, SAMPLE_TYPES

MAX_ITERATIONS = 20
MAX_PRECISION = 12
MAX_DURATION_SECONDS = 366 * 86400  # a year: anything longer is a typo, not a lab step

# Same rule as the protocols.key CHECK in migration 0002: a letter first, 2-64 characters.
_PROTOCOL_KEY = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
_MAX_KEY_LENGTH = 63  # form and field keys become lake table and column names

# Which optional field attributes make sense for which field types.
_FIELD_ATTRIBUTES = {
    "unit": ("number", "integer"),
    "min": ("number", "integer"),
    "max": ("number", "integer"),
    "precision": ("number",),
    "max_length": ("text",),
    "options": ("choice",),
}


class CompileResult(BaseModel):
    ok: bool
    problems: list[Problem]
    plan: ExecutionPlan | None


def compile_protocol(document: Mapping[str, Any] | ProtocolDefinition, version: int) -> CompileResult:
    """Check a protocol document and, when it has no problems, compile it into version `version`'s plan."""
    if isinstance(document, ProtocolDefinition):
        definition = document
    else:
        try:
            definition = ProtocolDefinition.model_validate(document)
        except ValidationError as error:
            return CompileResult(ok=False, problems=_every_problem(document, error, version), plan=None)
    compiler = _Compiler(definition)
    if version < 1:
        compiler.problem("version", "must be 1 or more")
    root = compiler.compile()
    if compiler.problems:
        return CompileResult(ok=False, problems=compiler.problems, plan=None)
    plan = ExecutionPlan(
        protocol_key=definition.key,
        protocol_title=definition.title,
        version=version,
        content_hash=content_hash(definition),
        regulatory_tags=list(definition.regulatory_tags),
        root=root,
        steps_index=compiler.index,
    )
    return CompileResult(ok=True, problems=[], plan=plan)


def schema_problems(error: ValidationError) -> list[Problem]:
    """Pydantic's errors as path messages, e.g. `steps[1].form.fields[0].type: ...`."""
    return [Problem(path=_render_path(_loc(detail)) or "document", message=_schema_message(detail))
            for detail in error.errors()]


def _loc(detail: Any) -> list[str | int]:
    parts: list[str | int] = []
    for part in detail["loc"]:
        # Tagged unions put the tag ("task", ...) after the list index; the document has no such level.
        if isinstance(part, str) and part in STEP_KINDS and parts and isinstance(parts[-1], int):
            continue
        parts.append(part)
    return parts


Loc = tuple[str | int, ...]
_MAX_REPAIRS = 50


def _every_problem(document: Mapping[str, Any], error: ValidationError, version: int) -> list[Problem]:
    """The schema problems, then the content problems of what is left once the misshapen parts are set aside:
    an attribute of the wrong type is dropped, an item (step, field, checklist item, ...) missing something it
    needs is dropped from its list. Content problems that only echo a dropped part (a reference to a dropped
    step, an emptied list) are left out: the schema problem already names the cause."""
    problems = schema_problems(error)
    dropped: set[Loc] = set()
    for _ in range(_MAX_REPAIRS):
        kept, lists = _without_misshapen(document, (), dropped)
        try:
            definition = ProtocolDefinition.model_validate(kept)
        except ValidationError as again:
            more: set[Loc] = set()
            for detail in again.errors():
                loc = _original(tuple(_loc(detail)), lists)
                target = _to_drop(loc, detail["type"])
                if target is not None:
                    more.add(target)
                if loc in dropped:
                    continue  # "required" for an attribute set aside here: its own problem is already listed
                problem = Problem(path=_render_path(loc) or "document", message=_schema_message(detail))
                if problem not in problems:
                    problems.append(problem)
            if not more - dropped:
                return problems  # nothing more can be set aside (e.g. the document's own key is missing)
            dropped |= more
            continue
        compiler = _Compiler(definition)
        compiler.compile()
        echoes = _dropped_keys(document, dropped)
        emptied = {_render_path(loc[:-1]) for loc in dropped if isinstance(loc[-1], int)}
        for p in compiler.problems:
            path = _render_path(_original(_parse_path(p.path), lists))
            if any(f"'{k}'" in p.message for k in echoes) or (path in emptied and "at least one" in p.message):
                continue
            message = _IN_MESSAGE.sub(partial(_original_path, lists=lists), p.message)
            problem = Problem(path=path, message=message)
            if problem not in problems:
                problems.append(problem)
        return problems
    return problems


def _to_drop(loc: Loc, kind: str) -> Loc | None:
    """What to set aside for one schema error: the attribute itself when it is there and optional-looking
    (wrong type, unknown), else the innermost list item holding it; None when the error is the document's."""
    if kind != "missing" and loc and isinstance(loc[-1], str) and len(loc) > 1:
        return loc
    for i in range(len(loc) - 1, -1, -1):
        if isinstance(loc[i], int):
            return loc[: i + 1]
    if kind != "missing" and len(loc) == 1 and loc[0] not in ("key", "title", "steps"):
        return loc  # an optional top-level attribute of the wrong type or unknown
    return None


def _without_misshapen(value: Any, here: Loc, dropped: set[Loc]) -> tuple[Any, dict[Loc, list[int]]]:
    """`value` without the dropped locations, and for each list (by its location in the document) the
    original indices of the items kept, to name later problems by their place in the document."""
    lists: dict[Loc, list[int]] = {}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if (*here, k) not in dropped:
                out[k], inner = _without_misshapen(v, (*here, k), dropped)
                lists.update(inner)
        return out, lists
    if isinstance(value, list):
        kept = [i for i in range(len(value)) if (*here, i) not in dropped]
        lists[here] = kept
        items = []
        for i in kept:
            item, inner = _without_misshapen(value[i], (*here, i), dropped)
            items.append(item)
            lists.update(inner)
        return items, lists
    return value, lists


def _original(loc: Sequence[str | int], lists: dict[Loc, list[int]]) -> Loc:
    """A location in the repaired document → the same place in the document as written."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, int) and tuple(out) in lists and part < len(lists[tuple(out)]):
            part = lists[tuple(out)][part]
        out.append(part)
    return tuple(out)


_PATH_PART = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


_IN_MESSAGE = re.compile(r"\bsteps(?:\[\d+\]|\.[a-z_]+)*")  # another step's path named in a message


def _original_path(match: re.Match[str], lists: dict[Loc, list[int]]) -> str:
    return _render_path(_original(_parse_path(match[0]), lists))


def _parse_path(path: str) -> Loc:
    return tuple(int(i) if i else name for i, name in _PATH_PART.findall(path))


def _dropped_keys(document: Mapping[str, Any], dropped: set[Loc]) -> set[str]:
    """The keys of the dropped items (steps, fields, ...), so problems that merely mention them are told apart."""
    keys = set()
    for loc in dropped:
        value: Any = document
        for part in loc:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                value = None
                break
        if isinstance(value, Mapping) and isinstance(value.get("key"), str):
            keys.add(value["key"])
    return keys


def _schema_message(detail: Any) -> str:
    kind = detail["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown attribute"
    if kind == "union_tag_invalid":
        return f"unknown step kind {detail['ctx']['tag']!r}; expected one of {', '.join(STEP_KINDS)}"
    if kind == "union_tag_not_found":
        return f"missing 'kind' ({', '.join(STEP_KINDS)})"
    message = str(detail["msg"])
    return message[:1].lower() + message[1:]


def _render_path(parts: Sequence[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def content_hash(document: Mapping[str, Any] | ProtocolDefinition) -> str:
    """sha256 hex of the canonical JSON (domain.canonical) of the normalized definition.

    Normalized means validated, attributes left at their default omitted and numbers as canonical
    decimal text, so equal content gives an equal hash: `required: true` written out or left implicit,
    `min: 7` or `min: 7.0`, keys in any order.
    """
    definition = document if isinstance(document, ProtocolDefinition) else ProtocolDefinition.model_validate(document)
    return hashlib.sha256(canonical_bytes(_decimals_as_text(definition.model_dump(exclude_defaults=True)))).hexdigest()


def _decimals_as_text(value: object) -> object:
    if isinstance(value, dict):
        return {key: _decimals_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decimals_as_text(item) for item in value]
    if isinstance(value, Decimal):
        return decimal_text(value)
    return value


@dataclass(frozen=True)
class _KnownStep:
    path: str
    form: FormDef | None


class _Compiler:
    def __init__(self, definition: ProtocolDefinition) -> None:
        self.definition = definition
        self.problems: list[Problem] = []
        self.steps: dict[str, _KnownStep] = {}
        self.forms: dict[str, tuple[str, FormDef]] = {}
        self.index: dict[str, StepIndexEntry] = {}

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path=path, message=message))

    def compile(self) -> SequenceNode:
        definition = self.definition
        if not _PROTOCOL_KEY.fullmatch(definition.key) or not 2 <= len(definition.key) <= 64:
            self.problem("key", "must be a slug of 2-64 lowercase letters, digits and hyphens starting with a "
                                "letter, e.g. 'plant-subculture'")
        self._text(definition.title, "title")
        seen_tags: set[str] = set()
        for i, tag in enumerate(definition.regulatory_tags):
            if tag not in REGULATORY_TAGS:
                self.problem(
                    f"regulatory_tags[{i}]", f"unknown tag '{tag}'; known: {', '.join(sorted(REGULATORY_TAGS))}"
                )
            elif tag in seen_tags:
                self.problem(f"regulatory_tags[{i}]", f"duplicate tag '{tag}'")
            seen_tags.add(tag)
        self._collect(definition.steps, "steps", [])
        if definition.on_reject is not None:
            self._check_on_reject_shape(definition.on_reject, "on_reject")
            from_step = definition.on_reject.from_step
            if from_step is not None and from_step not in self.steps:
                self.problem("on_reject.from_step", f"unknown step '{from_step}'")
        return self._sequence(definition.steps, "steps", frozenset())

    # --- pass 1: every step key, so conditions can tell "unknown" from "not yet run" -------------

    def _collect(self, steps: Sequence[Step], path: str, within: list[str]) -> None:
        for i, step in enumerate(steps):
            step_path = f"{path}[{i}]"
            self._key(step.key, f"{step_path}.key")
            if step.key in self.steps:
                self.problem(
                    f"{step_path}.key", f"duplicate step key '{step.key}' (also at {self.steps[step.key].path})"
                )
            else:
                form = step.form if isinstance(step, TaskStep) else None
                self.steps[step.key] = _KnownStep(step_path, form)
                self.index[step.key] = StepIndexEntry(kind=step.kind, title=step.title, path=step_path, within=within)
            if isinstance(step, ParallelStep):
                for b, branch in enumerate(step.branches):
                    self._collect(branch, f"{step_path}.branches[{b}]", [*within, step.key])
            elif isinstance(step, RepeatStep):
                self._collect(step.steps, f"{step_path}.steps", [*within, step.key])

    # --- pass 2: check and build, in execution order ---------------------------------------------

    def _sequence(self, steps: Sequence[Step], path: str, ran_before: frozenset[str]) -> SequenceNode:
        if not steps:
            self.problem(path, "needs at least one step")
        nodes: list[StepNode] = []
        for i, step in enumerate(steps):
            step_path = f"{path}[{i}]"
            when = self._condition(step.when, f"{step_path}.when", ran_before)
            if when is not None and _constant(when) is False:
                self.problem(f"{step_path}.when", f"always false, so step '{step.key}' never runs")
            nodes.append(self._step(step, step_path, ran_before, steps[:i], when))
            ran_before = ran_before | _keys_in(step)
        return SequenceNode(key=path, steps=nodes)

    def _step(
        self, step: Step, path: str, ran_before: frozenset[str], earlier: Sequence[Step], when: Expr | None
    ) -> StepNode:
        self._text(step.title, f"{path}.title")
        common: dict[str, Any] = {"key": step.key, "title": step.title, "when": when, "when_source": step.when}
        if isinstance(step, TaskStep):
            return self._task(step, path, common)
        if isinstance(step, ApprovalStep):
            return self._approval(step, path, earlier, common)
        if isinstance(step, TimerStep):
            duration = self._duration(step.duration, f"{path}.duration")
            return TimerNode(**common, duration_seconds=duration or 0)
        if isinstance(step, ParallelStep):
            if not step.branches:
                self.problem(f"{path}.branches", "needs at least one branch")
            branches = [
                self._sequence(branch, f"{path}.branches[{b}]", ran_before) for b, branch in enumerate(step.branches)
            ]
            return ParallelNode(**common, branches=branches)
        body = self._sequence(step.steps, f"{path}.steps", ran_before)
        if not 1 <= step.max_iterations <= MAX_ITERATIONS:
            self.problem(f"{path}.max_iterations", f"must be between 1 and {MAX_ITERATIONS}")
        # `until` is checked after each pass through the body, so the body's own steps have run.
        until = self._condition(step.until, f"{path}.until", ran_before | _keys_in(step))
        return RepeatNode(
            **common,
            body=body,
            until=until or {"op": "lit", "value": True},  # placeholder: a plan with problems is discarded
            until_source=step.until,
            max_iterations=step.max_iterations,
        )

    def _task(self, step: TaskStep, path: str, common: dict[str, Any]) -> TaskNode:
        self._roles(step.roles, f"{path}.roles")
        due = self._duration(step.due, f"{path}.due") if step.due is not None else None
        form = self._form(step.form, f"{path}.form") if step.form is not None else None
        seen: set[str] = set()
        for i, item in enumerate(step.checklist):
            self._key(item.key, f"{path}.checklist[{i}].key")
            if item.key in seen:
                self.problem(f"{path}.checklist[{i}].key", f"duplicate checklist item '{item.key}'")
            seen.add(item.key)
            self._text(item.text, f"{path}.checklist[{i}].text")
        return TaskNode(
            **common,
            instructions=step.instructions,
            form=form,
            checklist=[ChecklistItem(key=item.key, text=item.text) for item in step.checklist],
            roles=step.roles,
            due_seconds=due,
            escalation=self._escalation(step.escalation, step.due, f"{path}.escalation"),
            produces=self._produces(step, path),
            consumes=self._consumes(step, path),
            requires_qualification=self._qualification(step, path),
            uses=self._uses(step, path),
        )

    def _qualification(self, step: TaskStep, path: str) -> str | None:
        course = step.requires_qualification
        if course is not None and not re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", course):
            self.problem(f"{path}.requires_qualification", f"'{course}' is not a course key (e.g. biosafety_bsl2)")
        return course

    def _ref_field(self, step: TaskStep, key: str, path: str, types: tuple[str, ...]) -> None:
        field = _field_named(step.form, key)
        if field is None:
            self.problem(path, f"'{key}' is not a field of this step's form")
        elif field.type not in types:
            self.problem(path, f"field '{key}' is {field.type}; it must be {' or '.join(types)}")

    def _produces(self, step: TaskStep, path: str) -> Produces | None:
        p = step.produces
        if p is None:
            return None
        path = f"{path}.produces"
        if p.type not in SAMPLE_TYPES:
            self.problem(f"{path}.type", f"unknown sample type '{p.type}'; known: {', '.join(SAMPLE_TYPES)}")
        if p.operation not in OPERATIONS:
            self.problem(f"{path}.operation", f"unknown operation '{p.operation}'; known: {', '.join(OPERATIONS)}")
        if p.count is not None and p.count_field is not None:
            self.problem(path, "give count or count_field, not both")
        if p.count is not None and not 1 <= p.count <= MAX_PRODUCED:
            self.problem(f"{path}.count", f"between 1 and {MAX_PRODUCED}")
        if p.count_field is not None:
            self._ref_field(step, p.count_field, f"{path}.count_field", ("integer",))
        sources = [p.from_field] if isinstance(p.from_field, str) else list(p.from_field or [])
        for i, key in enumerate(sources):
            self._ref_field(step, key, f"{path}.from_field" + (f"[{i}]" if isinstance(p.from_field, list) else ""),
                            ("sample_ref",))
        if p.batch_field is not None:
            self._ref_field(step, p.batch_field, f"{path}.batch_field", ("batch_ref",))
        return Produces(sample_type=p.type, operation=p.operation, count=p.count if p.count_field is None else None,
                        count_field=p.count_field, from_fields=sources, batch_field=p.batch_field)

    def _consumes(self, step: TaskStep, path: str) -> list[str]:
        for i, key in enumerate(step.consumes):
            self._ref_field(step, key, f"{path}.consumes[{i}]", ("sample_ref",))
        return list(step.consumes)

    def _uses(self, step: TaskStep, path: str) -> list[str]:
        for i, key in enumerate(step.uses):
            self._ref_field(step, key, f"{path}.uses[{i}]", ("sample_ref",))
            if key in step.consumes:
                self.problem(f"{path}.uses[{i}]", f"'{key}' is consumed by this step already")
        return list(step.uses)

    def _approval(self, step: ApprovalStep, path: str, earlier: Sequence[Step], common: dict[str, Any]) -> ApprovalNode:
        self._roles(step.roles, f"{path}.roles")
        due = self._duration(step.due, f"{path}.due") if step.due is not None else None
        on_reject = step.on_reject or self.definition.on_reject or OnRejectDef(action="end_run")
        earlier_keys = [s.key for s in earlier]
        if step.on_reject is not None:
            self._check_on_reject_shape(step.on_reject, f"{path}.on_reject")
            from_step = step.on_reject.from_step
            if from_step is not None and from_step not in self.steps:
                self.problem(f"{path}.on_reject.from_step", f"unknown step '{from_step}'")
            elif from_step is not None and from_step not in earlier_keys:
                self.problem(
                    f"{path}.on_reject.from_step", f"'{from_step}' is not an earlier step in the same sequence"
                )
        elif on_reject.from_step is not None and on_reject.from_step in self.steps:
            if on_reject.from_step not in earlier_keys:
                self.problem(
                    f"{path}.on_reject",
                    f"the protocol's on_reject repeats from '{on_reject.from_step}', "
                    "which is not an earlier step in this approval's sequence",
                )
        reviews: list[str] = []
        for sibling in earlier:
            reviews = [] if isinstance(sibling, ApprovalStep) else reviews + _task_keys(sibling)
        return ApprovalNode(
            **common,
            instructions=step.instructions,
            roles=step.roles,
            meaning=step.meaning,
            due_seconds=due,
            escalation=self._escalation(step.escalation, step.due, f"{path}.escalation"),
            on_reject=OnReject(action=on_reject.action, from_step=on_reject.from_step),
            reviews=reviews,
        )

    def _check_on_reject_shape(self, on_reject: OnRejectDef, path: str) -> None:
        if on_reject.action == "repeat" and on_reject.from_step is None:
            self.problem(f"{path}.from_step", "required to repeat")
        if on_reject.action == "end_run" and on_reject.from_step is not None:
            self.problem(f"{path}.from_step", "only goes with action 'repeat'")

    # --- forms -----------------------------------------------------------------------------------

    def _form(self, form: FormDef, path: str) -> FormSpec:
        self._key(form.key, f"{path}.key")
        if form.key in self.forms:
            first_path, first = self.forms[form.key]
            if first != form:
                self.problem(f"{path}.key", f"form '{form.key}' is already defined differently at {first_path}")
        else:
            self.forms[form.key] = (path, form)
        if not form.fields:
            self.problem(f"{path}.fields", "needs at least one field")
        seen: set[str] = set()
        for i, field in enumerate(form.fields):
            field_path = f"{path}.fields[{i}]"
            self._key(field.key, f"{field_path}.key")
            if field.key in seen:
                self.problem(f"{field_path}.key", f"duplicate field key '{field.key}'")
            seen.add(field.key)
            self._text(field.label, f"{field_path}.label")
            self._field(field, field_path)
        return FormSpec(key=form.key, fields=[FormField(**field.model_dump()) for field in form.fields])

    def _field(self, field: FormFieldDef, path: str) -> None:
        for attribute, types in _FIELD_ATTRIBUTES.items():
            if getattr(field, attribute) is not None and field.type not in types:
                self.problem(f"{path}.{attribute}", f"only for {' and '.join(types)} fields")
        if field.type in ("number", "integer"):
            self._limits(field, path)
        if field.precision is not None and not 0 <= field.precision <= MAX_PRECISION:
            self.problem(f"{path}.precision", f"must be between 0 and {MAX_PRECISION}")
        if field.type == "text" and field.max_length is not None and not 1 <= field.max_length <= MAX_TEXT_LENGTH:
            self.problem(f"{path}.max_length", f"must be between 1 and {MAX_TEXT_LENGTH}")
        if field.type == "choice":
            if not field.options:
                self.problem(f"{path}.options", "a choice field needs at least one option")
            seen: set[str] = set()
            for i, option in enumerate(field.options or []):
                if not option.strip():
                    self.problem(f"{path}.options[{i}]", "empty option")
                elif option in seen:
                    self.problem(f"{path}.options[{i}]", f"duplicate option '{option}'")
                seen.add(option)

    def _limits(self, field: FormFieldDef, path: str) -> None:
        for name, limit in (("min", field.min), ("max", field.max)):
            if limit is None:
                continue
            if not limit.is_finite():
                self.problem(f"{path}.{name}", "must be a finite number")
            elif field.type == "integer" and limit != limit.to_integral_value():
                self.problem(f"{path}.{name}", "must be a whole number for an integer field")
            elif field.precision is not None and decimal_places(limit) > field.precision:
                self.problem(f"{path}.{name}", f"has more decimal places than precision {field.precision}")
        if field.min is not None and field.max is not None and field.min.is_finite() and field.max.is_finite():
            if field.max < field.min:
                self.problem(f"{path}.max", f"below min {decimal_text(field.min)}")

    # --- conditions ------------------------------------------------------------------------------

    def _condition(self, source: str | None, path: str, ran_before: frozenset[str]) -> Expr | None:
        if source is None:
            return None
        try:
            tree = expressions.parse(source)
        except ExpressionError as error:
            self.problem(path, str(error))
            return None
        count = len(self.problems)
        typed = self._typed(tree, path, ran_before)
        self._check_condition(typed, path)
        return typed if len(self.problems) == count else None

    def _typed(self, tree: Expr, path: str, ran_before: frozenset[str]) -> Expr:
        """The tree with each reference resolved and given its field's type."""
        op = tree["op"]
        if op in ("and", "or"):
            return {**tree, "args": [self._typed(arg, path, ran_before) for arg in tree["args"]]}
        if op == "not":
            return {**tree, "arg": self._typed(tree["arg"], path, ran_before)}
        if op in COMPARISONS:
            return {
                **tree,
                "left": self._typed(tree["left"], path, ran_before),
                "right": self._typed(tree["right"], path, ran_before),
            }
        if op in ("in", "not in"):
            return {**tree, "left": self._typed(tree["left"], path, ran_before)}
        if op != "ref":
            return tree
        step_key, field_key = tree["step"], tree["field"]
        known = self.steps.get(step_key)
        if known is None:
            self.problem(path, f"unknown step '{step_key}'")
        elif step_key not in ran_before:
            self.problem(path, f"step '{step_key}' has not run yet at this point")
        elif known.form is None:
            self.problem(path, f"step '{step_key}' has no form")
        else:
            field = _field_named(known.form, field_key)
            if field is None:
                self.problem(path, f"step '{step_key}' has no field '{field_key}'")
            else:
                return {**tree, "type": field.type}
        return tree

    def _check_condition(self, tree: Expr, path: str) -> None:
        """Type rules: compare like with like, order numbers only, conditions are booleans."""
        op = tree["op"]
        if op in ("and", "or"):
            for arg in tree["args"]:
                self._check_condition(arg, path)
        elif op == "not":
            self._check_condition(tree["arg"], path)
        elif op in ("==", "!="):
            self._check_pair(tree["left"], tree["right"], path)
        elif op in COMPARISONS:
            for side in (tree["left"], tree["right"]):
                kind = _kind(side)
                if kind == "null":
                    self.problem(path, f"'{op}' with null is always false")
                elif kind not in (None, "number"):
                    self.problem(path, f"'{op}' compares numbers, but {_describe(side)} is {kind}")
        elif op in ("in", "not in"):
            for item in tree["items"]:
                self._check_pair(tree["left"], item, path)
        elif _kind(tree) not in (None, "boolean"):
            self.problem(path, f"{_describe(tree)} is not a condition; compare it with something")

    def _check_pair(self, left: Expr, right: Expr, path: str) -> None:
        left_kind, right_kind = _kind(left), _kind(right)
        if None in (left_kind, right_kind) or "null" in (left_kind, right_kind):
            return
        if left_kind != right_kind:
            self.problem(path, f"cannot compare {_describe(left)} ({left_kind}) with {_describe(right)} ({right_kind})")
            return
        for ref, other in ((left, right), (right, left)):
            if ref.get("type") == "choice" and other["op"] == "lit":
                field = _field_named(self.steps[ref["step"]].form, ref["field"])
                options = (field.options or []) if field else []
                if other["value"] not in options:
                    self.problem(
                        path,
                        f"'{other['value']}' is not an option of {ref['step']}.{ref['field']} ({', '.join(options)})",
                    )

    # --- small checks ----------------------------------------------------------------------------

    def _key(self, key: str, path: str) -> None:
        if not _IDENTIFIER.fullmatch(key) or len(key) > _MAX_KEY_LENGTH:
            self.problem(path, f"'{key}' must be a lowercase identifier (a-z, 0-9, _; starting with a letter)")
        elif key in expressions.KEYWORDS:
            self.problem(path, f"'{key}' is a reserved word of conditions")

    def _text(self, text: str, path: str) -> None:
        if not text.strip():
            self.problem(path, "must not be empty")

    def _roles(self, roles: list[str], path: str) -> None:
        if not roles:
            self.problem(path, "needs at least one role")
        for i, role in enumerate(roles):
            if role not in KNOWN_ROLES:
                self.problem(f"{path}[{i}]", f"unknown role '{role}'; known: {', '.join(sorted(KNOWN_ROLES))}")
            elif role in roles[:i]:
                self.problem(f"{path}[{i}]", f"duplicate role '{role}'")

    def _duration(self, text: str, path: str) -> int | None:
        try:
            seconds = parse_duration(text)
        except ValueError as error:
            self.problem(path, str(error))
            return None
        if seconds <= 0:
            self.problem(path, "must be longer than zero")
            return None
        if seconds > MAX_DURATION_SECONDS:
            self.problem(path, "longer than 366 days")
            return None
        return seconds

    def _escalation(self, escalation: EscalationDef | None, due: str | None, path: str) -> list[EscalationLevel]:
        if escalation is None:
            return []
        if due is None:
            self.problem(path, "needs a due time: levels count from when the step is due")
        if not escalation.levels:
            self.problem(f"{path}.levels", "needs at least one level")
        levels: list[EscalationLevel] = []
        for i, level in enumerate(escalation.levels):
            level_path = f"{path}.levels[{i}]"
            seconds = self._duration(level.after, f"{level_path}.after")
            if level.notify_role not in KNOWN_ROLES:
                self.problem(f"{level_path}.notify_role", f"unknown role '{level.notify_role}'")
            if seconds is None:
                continue
            if levels and seconds <= levels[-1].seconds_after_due:
                self.problem(f"{level_path}.after", "must be later than the level before")
            levels.append(EscalationLevel(seconds_after_due=seconds, notify_role=level.notify_role))
        return levels


def _keys_in(step: Step) -> frozenset[str]:
    """The step's key and every key nested inside it."""
    keys = {step.key}
    nested: list[Step] = []
    if isinstance(step, ParallelStep):
        nested = [s for branch in step.branches for s in branch]
    elif isinstance(step, RepeatStep):
        nested = list(step.steps)
    for child in nested:
        keys |= _keys_in(child)
    return frozenset(keys)


def _task_keys(step: Step) -> list[str]:
    if isinstance(step, TaskStep):
        return [step.key]
    if isinstance(step, ParallelStep):
        return [key for branch in step.branches for s in branch for key in _task_keys(s)]
    if isinstance(step, RepeatStep):
        return [key for s in step.steps for key in _task_keys(s)]
    return []


def _field_named(form: FormDef | None, key: str) -> FormFieldDef | None:
    return next((field for field in form.fields if field.key == key), None) if form else None


def _kind(node: Expr) -> str | None:
    """What an operand holds: number, text, boolean or null; None when a reference did not resolve."""
    op = node["op"]
    if op == "num":
        return "number"
    if op == "lit":
        value = node["value"]
        return "null" if value is None else "boolean" if isinstance(value, bool) else "text"
    if op != "ref" or "type" not in node:
        return None
    field_type = node["type"]
    return "number" if field_type in expressions.NUMERIC_TYPES else "boolean" if field_type == "boolean" else "text"


def _describe(node: Expr) -> str:
    if node["op"] == "ref":
        return f"{node['step']}.{node['field']}"
    return expressions.to_source(node)


def _constant(tree: Expr) -> bool | None:
    """The condition's value when it is the same whatever the form values are, else None."""
    op = tree["op"]
    if op in ("and", "or"):
        parts = [_constant(arg) for arg in tree["args"]]
        decisive = op == "or"  # one true decides an `or`, one false an `and`
        if decisive in parts:
            return decisive
        return None if None in parts else not decisive
    if op == "not":
        inner = _constant(tree["arg"])
        return None if inner is None else not inner
    if op == "ref":
        return None
    if op in COMPARISONS and op not in ("==", "!=") and "null" in (_kind(tree["left"]), _kind(tree["right"])):
        return False
    if expressions.references(tree):
        return None
    return expressions.evaluate(tree, {})
