"""Read protocol documents from YAML or JSON (JSON is YAML too), and the examples shipped with Flask Track."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError

from domain.limits import problem
from domain.protocols.compiler import schema_problems
from domain.protocols.definition import ProtocolDefinition
from domain.protocols.plan import Problem


class ProtocolLoadError(ValueError):
    """The text is not a protocol document; `problems` says where."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice, which plain YAML silently resolves to the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in the same mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_protocol_text(text: str) -> dict[str, Any]:
    """The document in YAML or JSON text, as a plain dict (not yet checked: compile it for that)."""
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "document"
        reason = getattr(error, "problem", None) or str(error)
        raise ProtocolLoadError([Problem(path=where, message=str(reason))]) from error
    if not isinstance(document, dict):
        raise ProtocolLoadError([Problem(path="document", message="must be a mapping of protocol attributes")])
    # YAML escapes ("\0") and numbers reach what JSON bodies cannot: the same storable check as every request.
    why = problem(document)
    if why:
        raise ProtocolLoadError([Problem(path="document", message=why)])
    return document


def load_definition(text: str) -> ProtocolDefinition:
    """The definition in YAML or JSON text; ProtocolLoadError with path messages if its shape is wrong."""
    try:
        return ProtocolDefinition.model_validate(parse_protocol_text(text))
    except ValidationError as error:
        raise ProtocolLoadError(schema_problems(error)) from error


def example_protocols() -> dict[str, dict[str, Any]]:
    """The shipped example protocols by protocol key."""
    examples = resources.files("domain.protocols").joinpath("examples")
    documents = [
        parse_protocol_text(entry.read_text(encoding="utf-8"))
        for entry in sorted(examples.iterdir(), key=lambda entry: entry.name)
        if entry.name.endswith(".yaml")
    ]
    return {str(document["key"]): document for document in documents}
