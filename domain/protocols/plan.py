"""The execution plan: a protocol version compiled into a small typed tree a run workflow walks.

The run workflow takes the frozen plan as input and interprets it (the samples-python `dsl` pattern), so
this module imports only pydantic and the standard library: the Temporal workflow sandbox imports it.
Every duration is already in whole seconds and every condition is a parsed tree (see expressions.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FieldType = Literal[
    "number", "integer", "text", "choice", "boolean", "datetime", "date", "sample_ref", "batch_ref", "evidence_ref"
]
SignatureMeaning = Literal["approved", "reviewed", "verified", "responsibility"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Problem(_Frozen):
    """One thing wrong with a protocol or a submission, e.g. `steps[3].form.fields[1].max: below min`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class FormField(_Frozen):
    key: str
    label: str
    type: FieldType
    required: bool = True
    unit: str | None = None  # number and integer fields
    min: Decimal | None = None  # number and integer fields
    max: Decimal | None = None
    precision: int | None = None  # number fields: most decimal places accepted
    max_length: int | None = None  # text fields
    options: list[str] | None = None  # choice fields


class FormSpec(_Frozen):
    key: str  # the lake table is `form_<key>`
    fields: list[FormField]


class ChecklistItem(_Frozen):
    key: str
    text: str


class EscalationLevel(_Frozen):
    """Notify `notify_role` once the step has been overdue for `seconds_after_due`.

    Levels are in increasing order and each fires once; after the last level nothing more is sent.
    """

    seconds_after_due: int
    notify_role: str


class OnReject(_Frozen):
    """What a rejected approval does: re-open the steps from `from_step` up to the approval, or end the run."""

    action: Literal["repeat", "end_run"]
    from_step: str | None = None  # a step before the approval in the same sequence, when action is repeat


class _Node(_Frozen):
    key: str
    when: dict[str, Any] | None = None  # condition tree; the step is skipped when it evaluates false
    when_source: str | None = None  # the condition as written, for people reading the record


class Produces(_Frozen):
    """The samples completing the step creates (ids derived from the task id: a retried completion makes none
    twice), each derived from the samples named in `from_fields` by `operation`."""

    sample_type: str
    operation: str
    count: int | None = None  # when no count_field
    count_field: str | None = None  # an integer field of the form
    from_fields: list[str] = []  # sample_ref fields naming the parents
    batch_field: str | None = None  # a batch_ref field naming the (open) batch they join


class TaskNode(_Node):
    kind: Literal["task"] = "task"
    title: str
    instructions: str = ""
    form: FormSpec | None = None
    checklist: list[ChecklistItem] = []
    roles: list[str]
    due_seconds: int | None = None  # from the moment the step opens
    escalation: list[EscalationLevel] = []
    produces: Produces | None = None
    consumes: list[str] = []  # sample_ref fields whose samples completing the step marks consumed
    requires_qualification: str | None = None  # the course whose current training record the performer needs
    # sample_ref fields whose samples completing the step marks in_use (still usable: a rework round may name them
    # again); the run's completion marks them consumed (domain/samples/steps.py `finish`)
    uses: list[str] = []


class ApprovalNode(_Node):
    """An electronic signature whose meaning (21 CFR 11.50) is recorded with it."""

    kind: Literal["approval"] = "approval"
    title: str
    instructions: str = ""
    roles: list[str]
    meaning: SignatureMeaning
    due_seconds: int | None = None
    escalation: list[EscalationLevel] = []
    on_reject: OnReject
    # Task steps whose records this signature covers: bind the signature to their hash (11.70); whoever
    # performed them may not sign (segregation of duties).
    reviews: list[str] = []


class TimerNode(_Node):
    kind: Literal["timer"] = "timer"
    title: str
    duration_seconds: int


class SequenceNode(_Node):
    """Steps run one after another. Its key is a path ("steps", "steps[2].branches[0]"), not a step key."""

    kind: Literal["sequence"] = "sequence"
    steps: list[StepNode]


class ParallelNode(_Node):
    """Branches run at the same time; the step completes when every branch has."""

    kind: Literal["parallel"] = "parallel"
    title: str
    branches: list[SequenceNode]


class RepeatNode(_Node):
    """Run the body, then stop once `until` holds or after `max_iterations` runs, whichever comes first.

    When the limit is reached with `until` still false, the run moves on to the next step.
    """

    kind: Literal["repeat"] = "repeat"
    title: str
    body: SequenceNode
    until: dict[str, Any]
    until_source: str
    max_iterations: int


StepNode = Annotated[TaskNode | ApprovalNode | TimerNode | ParallelNode | RepeatNode, Field(discriminator="kind")]
PlanNode = TaskNode | ApprovalNode | TimerNode | ParallelNode | RepeatNode | SequenceNode


class StepIndexEntry(_Frozen):
    kind: Literal["task", "approval", "timer", "parallel", "repeat"]
    title: str
    path: str  # where the step sits in the protocol document, e.g. "steps[2].branches[0][1]"
    within: list[str] = []  # keys of the enclosing parallel/repeat steps, outermost first


class ExecutionPlan(_Frozen):
    protocol_key: str
    protocol_title: str
    version: int
    content_hash: str  # sha256 of the protocol version's canonical definition
    regulatory_tags: list[str]
    root: SequenceNode
    steps_index: dict[str, StepIndexEntry]

    def step(self, key: str) -> TaskNode | ApprovalNode | TimerNode | ParallelNode | RepeatNode:
        """The node of a step by its key; KeyError if the plan has no such step."""
        found = _find(self.root, key)
        if found is None:
            raise KeyError(key)
        return found


def _find(node: PlanNode, key: str) -> TaskNode | ApprovalNode | TimerNode | ParallelNode | RepeatNode | None:
    if not isinstance(node, SequenceNode) and node.key == key:
        return node
    children: list[PlanNode] = []
    if isinstance(node, SequenceNode):
        children = list(node.steps)
    elif isinstance(node, ParallelNode):
        children = list(node.branches)
    elif isinstance(node, RepeatNode):
        children = [node.body]
    for child in children:
        found = _find(child, key)
        if found is not None:
            return found
    return None


SequenceNode.model_rebuild()
