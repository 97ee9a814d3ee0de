"""The one validation layer (domain/limits.py): whatever it accepts PostgreSQL and the audit canonical form hold,
and every request model of the API goes through it."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from sqlalchemy import text

from api.app import create_app
from domain.canonical import canonical_bytes
from domain.limits import INT64_MAX, MAX_DEPTH, Input, problem, text_problem
from domain.runs.models import RunControl, RunLaunch

# Any character, surrogates and controls included: what a JSON body can carry.
any_text = st.text(st.characters(codec=None, categories=None), max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)


def _stored(owner: Any, value: Any) -> Any:
    """The value through a jsonb column, read back as the platform reads it."""
    with owner.begin(None) as s:
        return s.execute(text("SELECT CAST(:v AS jsonb)"), {"v": json.dumps(value)}).scalar_one()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_what_the_layer_accepts_postgresql_and_the_audit_chain_hold(owner, value):
    accepted = problem(value, "parameters") is None
    try:
        model_ok = RunLaunch(protocol_key="p", parameters={"v": value}) is not None
    except ValidationError as exc:
        model_ok = False
        assert [e["loc"] for e in exc.errors()] == [("parameters",)]  # the field is named
    assert model_ok == accepted
    if accepted:
        back = _stored(owner, value)
        canonical_bytes({"v": back})  # the audit entry of a launch holds what jsonb gives back


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reason=any_text.filter(str.strip))
def test_free_text_accepted_is_text_postgresql_holds(owner, reason):
    try:
        RunControl(reason=reason)
    except ValidationError as exc:
        assert text_problem(reason) is not None and exc.errors()[0]["loc"] == ("reason",)
        return
    with owner.begin(None) as s:
        assert s.execute(text("SELECT CAST(:t AS text)"), {"t": reason}).scalar_one() == reason
    canonical_bytes({"reason": reason})


@pytest.mark.parametrize("value", [10**30, 1e308, float("inf"), float("nan"), -(2**63) - 1, "a\x00b", "\ud800",
                                   "\x1b[31m", {"k\x00": 1}, {"": 1}, {"k" * 129: 1}, list(range(1001))])
def test_unstorable_values_are_refused_naming_the_field(value):
    with pytest.raises(ValidationError) as info:
        RunLaunch(protocol_key="p", parameters={"v": value})
    assert info.value.errors()[0]["loc"] == ("parameters",)
    assert info.value.errors()[0]["msg"].startswith("parameters.v")


def test_the_stored_range_and_free_text_are_accepted():
    nested: Any = 1
    for _ in range(MAX_DEPTH - 1):
        nested = [nested]
    ok = RunLaunch(protocol_key="p", parameters={"max": INT64_MAX, "min": -INT64_MAX, "f": 9.2e18, "nested": nested,
                                                 "notes": "line one\n\tline two\r\n", "unicode": "µg/mL · 37 °C 🧫"})
    assert ok.parameters["max"] == INT64_MAX
    deeper: Any = [nested]
    with pytest.raises(ValidationError, match="nested deeper"):
        RunLaunch(protocol_key="p", parameters={"nested": deeper})


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation, *(m for f in annotation.model_fields.values() for m in _models(f.annotation))]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _is_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    return (origin in (typing.Union, types.UnionType, typing.Annotated)
            and any(_is_text(a) for a in typing.get_args(annotation)))


def _each_text_member_limited(annotation: Any) -> bool:
    """A union of text and other types (a parameter's default: text, a number or a flag) states its limit on the
    text member, `Annotated[str, Field(max_length=…)]`, since a union-wide max_length cannot apply to numbers."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return False
    texts = [a for a in typing.get_args(annotation) if _is_text(a)]
    return bool(texts) and all(typing.get_origin(a) is typing.Annotated and any(
        getattr(m, "max_length", None) for f in typing.get_args(a)[1:] for m in getattr(f, "metadata", [f]))
        for a in texts)


def test_every_request_model_goes_through_the_layer_and_states_its_text_limits():
    request_models: set[type[BaseModel]] = set()
    app = create_app()
    routes = [r for top in app.routes for r in getattr(getattr(top, "original_router", None), "routes", [top])]
    for route in routes:
        if isinstance(route, APIRoute) and route.body_field is not None:
            for param in route.dependant.body_params:
                request_models.update(_models(param.field_info.annotation))
    assert {RunLaunch, RunControl} <= request_models
    for model in request_models:
        if model.__name__.startswith("Body_"):
            continue  # FastAPI's wrapper of embedded Body(...) parameters, typed with SafeText
        assert issubclass(model, Input), f"{model.__name__} does not derive from domain.limits.Input"
        for name, field in model.model_fields.items():
            if _is_text(field.annotation) and name not in ("email",):  # EmailStr: 254 characters by its own rule
                limits = [getattr(m, "max_length", None) for m in field.metadata]
                assert any(limits) or _each_text_member_limited(field.annotation), \
                    f"{model.__name__}.{name} states no max_length"
