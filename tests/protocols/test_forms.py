"""What a technician can submit for a task, and the canonical values the record keeps."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.protocols.compiler import compile_protocol
from domain.protocols.forms import SubmissionError, normalize_values, typed_values, validate_submission
from domain.protocols.loader import example_protocols
from domain.protocols.plan import ChecklistItem, FormField, FormSpec, TaskNode


def media_task(**overrides) -> TaskNode:
    fields = [
        FormField(key="ph", label="pH", type="number", min=Decimal(0), max=Decimal("7.5"), precision=2),
        FormField(key="volume_ml", label="Volume", type="integer", unit="mL", min=Decimal(50), max=Decimal(5000)),
        FormField(key="od600", label="OD600", type="number", unit="OD600", required=False),
        FormField(key="media_lot", label="Lot", type="text", max_length=12),
        FormField(key="medium", label="Medium", type="choice", options=["PDA", "MEA"]),
        FormField(key="autoclaved", label="Autoclaved", type="boolean"),
        FormField(key="poured_at", label="Poured", type="datetime"),
        FormField(key="prepared_on", label="Prepared", type="date", required=False),
        FormField(key="batch", label="Batch", type="batch_ref"),
        FormField(key="photo", label="Photo", type="evidence_ref", required=False),
    ]
    node = TaskNode(
        key="media_prep",
        title="Media prep",
        roles=["technician"],
        form=FormSpec(key="media", fields=fields),
        checklist=[
            ChecklistItem(key="tape_changed", text="Tape changed"),
            ChecklistItem(key="caps_loose", text="Caps"),
        ],
    )
    return node.model_copy(update=overrides)


GOOD = {
    "ph": "5.6",
    "volume_ml": 500,
    "media_lot": "LOT-2291",
    "medium": "PDA",
    "autoclaved": True,
    "poured_at": "2024-05-01T09:30:00+02:00",
    "batch": "B-2024-0117",
}
ALL_TICKED = ["tape_changed", "caps_loose"]


def problems(values, checklist=ALL_TICKED, node=None):
    return [str(problem) for problem in validate_submission(node or media_task(), values, checklist)]


def test_a_complete_submission_has_no_problems():
    assert problems(GOOD) == []
    assert problems(GOOD, {"tape_changed": True, "caps_loose": True}) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ph": "7.6"}, "values.ph: above max 7.5"),
        ({"ph": -1}, "values.ph: below min 0"),
        ({"ph": "5.655"}, "values.ph: more than 2 decimal places"),
        ({"ph": "acidic"}, "values.ph: not a number"),
        ({"ph": True}, "values.ph: not a number"),
        ({"ph": float("nan")}, "values.ph: not a number"),
        ({"ph": "NaN"}, "values.ph: not a number"),
        ({"ph": None}, "values.ph: required"),
        ({"ph": ""}, "values.ph: required"),
        ({"od600": "1e30"}, "values.od600: out of range"),
        ({"od600": "0.0000000000001"}, "values.od600: more than 12 decimal places"),
        ({"volume_ml": 250.5}, "values.volume_ml: must be a whole number"),
        ({"volume_ml": "ten"}, "values.volume_ml: must be a whole number"),
        ({"volume_ml": 10}, "values.volume_ml: below min 50"),
        ({"media_lot": "LOT-2291-REVISED"}, "values.media_lot: longer than 12 characters"),
        ({"media_lot": 2291}, "values.media_lot: must be text"),
        ({"medium": "pda"}, "values.medium: not one of: PDA, MEA"),
        ({"autoclaved": "yes"}, "values.autoclaved: must be true or false"),
        ({"autoclaved": None}, "values.autoclaved: required"),
        ({"poured_at": "2024-05-01T09:30:00"}, "values.poured_at: not an ISO-8601 date-time with a timezone"),
        ({"poured_at": "yesterday"}, "values.poured_at: not an ISO-8601 date-time with a timezone"),
        ({"prepared_on": "01/05/2024"}, "values.prepared_on: not an ISO-8601 date (YYYY-MM-DD)"),
        ({"batch": "B 2024"}, "values.batch: must be an id without spaces"),
        ({"batch": "   "}, "values.batch: required"),
        ({"photo": "x" * 129}, "values.photo: must be an id without spaces, at most 128 characters"),
        ({"colour": "blue"}, "values.colour: not a field of this form"),
    ],
)
def test_each_wrong_value_is_named_with_its_reason(change, expected):
    found = problems({**GOOD, **change})
    assert len(found) == 1
    assert found[0].startswith(expected)


def test_every_problem_is_reported_at_once():
    found = problems({**GOOD, "ph": "9", "medium": "agar", "extra": 1}, checklist=["caps_loose", "mystery"])
    assert found == [
        "values.ph: above max 7.5",
        "values.medium: not one of: PDA, MEA",
        "values.extra: not a field of this form",
        "checklist.tape_changed: not confirmed",
        "checklist.mystery: not on this checklist",
    ]


def test_a_checklist_item_ticked_false_is_not_confirmed():
    assert problems(GOOD, {"tape_changed": True, "caps_loose": False}) == ["checklist.caps_loose: not confirmed"]


def test_a_task_with_only_a_checklist_refuses_values():
    node = media_task(form=None)
    assert problems({}, node=node) == []
    assert problems({"ph": 7}, node=node) == ["values.ph: not a field of this form"]


def test_normalized_values_are_canonical_json_safe_text():
    normalized = normalize_values(media_task(), {**GOOD, "od600": 0.1, "ph": 5.6, "volume_ml": "500"})
    assert normalized == {
        "ph": "5.60",  # padded to the field's precision
        "volume_ml": 500,
        "od600": "0.1",  # a float is read through its shortest repr, never 0.1000000000000000055...
        "media_lot": "LOT-2291",
        "medium": "PDA",
        "autoclaved": True,
        "poured_at": "2024-05-01T07:30:00.000000Z",  # UTC, the audit log's timestamp format
        "prepared_on": None,  # every field present; empty ones are null
        "batch": "B-2024-0117",
        "photo": None,
    }
    assert not any(isinstance(value, float) for value in normalized.values())


def test_normalizing_twice_changes_nothing():
    once = normalize_values(media_task(), {**GOOD, "od600": "2.500", "prepared_on": "2024-05-01"})
    assert normalize_values(media_task(), once) == once
    assert once["od600"] == "2.5"


def test_negative_zero_is_recorded_as_zero():
    assert normalize_values(media_task(), {**GOOD, "ph": "-0.0"})["ph"] == "0.00"


def test_invalid_values_cannot_be_normalized():
    with pytest.raises(SubmissionError) as caught:
        normalize_values(media_task(), {**GOOD, "ph": "14"})
    assert [str(problem) for problem in caught.value.problems] == ["values.ph: above max 7.5"]


def test_typed_values_for_the_lake():
    typed = typed_values(media_task(), {**GOOD, "prepared_on": "2024-05-01"})
    assert typed["ph"] == Decimal("5.60") and isinstance(typed["ph"], Decimal)
    assert typed["volume_ml"] == 500 and isinstance(typed["volume_ml"], int)
    assert typed["poured_at"] == datetime(2024, 5, 1, 7, 30, tzinfo=UTC)
    assert typed["prepared_on"] == date(2024, 5, 1)
    assert typed["od600"] is None


def test_the_agrobacterium_culture_form_accepts_a_real_entry():
    plan = compile_protocol(example_protocols()["agrobacterium-transformation"], 1).plan
    node = plan.step("culture_prep")
    values = {
        "strain": "GV3101",
        "glycerol_stock": "GS-0042",
        "construct": "PL-pBIN19-GFP",
        "culture": "S-2024-0311",
        "overnight_temp_c": 28,
        "od600": "0.482",
        "acetosyringone_um": 100,
    }
    checklist = [item.key for item in node.checklist]
    assert validate_submission(node, values, checklist) == []
    assert normalize_values(node, values)["overnight_temp_c"] == "28.0"
    assert [str(p) for p in validate_submission(node, {**values, "od600": "0.4825"}, checklist)] == [
        "values.od600: more than 3 decimal places"
    ]


# --- properties ----------------------------------------------------------------------------------


@given(
    value=st.decimals(allow_nan=False, allow_infinity=False, places=5, min_value=-1000, max_value=1000),
    low=st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-1000, max_value=1000),
    span=st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=0, max_value=500),
    precision=st.integers(min_value=0, max_value=4),
    as_text=st.booleans(),
)
def test_a_number_is_accepted_exactly_when_it_is_in_range_and_precision(value, low, span, precision, as_text):
    high = low + span
    field = FormField(key="x", label="X", type="number", min=low, max=high, precision=precision)
    node = TaskNode(key="t", title="T", roles=["technician"], form=FormSpec(key="f", fields=[field]))
    submitted = format(value, "f") if as_text else value
    found = [str(problem) for problem in validate_submission(node, {"x": submitted}, [])]

    places = max(0, -value.normalize().as_tuple().exponent) if value != 0 else 0
    if places > precision:
        assert found == [f"values.x: more than {precision} decimal places"]
    elif value < low:
        assert found == [f"values.x: below min {format(low.normalize(), 'f') if low else '0'}"]
    elif value > high:
        assert found[0].startswith("values.x: above max")
    else:
        assert found == []
        text = normalize_values(node, {"x": submitted})["x"]
        assert Decimal(text) == value
        assert len(text.partition(".")[2]) == precision


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_either_normalizes_to_decimal_text_or_is_refused(number):
    field = FormField(key="x", label="X", type="number")
    node = TaskNode(key="t", title="T", roles=["technician"], form=FormSpec(key="f", fields=[field]))
    if validate_submission(node, {"x": number}, []):
        with pytest.raises(SubmissionError):
            normalize_values(node, {"x": number})
    else:
        text = normalize_values(node, {"x": number})["x"]
        assert isinstance(text, str)
        assert Decimal(text) == Decimal(repr(number))
