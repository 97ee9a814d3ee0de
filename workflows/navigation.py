"""Where a lane of a run stands in its plan, and which human steps it opens next: the look-ahead.

A completion's (or an approval's) own activity records the steps it opens next in its transaction, so a
step completion costs one local activity, not two. That needs the next human steps told *before* the
interpreter gets there: `next_human_steps` walks the plan from where the lane stands, the way the
interpreter in run.py will, and answers only the plain cases (the next step is a task or an approval whose
condition reads values known now); anything else (a timer, a parallel step, a skipped step) is "not sure"
(None), and the interpreter records it with its own activity.

Pure: plan nodes and values in, plan nodes out; no Temporal, no clock. tests/run_workflow/test_navigation.py
checks it against a model of the interpreter over random plans, and against the interpreter itself over
the shipped protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from domain.protocols.expressions import evaluate
from domain.protocols.plan import ApprovalNode, ParallelNode, RepeatNode, SequenceNode, StepNode, TaskNode

HumanStep = TaskNode | ApprovalNode
Values = Mapping[str, Mapping[str, object]]  # {step key: {field key: value}}, what conditions read


@dataclass
class Lanes:
    """The branches of one parallel step still running, shared by the frames of all its branches."""

    running: int


@dataclass(frozen=True)
class Frame:
    """Where a lane stands: a step of a sequence, an iteration of a repeat, a branch of a parallel step."""

    node: SequenceNode | RepeatNode | ParallelNode
    index: int = 0  # sequence: the step's position; repeat: the iteration
    lanes: Lanes | None = None  # parallel: its branches still running


Path = tuple[Frame, ...]  # outermost frame first; the root sequence's frame is the first


def next_human_steps(path: Path, values: Values) -> list[HumanStep] | None:
    """The human steps the interpreter opens next in this lane once the step at `path` is done: [] for nothing
    (the plan ends, or other branches of a parallel step still run), None when that cannot be told now."""
    for frame in reversed(path):  # innermost frame first
        node = frame.node
        if isinstance(node, SequenceNode) and frame.index + 1 < len(node.steps):
            return first_human_step(node.steps[frame.index + 1], values)
        if isinstance(node, RepeatNode) and frame.index + 1 < node.max_iterations \
                and not evaluate(node.until, values):
            return first_human_step(node.body, values)
        if isinstance(node, ParallelNode) and frame.lanes is not None and frame.lanes.running > 1:
            return []  # the other branches still run: this lane just ends
    return []  # the end of the plan


def first_human_step(node: StepNode | SequenceNode, values: Values) -> list[HumanStep] | None:
    """The human step that starting `node` opens at once: [it], or None when starting it does anything else
    first (a skipped step records its own event, a timer waits, a parallel step opens several)."""
    if isinstance(node, SequenceNode):
        return first_human_step(node.steps[0], values)
    if node.when is not None and not evaluate(node.when, values):
        return None
    if isinstance(node, TaskNode | ApprovalNode):
        return [node]
    if isinstance(node, RepeatNode):
        return first_human_step(node.body, values)
    return None
