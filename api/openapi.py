"""/openapi.json states what the API accepts, including the storable-value rules of domain/limits.py.

Those rules (no control characters but tab, newline and carriage return in text; keys of free-form objects
without any; numbers within ±(2**63 - 1); bounded free-form values) are checked once for every request by
`domain.limits`. Pydantic cannot put them in the schema by itself, so this module does, in one pass over the
generated document: every text in a request (parameter or body) gets the text pattern unless it states its
own, and every free-form value becomes a `StorableValue`. A client that follows the document is never
refused for a value it allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI

from domain.limits import INT64_MAX, KEY_PATTERN, MAX_ITEMS, MAX_TEXT, TEXT_PATTERN

STORABLE = "StorableValue"
_REF = f"#/components/schemas/{STORABLE}"

STORABLE_VALUE: dict[str, Any] = {
    "description": "Any JSON value the platform can store: text without control characters (tab, newline and "
                   f"carriage return allowed) up to {MAX_TEXT} characters, numbers within ±{INT64_MAX}, "
                   f"lists and objects of at most {MAX_ITEMS} entries whose keys have no control character.",
    "anyOf": [
        {"type": "string", "maxLength": MAX_TEXT, "pattern": TEXT_PATTERN},
        {"type": "integer", "minimum": -INT64_MAX, "maximum": INT64_MAX},
        {"type": "number", "minimum": -INT64_MAX, "maximum": INT64_MAX},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "maxItems": MAX_ITEMS, "items": {"$ref": _REF}},
        {"type": "object", "maxProperties": MAX_ITEMS, "propertyNames": {"pattern": KEY_PATTERN},
         "additionalProperties": {"$ref": _REF}},
    ],
}

_OWN_RULES = ("pattern", "format", "enum", "const")


def _free_form(schema: dict[str, Any]) -> bool:
    """`Any` (no keyword but annotations) is a free-form value."""
    return not (set(schema) - {"title", "description", "default", "examples"})


def _state_rules(schema: Any) -> None:
    if not isinstance(schema, dict) or "$ref" in schema:
        return
    kind = schema.get("type")
    if kind == "string" and not any(k in schema for k in _OWN_RULES):
        schema["pattern"] = TEXT_PATTERN
    if kind == "object" and schema.get("additionalProperties") is True and not schema.get("properties"):
        schema["additionalProperties"] = {}
    if kind == "object" and "patternProperties" in schema and "additionalProperties" not in schema:
        schema["additionalProperties"] = False  # pydantic's `dict[Key, …]`: keys that do not fit are refused
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        schema.setdefault("propertyNames", {"pattern": KEY_PATTERN})
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict) and _free_form(schema[key]):
            schema[key] = {"$ref": _REF}
        else:
            _state_rules(schema.get(key))
    for name, prop in list((schema.get("properties") or {}).items()):
        if isinstance(prop, dict) and _free_form(prop):
            schema["properties"][name] = {"$ref": _REF, **prop}
        else:
            _state_rules(prop)
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key) or []:
            _state_rules(sub)
    # `not` stays as written: adding rules inside a negation would loosen the schema.


def _refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            yield ref.rsplit("/", 1)[1]
        for value in schema.values():
            yield from _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value)


def state_storable_rules(document: dict[str, Any]) -> dict[str, Any]:
    """Add the storable-value rules to everything a request carries (parameters, bodies and their components)."""
    components: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    inline: list[Any] = []
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") in ("query", "path"):  # headers have their own patterns or none checked
                    inline.append(parameter.get("schema"))
            for media in (operation.get("requestBody") or {}).get("content", {}).values():
                inline.append(media.get("schema"))
    todo, seen = [name for s in inline for name in _refs(s)], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in components:
            continue
        seen.add(name)
        todo.extend(_refs(components[name]))
    for schema in inline:
        _state_rules(schema)
    for name in seen:
        _state_rules(components[name])
    components[STORABLE] = STORABLE_VALUE
    _state_json_bodies(document)
    return document


def _state_json_bodies(document: dict[str, Any]) -> None:
    """Every operation that reads a JSON body answers 415 to another media type (api/guards.py `json_bodies`)."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "application/json" in (operation.get("requestBody") or {}).get(
                    "content", {}):
                operation.setdefault("responses", {})["415"] = {
                    "description": "The body is not sent as JSON: use Content-Type: application/json.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


def install(app: FastAPI) -> None:
    generate = app.openapi  # FastAPI's own: builds the document once and keeps it in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            state_storable_rules(generate())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document
