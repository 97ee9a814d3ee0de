"""Compiling protocols: the shipped examples, every check an author can trip, and the content hash."""

import copy
import json

import pytest

from domain.protocols.compiler import compile_protocol, content_hash
from domain.protocols.expressions import evaluate
from domain.protocols.loader import (
    ProtocolLoadError,
    example_protocols,
    load_definition,
    parse_protocol_text,
)
from domain.protocols.plan import ExecutionPlan, ParallelNode, RepeatNode, TaskNode


def task(key, **extra):
    step = {
        "kind": "task",
        "key": key,
        "title": key.replace("_", " ").title(),
        "roles": ["technician"],
        "form": {"key": key, "fields": [{"key": "value", "label": "Value", "type": "number"}]},
    }
    return {**step, **extra}


def approval(key="ok", **extra):
    return {
        "kind": "approval",
        "key": key,
        "title": "Sign off",
        "roles": ["lab_manager"],
        "meaning": "approved",
        **extra,
    }


def parallel(key, *branches):
    return {"kind": "parallel", "key": key, "title": "Together", "branches": list(branches)}


def repeat(key, steps, until="true", max_iterations=3):
    return {
        "kind": "repeat",
        "key": key,
        "title": "Again",
        "steps": steps,
        "until": until,
        "max_iterations": max_iterations,
    }


def timer(key, duration="PT1H"):
    return {"kind": "timer", "key": key, "title": "Wait", "duration": duration}


def protocol(*steps, **extra):
    return {"key": "test-protocol", "title": "Test protocol", "steps": list(steps), **extra}


def problems_of(document, version=1):
    result = compile_protocol(document, version)
    assert result.ok is (not result.problems)
    assert (result.plan is None) is bool(result.problems)
    return [str(problem) for problem in result.problems]


# --- the shipped examples ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["agrobacterium-transformation", "fungal-culture-passage", "plant-tissue-subculture"])
def test_every_shipped_example_compiles_without_problems(key):
    result = compile_protocol(example_protocols()[key], version=3)
    assert result.problems == []
    assert result.plan is not None
    assert result.plan.version == 3
    assert result.plan.protocol_key == key
    # The run workflow receives the plan as JSON: it must come back identical.
    assert ExecutionPlan.model_validate_json(result.plan.model_dump_json()) == result.plan


def test_the_agrobacterium_plan_carries_what_the_demo_needs():
    plan = compile_protocol(example_protocols()["agrobacterium-transformation"], 1).plan
    assert plan is not None
    assert {"BSL-1", "recombinant_dna", "gmo"} <= set(plan.regulatory_tags)

    inoculation = plan.step("inoculation")
    assert isinstance(inoculation, TaskNode)
    assert inoculation.due_seconds == 30 * 60
    assert [(level.seconds_after_due, level.notify_role) for level in inoculation.escalation] == [
        (15 * 60, "lab_manager"),
        (3600, "admin"),
    ]
    assert plan.step("cocultivation").duration_seconds == 48 * 3600

    approval = plan.step("biosafety_release")
    assert approval.meaning == "approved"
    assert approval.roles == ["lab_manager"]  # a technician cannot sign
    assert (approval.on_reject.action, approval.on_reject.from_step) == ("repeat", "preparation")
    assert "inoculation" in approval.reviews

    technician_tasks = [
        node
        for key, entry in plan.steps_index.items()
        if entry.kind == "task"
        for node in [plan.step(key)]
        if "technician" in node.roles and node.form and node.checklist
    ]
    assert len(technician_tasks) >= 2

    preparation = plan.step("preparation")
    assert isinstance(preparation, ParallelNode)
    assert [branch.steps[0].key for branch in preparation.branches] == ["culture_prep", "explant_prep"]
    assert plan.steps_index["explant_prep"].path == "steps[0].branches[1][0]"
    assert plan.steps_index["explant_prep"].within == ["preparation"]


def test_a_when_condition_is_compiled_with_field_types_and_evaluates():
    plan = compile_protocol(example_protocols()["agrobacterium-transformation"], 1).plan
    rescue = plan.step("overgrowth_rescue")
    assert rescue.when_source == "regeneration_check.agro_overgrowth == true"
    assert rescue.when["left"]["type"] == "boolean"
    assert evaluate(rescue.when, {"regeneration_check": {"agro_overgrowth": True}})
    assert not evaluate(rescue.when, {"regeneration_check": {"agro_overgrowth": False}})


def test_the_plant_repeat_stops_on_enough_shoots_reading_normalized_integers():
    plan = compile_protocol(example_protocols()["plant-tissue-subculture"], 1).plan
    cycle = plan.step("subculture_cycle")
    assert isinstance(cycle, RepeatNode)
    assert cycle.max_iterations == 6
    assert [step.key for step in cycle.body.steps] == ["explant_prep", "subculture", "growth_period", "shoot_count"]
    assert evaluate(cycle.until, {"shoot_count": {"shoots": 250}})
    assert not evaluate(cycle.until, {"shoot_count": {"shoots": 120}})
    assert plan.steps_index["shoot_count"].within == ["subculture_cycle"]


def test_looking_up_an_unknown_step_raises_key_error():
    plan = compile_protocol(protocol(task("weigh")), 1).plan
    assert plan.step("weigh").key == "weigh"
    with pytest.raises(KeyError):
        plan.step("nope")


# --- every check reports its path --------------------------------------------------------------


def with_field(**field):
    return protocol(task("measure", form={"key": "measure", "fields": [{"key": "x", "label": "X", **field}]}))


CASES = [
    # shape
    (protocol(task("a", colour="red")), "steps[0].colour: unknown attribute"),
    (protocol({"key": "a", "title": "A"}), "steps[0]: missing 'kind' (task, approval, timer, parallel, repeat)"),
    (
        protocol({"kind": "pause", "key": "a", "title": "A"}),
        "steps[0]: unknown step kind 'pause'; expected one of task, approval, timer, parallel, repeat",
    ),
    (protocol({"kind": "timer", "key": "t", "title": "T"}), "steps[0].duration: required"),
    (
        protocol(parallel("p", [{"kind": "timer", "key": "t", "title": "T"}])),
        "steps[0].branches[0][0].duration: required",
    ),
    # keys and names
    ({**protocol(task("a")), "key": "Test Protocol"}, "key: must be a slug of 2-64 lowercase letters"),
    ({**protocol(task("a")), "key": "1abc"}, "key: must be a slug of 2-64 lowercase letters"),
    ({**protocol(task("a")), "key": "x"}, "key: must be a slug of 2-64 lowercase letters"),
    (protocol(task("Weigh")), "steps[0].key: 'Weigh' must be a lowercase identifier"),
    (protocol(task("not")), "steps[0].key: 'not' is a reserved word of conditions"),
    (protocol(task("a", title="  ")), "steps[0].title: must not be empty"),
    (protocol(task("a"), {**task("b"), "key": "a"}), "steps[1].key: duplicate step key 'a' (also at steps[0])"),
    (
        protocol(task("a"), repeat("r", [task("a")])),
        "steps[1].steps[0].key: duplicate step key 'a' (also at steps[0])",
    ),
    ({**protocol(task("a")), "regulatory_tags": ["BSL-2", "bsl2"]}, "regulatory_tags[1]: unknown tag 'bsl2'"),
    # roles
    (protocol(task("a", roles=["technician", "intern"])), "steps[0].roles[1]: unknown role 'intern'"),
    (protocol(task("a", roles=[])), "steps[0].roles: needs at least one role"),
    # forms
    (with_field(type="number", min=10, max=2), "steps[0].form.fields[0].max: below min 10"),
    (with_field(type="number", precision=13), "steps[0].form.fields[0].precision: must be between 0 and 12"),
    (
        with_field(type="number", precision=1, min=0.05),
        "steps[0].form.fields[0].min: has more decimal places than precision 1",
    ),
    (with_field(type="integer", min=1.5), "steps[0].form.fields[0].min: must be a whole number for an integer field"),
    (with_field(type="integer", precision=2), "steps[0].form.fields[0].precision: only for number fields"),
    (with_field(type="text", options=["a"]), "steps[0].form.fields[0].options: only for choice fields"),
    (with_field(type="text", max_length=0), "steps[0].form.fields[0].max_length: must be between 1 and 10000"),
    (
        with_field(type="choice", options=[]),
        "steps[0].form.fields[0].options: a choice field needs at least one option",
    ),
    (with_field(type="choice"), "steps[0].form.fields[0].options: a choice field needs at least one option"),
    (
        with_field(type="choice", options=["pass", "pass"]),
        "steps[0].form.fields[0].options[1]: duplicate option 'pass'",
    ),
    (with_field(type="colour"), "steps[0].form.fields[0].type: input should be 'number', 'integer'"),
    (
        protocol(task("a", form={"key": "a", "fields": [{"key": "x", "label": "X", "type": "text"}] * 2})),
        "steps[0].form.fields[1].key: duplicate field key 'x'",
    ),
    (protocol(task("a", form={"key": "a", "fields": []})), "steps[0].form.fields: needs at least one field"),
    (
        protocol(task("a", form={"key": "Form A", "fields": []})),
        "steps[0].form.key: 'Form A' must be a lowercase identifier",
    ),
    (
        protocol(task("a"), task("b", form={"key": "a", "fields": [{"key": "y", "label": "Y", "type": "text"}]})),
        "steps[1].form.key: form 'a' is already defined differently at steps[0].form",
    ),
    (
        protocol(task("a", checklist=[{"key": "tape", "text": "Tape"}, {"key": "tape", "text": "Again"}])),
        "steps[0].checklist[1].key: duplicate checklist item 'tape'",
    ),
    # durations and escalation
    (protocol(task("a", due="4h")), "steps[0].due: '4h' is not an ISO-8601 duration like PT30M, PT4H or P2D"),
    (protocol(task("a", due="P1M")), "steps[0].due: 'P1M' is not an ISO-8601 duration"),
    (protocol(task("a", due="PT0S")), "steps[0].due: must be longer than zero"),
    (protocol(task("a", due="P400D")), "steps[0].due: longer than 366 days"),
    (protocol(timer("t", "PT")), "steps[0].duration: 'PT' is not an ISO-8601"),
    (
        protocol(task("a", escalation={"levels": [{"after": "PT1H", "notify_role": "lab_manager"}]})),
        "steps[0].escalation: needs a due time: levels count from when the step is due",
    ),
    (
        protocol(
            task(
                "a",
                due="PT30M",
                escalation={
                    "levels": [
                        {"after": "PT1H", "notify_role": "lab_manager"},
                        {"after": "PT30M", "notify_role": "admin"},
                    ]
                },
            )
        ),
        "steps[0].escalation.levels[1].after: must be later than the level before",
    ),
    (
        protocol(task("a", due="PT30M", escalation={"levels": [{"after": "PT1H", "notify_role": "boss"}]})),
        "steps[0].escalation.levels[0].notify_role: unknown role 'boss'",
    ),
    # sequences, repeats
    (protocol(), "steps: needs at least one step"),
    (protocol(parallel("p", [task("a")], [])), "steps[0].branches[1]: needs at least one step"),
    (protocol(parallel("p")), "steps[0].branches: needs at least one branch"),
    (
        protocol(repeat("r", [])),
        "steps[0].steps: needs at least one step",
    ),
    (
        protocol(repeat("r", [task("a")], "a.value > 1", max_iterations=0)),
        "steps[0].max_iterations: must be between 1 and 20",
    ),
    (
        protocol(repeat("r", [task("a")], "a.value > 1", max_iterations=21)),
        "steps[0].max_iterations: must be between 1 and 20",
    ),
    # conditions
    (protocol(task("a"), task("b", when="a.value >")), "steps[1].when: expected a value, found the end at position 9"),
    (protocol(task("a"), task("b", when="foo.value > 1")), "steps[1].when: unknown step 'foo'"),
    (protocol(task("a", when="b.value > 1"), task("b")), "steps[0].when: step 'b' has not run yet at this point"),
    (protocol(task("a", when="a.value > 1")), "steps[0].when: step 'a' has not run yet at this point"),
    (
        protocol(parallel("p", [task("a")], [task("b", when="a.value > 1")])),
        "steps[0].branches[1][0].when: step 'a' has not run yet at this point",
    ),
    (
        protocol(timer("t"), task("b", when="t.value > 1")),
        "steps[1].when: step 't' has no form",
    ),
    (protocol(task("a"), task("b", when="a.ph > 1")), "steps[1].when: step 'a' has no field 'ph'"),
    (
        protocol(task("a"), task("b", when='a.value == "high"')),
        'steps[1].when: cannot compare a.value (number) with "high" (text)',
    ),
    (
        protocol(task("a"), task("b", when="a.value")),
        "steps[1].when: a.value is not a condition; compare it with something",
    ),
    (protocol(task("a"), task("b", when="a.value < null")), "steps[1].when: '<' with null is always false"),
    (
        protocol(
            task(
                "qc",
                form={
                    "key": "qc",
                    "fields": [{"key": "result", "label": "R", "type": "choice", "options": ["pass", "fail"]}],
                },
            ),
            task("b", when='qc.result in ["pass", "maybe"]'),
        ),
        "steps[1].when: 'maybe' is not an option of qc.result (pass, fail)",
    ),
    (
        protocol(
            task("qc", form={"key": "qc", "fields": [{"key": "note", "label": "N", "type": "text"}]}),
            task("b", when='qc.note > "a"'),
        ),
        "steps[1].when: '>' compares numbers, but qc.note is text",
    ),
    (protocol(task("a"), task("b", when="1 > 2")), "steps[1].when: always false, so step 'b' never runs"),
    (
        protocol(task("a"), task("b", when="a.value > 1 and false")),
        "steps[1].when: always false, so step 'b' never runs",
    ),
    (
        protocol(repeat("r", [task("a")], "later.value > 1"), task("later")),
        "steps[0].until: step 'later' has not run yet at this point",
    ),
    # approvals
    (
        protocol(task("a"), approval(on_reject={"action": "repeat", "from_step": "b"}), task("b")),
        "steps[1].on_reject.from_step: 'b' is not an earlier step in the same sequence",
    ),
    (
        protocol(
            parallel("p", [task("a")]),
            approval(on_reject={"action": "repeat", "from_step": "a"}),
        ),
        "steps[1].on_reject.from_step: 'a' is not an earlier step in the same sequence",
    ),
    (
        protocol(task("a"), approval(on_reject={"action": "repeat", "from_step": "zz"})),
        "steps[1].on_reject.from_step: unknown step 'zz'",
    ),
    (
        protocol(task("a"), approval(on_reject={"action": "repeat"})),
        "steps[1].on_reject.from_step: required to repeat",
    ),
    (
        protocol(task("a"), approval(on_reject={"action": "end_run", "from_step": "a"})),
        "steps[1].on_reject.from_step: only goes with action 'repeat'",
    ),
    (
        protocol(task("a"), approval(meaning="liked")),
        "steps[1].meaning: input should be 'approved', 'reviewed', 'verified' or 'responsibility'",
    ),
    (
        protocol(
            parallel("p", [task("a")]),
            approval(),
            on_reject={"action": "repeat", "from_step": "a"},
        ),
        "steps[1].on_reject: the protocol's on_reject repeats from 'a', which is not an earlier step",
    ),
    (
        protocol(task("a"), on_reject={"action": "repeat", "from_step": "nowhere"}),
        "on_reject.from_step: unknown step 'nowhere'",
    ),
]


@pytest.mark.parametrize(
    ("document", "expected"),
    CASES,
    ids=[expected.split(":")[0] + " " + expected.split(": ", 1)[1][:40] for _, expected in CASES],
)
def test_each_check_reports_its_path_and_reason(document, expected):
    problems = problems_of(document)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_a_version_below_one_is_refused():
    assert problems_of(protocol(task("a")), version=0) == ["version: must be 1 or more"]


def test_every_problem_is_reported_not_just_the_first():
    document = protocol(
        task("a", roles=["intern"], due="soon"),
        with_field(type="number", min=5, max=1)["steps"][0],
        task("c", when="zz.value > 1"),
    )
    problems = problems_of(document)
    assert "steps[0].roles[0]: unknown role 'intern'" in " | ".join(problems)
    assert any(problem.startswith("steps[0].due: 'soon'") for problem in problems)
    assert "steps[1].form.fields[0].max: below min 5" in problems
    assert "steps[2].when: unknown step 'zz'" in problems
    assert len(problems) == 4


def test_every_schema_problem_is_reported_too():
    problems = problems_of(
        protocol({"key": "a"}, {"kind": "timer", "key": "t", "title": 5, "duration": "PT1H"}, extra=1)
    )
    assert problems == [
        "steps[0]: missing 'kind' (task, approval, timer, parallel, repeat)",
        "steps[1].title: input should be a valid string",
        "extra: unknown attribute",
    ]


def test_identical_form_reuse_is_allowed():
    form = {"key": "weighing", "fields": [{"key": "mass_g", "label": "Mass", "type": "number", "unit": "g"}]}
    assert problems_of(protocol(task("before", form=form), task("after", form=form))) == []


def test_a_condition_may_read_any_earlier_step_including_a_repeat_body_and_all_branches():
    document = protocol(
        parallel("p", [task("a")], [task("b")]),
        repeat("r", [task("c", when="b.value > 0")], until="c.value >= a.value"),
        task("d", when="c.value > 1 and a.value < 2"),
    )
    assert problems_of(document) == []


def test_an_approval_without_on_reject_follows_the_protocol_default():
    document = protocol(
        task("a"),
        approval(meaning="reviewed"),
        on_reject={"action": "repeat", "from_step": "a"},
    )
    plan = compile_protocol(document, 1).plan
    assert plan.step("ok").on_reject.from_step == "a"
    assert compile_protocol(protocol(task("a"), document["steps"][1]), 1).plan.step("ok").on_reject.action == "end_run"


# --- content hash --------------------------------------------------------------------------------


def reordered(value):
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    return value


def test_content_hash_ignores_key_order_and_spelled_out_defaults():
    document = example_protocols()["agrobacterium-transformation"]
    baseline = content_hash(document)
    assert len(baseline) == 64
    assert content_hash(reordered(document)) == baseline
    assert content_hash(json.loads(json.dumps(document))) == baseline

    explicit = copy.deepcopy(document)
    explicit["steps"][1]["form"]["fields"][0]["required"] = True  # the default, written out
    explicit["steps"][1]["instructions"] += ""
    assert content_hash(explicit) == baseline


def test_content_hash_reads_numbers_by_value():
    assert content_hash(with_field(type="number", min=7, max=7.5)) == content_hash(
        with_field(type="number", min=7.0, max="7.50")
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(title=d["title"] + " (rev)"),
        lambda d: d["steps"][1]["form"]["fields"][1].update(max=31),
        lambda d: d["steps"][1].update(due="PT45M"),
        lambda d: d["steps"][0]["branches"][0][0]["checklist"].pop(),
        lambda d: d["steps"].insert(0, d["steps"].pop(2)),  # same steps, different order
    ],
)
def test_content_hash_changes_with_content(change):
    document = example_protocols()["agrobacterium-transformation"]
    changed = copy.deepcopy(document)
    change(changed)
    assert content_hash(changed) != content_hash(document)


def test_the_plan_carries_the_content_hash():
    document = example_protocols()["fungal-culture-passage"]
    assert compile_protocol(document, 1).plan.content_hash == content_hash(document)


# --- loading -----------------------------------------------------------------------------------


def test_yaml_and_json_text_load_the_same_document():
    yaml_text = "key: k\ntitle: T\nsteps:\n  - {kind: timer, key: t, title: T, duration: PT1H}\n"
    json_text = json.dumps(
        {"key": "k", "title": "T", "steps": [{"kind": "timer", "key": "t", "title": "T", "duration": "PT1H"}]}
    )
    assert parse_protocol_text(yaml_text) == parse_protocol_text(json_text)
    assert load_definition(yaml_text).steps[0].key == "t"


def test_a_key_written_twice_is_refused_rather_than_silently_dropped():
    with pytest.raises(ProtocolLoadError) as caught:
        parse_protocol_text("key: k\ntitle: T\ntitle: Other\nsteps: []\n")
    assert str(caught.value) == "line 3, column 1: key 'title' appears twice in the same mapping"


def test_yaml_syntax_errors_say_where():
    with pytest.raises(ProtocolLoadError) as caught:
        parse_protocol_text("key: k\ntitle: T\n  roles: [lab_manager\n")
    assert str(caught.value).startswith("line 3, column 8: ")


def test_load_definition_reports_shape_problems_with_paths():
    with pytest.raises(ProtocolLoadError) as caught:
        load_definition("key: k\ntitle: T\nsteps:\n  - {kind: timer, key: t}\n")
    assert [str(problem) for problem in caught.value.problems] == [
        "steps[0].title: required",
        "steps[0].duration: required",
    ]


def test_schema_problems_do_not_hide_the_content_problems_of_the_rest():
    """What the author sees at once: misshapen parts and every content rule broken elsewhere, by the paths
    of the document as written; nothing that only echoes a part set aside."""
    misshapen_field = task("b", when="a.value > 1")
    misshapen_field["form"]["fields"].append({"key": "ph", "label": "pH", "type": "numbr"})
    document = protocol(
        task("a", roles=["intern"], colour="blue"),
        misshapen_field,
        {"key": "lost", "title": "No kind"},
        task("c", due="soon", when="lost.value > 1"),
        timer("c"),
        timer("a"),
    )
    problems = problems_of(document)
    assert problems[:3] == [
        "steps[0].colour: unknown attribute",
        "steps[1].form.fields[1].type: input should be 'number', 'integer', 'text', 'choice', 'boolean', "
        "'datetime', 'date', 'sample_ref', 'batch_ref' or 'evidence_ref'",
        "steps[2]: missing 'kind' (task, approval, timer, parallel, repeat)",
    ]
    rest = problems[3:]
    assert "steps[0].roles[0]: unknown role 'intern'" in " | ".join(rest)
    assert any(p.startswith("steps[3].due: 'soon'") for p in rest)  # its index in the document as written
    assert "steps[5].key: duplicate step key 'a' (also at steps[0])" in rest
    assert "steps[4].key: duplicate step key 'c' (also at steps[3])" in rest
    assert not any("lost" in p for p in rest)  # the step set aside is not reported again as unknown
    assert len(rest) == 4, rest


def test_steps_that_make_and_use_up_material_name_fields_of_their_form():
    fields = [{"key": "parent", "label": "Parent", "type": "sample_ref"},
              {"key": "n", "label": "Plates", "type": "integer"},
              {"key": "medium", "label": "Medium", "type": "batch_ref"}]
    good = task("sub", form={"key": "sub", "fields": fields}, consumes=["parent"],
                produces={"type": "plate", "operation": "subculture", "count_field": "n", "from_field": "parent"})
    result = compile_protocol(protocol(good), 1)
    assert result.ok and result.plan is not None
    node = result.plan.root.steps[0]
    assert isinstance(node, TaskNode) and node.consumes == ["parent"]
    assert node.produces is not None and node.produces.from_fields == ["parent"] and node.produces.count is None
    bad = task("sub2", form={"key": "sub2", "fields": fields}, consumes=["medium", "nope"],
               produces={"type": "flask", "operation": "cloning", "count": 2, "count_field": "parent",
                         "from_field": ["medium"]})
    assert problems_of(protocol(bad)) == [
        "steps[0].produces.type: unknown sample type 'flask'; known: culture, plate, callus, explant, "
        "spore_suspension, dna_prep, plasmid_prep, glycerol_stock, seed, tissue, medium, other",
        "steps[0].produces.operation: unknown operation 'cloning'; known: aliquot, subculture, passage, pooling, "
        "transformation, extraction",
        "steps[0].produces: give count or count_field, not both",
        "steps[0].produces.count_field: field 'parent' is sample_ref; it must be integer",
        "steps[0].produces.from_field[0]: field 'medium' is batch_ref; it must be sample_ref",
        "steps[0].consumes[0]: field 'medium' is batch_ref; it must be sample_ref",
        "steps[0].consumes[1]: 'nope' is not a field of this step's form",
    ]
    # A step without them hashes as before they existed: approved versions keep their content hash.
    assert content_hash(protocol(task("plain"))) == content_hash(protocol(task("plain", consumes=[], produces=None)))
