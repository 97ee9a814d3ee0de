"""The condition language: what authors can write, what it means at run time, and how it fails."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.protocols.expressions import ExpressionError, evaluate, parse, references, to_source


def ref(step: str, field: str, type_: str | None = None) -> dict:
    node = {"op": "ref", "step": step, "field": field}
    return node if type_ is None else {**node, "type": type_}


def test_a_typical_condition_parses_to_a_json_tree():
    tree = parse('culture.od600 >= 0.5 and qc.result in ["pass", "retest"]')
    assert tree == {
        "op": "and",
        "args": [
            {"op": ">=", "left": ref("culture", "od600"), "right": {"op": "num", "value": "0.5"}},
            {
                "op": "in",
                "left": ref("qc", "result"),
                "items": [{"op": "lit", "value": "pass"}, {"op": "lit", "value": "retest"}],
            },
        ],
    }


def test_and_binds_tighter_than_or_and_not_looser_than_comparison():
    tree = parse("a.x == 1 or not b.y == 2 and c.z")
    assert tree["op"] == "or"
    right = tree["args"][1]
    assert right["op"] == "and"
    assert right["args"][0] == {
        "op": "not",
        "arg": {"op": "==", "left": ref("b", "y"), "right": {"op": "num", "value": "2"}},
    }


def test_numbers_are_stored_as_exact_decimal_text():
    assert parse("a.x < -007.50")["right"] == {"op": "num", "value": "-7.5"}
    assert parse("a.x == 0.1")["right"]["value"] == "0.1"


def test_strings_take_either_quote_and_escapes():
    assert parse("a.x == 'it\\'s'")["right"]["value"] == "it's"
    assert parse('a.x == "back\\\\slash"')["right"]["value"] == "back\\slash"


@pytest.mark.parametrize(
    ("source", "message", "position"),
    [
        ("a.b >", "expected a value, found the end", 5),
        ("a.b @ 1", "unexpected character '@'", 4),
        ('a.b == "open', "unterminated string", 7),
        ('a.b == "\\n"', "unknown escape '\\n' in string", 8),
        ("a.b < 1 < 2", "expected 'and', 'or' or the end, found '<'", 8),
        ("(a.b == 1", "expected ')', found the end", 9),
        ("in.x == 1", "expected a value, found 'in'", 0),
        ("a.b in [c.d]", "a list holds literals only", 8),
        ("a.b in [null]", "null cannot be in a list (use '== null')", 8),
        ("a.b in []", "expected a value, found ']'", 8),
        ("a == 1", "expected '.', found '=='", 2),
        ("   ", "empty condition", 0),
    ],
)
def test_mistakes_are_reported_with_their_position(source, message, position):
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    assert caught.value.message == message
    assert caught.value.position == position
    assert str(caught.value) == f"{message} at position {position}"


def test_python_code_is_not_a_condition():
    with pytest.raises(ExpressionError):
        parse("__import__('os').system('rm -rf /')")


def test_deep_nesting_and_long_text_are_refused_not_crashing():
    with pytest.raises(ExpressionError, match="nested more than"):
        parse("(" * 200 + "a.b" + ")" * 200)
    with pytest.raises(ExpressionError, match="longer than"):
        parse("a.b == 1 or " * 200 + "a.b == 1")


# --- evaluation ----------------------------------------------------------------------------------


def test_numeric_comparison_reads_typed_and_normalized_values_alike():
    tree = {"op": ">", "left": ref("ph", "value", "number"), "right": {"op": "num", "value": "7.25"}}
    assert evaluate(tree, {"ph": {"value": Decimal("7.3")}})
    assert evaluate(tree, {"ph": {"value": 7.3}})
    assert evaluate(tree, {"ph": {"value": "7.30"}})  # normalized form values are decimal text
    assert not evaluate(tree, {"ph": {"value": "7.20"}})
    assert not evaluate(tree, {"ph": {"value": "not a number"}})


def test_values_of_different_kinds_are_never_equal():
    assert not evaluate(parse("a.x == 1"), {"a": {"x": True}})
    assert not evaluate(parse("a.x == true"), {"a": {"x": 1}})
    assert not evaluate(parse('a.x == "5"'), {"a": {"x": 5}})
    assert evaluate(parse("a.x == 5"), {"a": {"x": 5.0}})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a.missing > 1", False),
        ("a.missing < 1", False),
        ("a.missing == 1", False),
        ("a.missing != 1", False),
        ("not a.missing == 1", True),
        ("a.missing == null", True),
        ("a.missing != null", False),
        ("a.present == null", False),
        ("a.present != null", True),
        ("a.missing in [1, 2]", False),
        ("a.missing not in [1, 2]", False),
        ("nostep.x == null", True),
        ("a.missing", False),
    ],
)
def test_a_missing_value_is_null_and_comparisons_with_null_are_false(source, expected):
    assert evaluate(parse(source), {"a": {"present": 3}}) is expected


def test_in_and_not_in():
    values = {"qc": {"result": "retest"}}
    assert evaluate(parse('qc.result in ["pass", "retest"]'), values)
    assert not evaluate(parse('qc.result not in ["pass", "retest"]'), values)
    assert evaluate(parse('qc.result not in ["fail"]'), values)


def test_a_bare_reference_is_true_only_for_boolean_true():
    tree = parse("check.contaminated")
    assert evaluate(tree, {"check": {"contaminated": True}})
    assert not evaluate(tree, {"check": {"contaminated": "yes"}})
    assert not evaluate(tree, {"check": {"contaminated": 1}})


def test_references_lists_every_field_read():
    tree = parse("a.x > 1 and not (b.y == 2 or c.z in [3])")
    assert [(node["step"], node["field"]) for node in references(tree)] == [("a", "x"), ("b", "y"), ("c", "z")]


# --- properties ----------------------------------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda name: name not in {"and", "or", "not", "in", "true", "false", "null"}
)
_refs = st.builds(lambda step, field: {"op": "ref", "step": step, "field": field}, _names, _names)
_numbers = st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**6), max_value=10**6).map(
    lambda d: {"op": "num", "value": format(d.normalize(), "f") if d != 0 else "0"}
)
_literals = st.one_of(
    _numbers,
    st.builds(lambda v: {"op": "lit", "value": v}, st.text(max_size=8)),
    st.builds(lambda v: {"op": "lit", "value": v}, st.booleans()),
)
_operands = st.one_of(_refs, _literals, st.just({"op": "lit", "value": None}))
_comparisons = st.one_of(
    st.builds(
        lambda op, left, right: {"op": op, "left": left, "right": right},
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        _operands,
        _operands,
    ),
    st.builds(
        lambda op, left, items: {"op": op, "left": left, "items": items},
        st.sampled_from(["in", "not in"]),
        _operands,
        st.lists(_literals, min_size=1, max_size=3),
    ),
    _refs,
)
_conditions = st.recursive(
    _comparisons,
    lambda inner: st.one_of(
        st.builds(lambda arg: {"op": "not", "arg": arg}, inner),
        st.builds(
            lambda op, args: {"op": op, "args": args},
            st.sampled_from(["and", "or"]),
            st.lists(inner, min_size=2, max_size=3),
        ),
    ),
    max_leaves=12,
)
_form_values = st.dictionaries(
    _names,
    st.dictionaries(
        _names,
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.decimals(),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=2),
        ),
        max_size=3,
    ),
    max_size=3,
)


@settings(max_examples=300)
@given(_conditions)
def test_any_condition_tree_round_trips_through_its_text(tree):
    assert parse(to_source(tree)) == tree


@settings(max_examples=300)
@given(_conditions, _form_values)
def test_evaluating_never_raises_whatever_the_values(tree, values):
    assert evaluate(tree, values) in (True, False)


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(list("ab.c_ 01.5\"'()[],=!<>-\\notadrifuels@#")), max_size=40))
def test_garbage_only_ever_raises_expression_error(source):
    try:
        tree = parse(source)
    except ExpressionError as error:
        assert 0 <= error.position <= len(source)
    else:
        assert parse(to_source(tree)) == tree


@given(st.text(max_size=30))
def test_arbitrary_unicode_only_ever_raises_expression_error(source):
    try:
        parse(source)
    except ExpressionError:
        pass


@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-1000, max_value=1000),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-1000, max_value=1000),
)
def test_numeric_ordering_matches_arithmetic(value, limit):
    tree = parse(f"m.x <= {limit}")
    assert evaluate(tree, {"m": {"x": value}}) is (value <= limit)
    assert evaluate(tree, {"m": {"x": float(value)}}) is (Decimal(repr(float(value))) <= limit)
