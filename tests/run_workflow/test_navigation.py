"""The look-ahead (workflows/navigation.py) against a model of the interpreter, over random plans and values,
and on the shipped protocols' plans.

The model walks a plan the way the interpreter in workflows/run.py executes it, one lane after another
(branches of a parallel step run one after the other here; a lane's end is an event while other branches
still run). After each human step, the look-ahead must name exactly the next human step the walk reaches
when nothing else happens first, [] when the lane or the plan ends there, and "not sure" (None) when the
walk does something else first (a skipped step, a timer, a parallel step opening).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.protocols.expressions import evaluate
from domain.protocols.plan import (
    ApprovalNode,
    FormField,
    FormSpec,
    OnReject,
    ParallelNode,
    RepeatNode,
    SequenceNode,
    StepNode,
    TaskNode,
    TimerNode,
)
from tests.run_workflow.scenarios import shipped_plan
from workflows.navigation import Frame, Lanes, Path, first_human_step, next_human_steps

Values = Mapping[str, Mapping[str, object]]
Event = tuple[str, StepNode | None, Path]  # (human | skipped | timer | parallel | lane_end, node, where)


# ---------------------------------------------------------------- a model of the interpreter


def walk(seq: SequenceNode, path: Path, values: Values) -> Iterator[Event]:
    for i, step in enumerate(seq.steps):
        yield from walk_step(step, (*path, Frame(seq, i)), values)


def walk_step(node: StepNode, path: Path, values: Values) -> Iterator[Event]:
    if node.when is not None and not evaluate(node.when, values):
        yield ("skipped", node, path)
    elif isinstance(node, TaskNode | ApprovalNode):
        yield ("human", node, path)
    elif isinstance(node, TimerNode):
        yield ("timer", node, path)
    elif isinstance(node, RepeatNode):
        for i in range(node.max_iterations):
            yield from walk(node.body, (*path, Frame(node, i)), values)
            if evaluate(node.until, values):
                break
    elif isinstance(node, ParallelNode):
        yield ("parallel", node, path)
        lanes = Lanes(running=len(node.branches))
        for branch in node.branches:
            yield from walk(branch, (*path, Frame(node, lanes=lanes)), values)
            if lanes.running > 1:
                yield ("lane_end", node, path)
            lanes.running -= 1


def expected_after(following: Event | None) -> list[StepNode] | None:
    if following is None or following[0] == "lane_end":
        return []
    if following[0] == "human":
        assert following[1] is not None
        return [following[1]]
    return None


def check_plan(root: SequenceNode, values: Values) -> int:
    """Every look-ahead along the walk is what the walk does next; how many human steps were checked."""
    events = walk(root, (), values)
    pending: list[tuple[StepNode, list[Any] | None]] = []  # predicted when the step was reached
    checked = 0
    for event in events:
        if pending:
            node, predicted = pending.pop()
            assert predicted == expected_after(event), (node.key, predicted, event[:2])
            checked += 1
        kind, node, path = event
        if kind == "human" and node is not None:
            # Predict now, while the lane counts are what they are when the step is done.
            pending.append((node, next_human_steps(path, values)))
    if pending:
        node, predicted = pending.pop()
        assert predicted == [], (node.key, predicted)
        checked += 1
    return checked


# ---------------------------------------------------------------- random plans

KEYS = [f"s{i}" for i in range(12)]
conditions = st.one_of(st.none(), st.sampled_from(KEYS).map(
    lambda key: {"op": "ref", "step": key, "field": "ok", "type": "boolean"}))
values_strategy = st.dictionaries(st.sampled_from(KEYS), st.fixed_dictionaries({"ok": st.booleans()}))

# Shapes first; keys are given in order when the plan is built.
leaf = st.tuples(st.sampled_from(["task", "approval", "timer"]), conditions)
shapes = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.tuples(st.just("parallel"), conditions, st.lists(st.lists(inner, min_size=1, max_size=3),
                                                            min_size=2, max_size=3)),
        st.tuples(st.just("repeat"), conditions, st.lists(inner, min_size=1, max_size=3),
                  st.sampled_from(KEYS), st.integers(1, 3)),
    ),
    max_leaves=10,
)


class _Builder:
    def __init__(self) -> None:
        self.n = 0

    def key(self) -> str:
        self.n += 1
        return f"s{self.n - 1}"

    def sequence(self, path: str, shapes: list[Any]) -> SequenceNode:
        return SequenceNode(key=path, steps=[self.step(s) for s in shapes])

    def step(self, shape: Any) -> StepNode:
        kind, when = shape[0], shape[1]
        key = self.key()
        common: dict[str, Any] = {"key": key, "when": when, "when_source": "" if when else None}
        if kind == "task":
            form = FormSpec(key=f"f_{key}", fields=[FormField(key="ok", label="OK", type="boolean")])
            return TaskNode(**common, title=key, roles=["technician"], form=form)
        if kind == "approval":
            return ApprovalNode(**common, title=key, roles=["lab_manager"], meaning="approved",
                                on_reject=OnReject(action="end_run"))
        if kind == "timer":
            return TimerNode(**common, title=key, duration_seconds=60)
        if kind == "parallel":
            return ParallelNode(**common, title=key, branches=[self.sequence(f"{key}.branches[{i}]", b)
                                                              for i, b in enumerate(shape[2])])
        _, _, body, until, most = shape
        return RepeatNode(**common, title=key, body=self.sequence(f"{key}.steps", body),
                          until={"op": "ref", "step": until, "field": "ok", "type": "boolean"}, until_source=until,
                          max_iterations=most)


def build(root_shapes: list[Any]) -> SequenceNode:
    return _Builder().sequence("steps", root_shapes)


@settings(max_examples=300, deadline=None)
@given(st.lists(shapes, min_size=1, max_size=5), values_strategy)
def test_the_look_ahead_names_what_the_interpreter_opens_next(root_shapes, values):
    check_plan(build(root_shapes), values)


@settings(max_examples=100, deadline=None)
@given(st.lists(shapes, min_size=1, max_size=5), values_strategy)
def test_the_look_ahead_names_at_most_one_human_step_of_the_plan(root_shapes, values):
    reached, predictions = set(), []
    for kind, node, path in walk(build(root_shapes), (), values):
        if kind == "human":
            reached.add(id(node))
            predictions.append(next_human_steps(path, values))  # now, while the lane counts are current
    for predicted in predictions:
        assert predicted is None or len(predicted) <= 1  # one lane opens one step at a time
        assert predicted is None or all(id(n) in reached for n in predicted)  # one the run does reach


# ---------------------------------------------------------------- the shipped protocols


def test_every_shipped_plan_agrees_with_the_model_whichever_way_its_conditions_go():
    fungal = shipped_plan("fungal-culture-passage")
    clean = {"growth_check": {"contaminated": False, "sporulating": True}}
    dirty = {"growth_check": {"contaminated": True, "sporulating": False}}
    assert check_plan(fungal.root, clean) == 1 + 2 + 1  # media, one passage (inoculation, check), the review
    assert check_plan(fungal.root, dirty) == 1 + 2 * 5 + 1  # five passages: the limit
    agro = shipped_plan("agrobacterium-transformation")
    assert check_plan(agro.root, {"regeneration_check": {"agro_overgrowth": True}}) == 7
    assert check_plan(agro.root, {"regeneration_check": {"agro_overgrowth": False}}) == 6  # no rescue
    plant = shipped_plan("plant-tissue-subculture")
    assert check_plan(plant.root, {"shoot_count": {"shoots": 240}}) == 1 + 3 + 1
    assert check_plan(plant.root, {"shoot_count": {"shoots": 10}}) == 1 + 3 * 6 + 1


def test_a_repeat_opens_its_first_step_again_until_its_condition_holds():
    plan = shipped_plan("fungal-culture-passage")
    passage = plan.step("passage")
    assert isinstance(passage, RepeatNode)
    check = passage.body.steps[2]
    at_check = (Frame(plan.root, 1), Frame(passage, 0), Frame(passage.body, 2))
    dirty = {"growth_check": {"contaminated": True, "sporulating": False}}
    clean = {"growth_check": {"contaminated": False, "sporulating": True}}
    assert next_human_steps(at_check, dirty) == [passage.body.steps[0]]  # inoculate fresh plates again
    assert next_human_steps(at_check, clean) == [plan.step("culture_review")]
    last = (Frame(plan.root, 1), Frame(passage, passage.max_iterations - 1), Frame(passage.body, 2))
    assert next_human_steps(last, dirty) == [plan.step("culture_review")]  # the limit: the run moves on
    assert check.key == "growth_check"
    # After inoculation comes the incubation timer: not a step for people, so the look-ahead is not sure.
    assert next_human_steps((Frame(plan.root, 1), Frame(passage, 0), Frame(passage.body, 0)), dirty) is None


def test_a_branch_that_ends_while_others_run_opens_nothing_the_last_one_opens_what_follows():
    plan = shipped_plan("agrobacterium-transformation")
    preparation = plan.step("preparation")
    assert isinstance(preparation, ParallelNode)
    branch = preparation.branches[0]
    for running, after in ((2, []), (1, [plan.step("inoculation")])):
        path = (Frame(plan.root, 0), Frame(preparation, lanes=Lanes(running)), Frame(branch, len(branch.steps) - 1))
        assert next_human_steps(path, {}) == after


def test_a_step_skipped_by_its_condition_is_left_to_the_interpreter():
    plan = shipped_plan("agrobacterium-transformation")
    rescue = plan.step("overgrowth_rescue")
    assert first_human_step(rescue, {"regeneration_check": {"agro_overgrowth": True}}) == [rescue]
    assert first_human_step(rescue, {"regeneration_check": {"agro_overgrowth": False}}) is None
