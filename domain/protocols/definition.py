"""A protocol document as written (YAML or JSON), as pydantic models.

These models hold the document's shape only; every rule about its content (known roles, durations,
conditions, keys, limits) is checked by the compiler so that all problems are reported at once.

Durations are ISO-8601 durations in days, hours, minutes and seconds, whole numbers only:
"PT30M", "PT4H", "P2D", "P1DT12H", "PT90S" (weeks "P2W" too). Years and months are refused because
their length in seconds varies.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.protocols.plan import FieldType, SignatureMeaning
from domain.roles import Role

STEP_KINDS = ("task", "approval", "timer", "parallel", "repeat")
KNOWN_ROLES = frozenset(role.value for role in Role)
REGULATORY_TAGS = frozenset(
    {
        "BSL-1",
        "BSL-2",
        "BSL-3",
        "BSL-4",
        "recombinant_dna",
        "gmo",
        "select_agent",
        "export_control",
        "hazardous_chemical",
        "human_derived",
        "radioactive",
        "plant_pest",
        "animal_derived",
    }
)

_DURATION = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
_DURATION_UNITS = (7 * 86400, 86400, 3600, 60, 1)


def parse_duration(text: str) -> int:
    """Seconds in an ISO-8601 duration such as "PT30M" or "P2D"; ValueError if not one we accept."""
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"'{text}' is not an ISO-8601 duration like PT30M, PT4H or P2D")
    return sum(int(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if part)


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FormFieldDef(_Document):
    key: str
    label: str
    type: FieldType
    required: bool = True
    unit: str | None = None
    min: Decimal | None = None
    max: Decimal | None = None
    precision: int | None = None
    max_length: int | None = None
    options: list[str] | None = None


class FormDef(_Document):
    key: str
    fields: list[FormFieldDef]


class ChecklistItemDef(_Document):
    key: str
    text: str


class EscalationLevelDef(_Document):
    after: str  # duration counted from the step's due time
    notify_role: str


class EscalationDef(_Document):
    levels: list[EscalationLevelDef]


class OnRejectDef(_Document):
    action: Literal["repeat", "end_run"]
    from_step: str | None = None


class _StepDef(_Document):
    key: str
    title: str
    when: str | None = None


class ProducesDef(_Document):
    """Completing the step creates samples: `count` alike (or as many as the integer field `count_field` says), of
    `type`, derived by `operation` from the samples named in the `sample_ref` field(s) `from_field`."""

    type: str
    operation: str
    count: int | None = None
    count_field: str | None = None
    from_field: str | list[str] | None = None
    batch_field: str | None = None  # a batch_ref field: the batch the new samples join


class TaskStep(_StepDef):
    kind: Literal["task"]
    instructions: str = ""
    form: FormDef | None = None
    checklist: list[ChecklistItemDef] = []
    roles: list[str]
    due: str | None = None
    escalation: EscalationDef | None = None
    produces: ProducesDef | None = None
    consumes: list[str] = []  # sample_ref fields whose samples the step uses up
    requires_qualification: str | None = None  # a course whose current training record the performer must have
    uses: list[str] = []  # sample_ref fields whose samples are in use until the run completes, then used up


class ApprovalStep(_StepDef):
    kind: Literal["approval"]
    instructions: str = ""
    roles: list[str]
    meaning: SignatureMeaning
    due: str | None = None
    escalation: EscalationDef | None = None
    on_reject: OnRejectDef | None = None  # None: the protocol's on_reject


class TimerStep(_StepDef):
    kind: Literal["timer"]
    duration: str


class ParallelStep(_StepDef):
    kind: Literal["parallel"]
    branches: list[list[Step]]


class RepeatStep(_StepDef):
    kind: Literal["repeat"]
    steps: list[Step]
    until: str
    max_iterations: int


Step = Annotated[TaskStep | ApprovalStep | TimerStep | ParallelStep | RepeatStep, Field(discriminator="kind")]


class ProtocolDefinition(_Document):
    key: str
    title: str
    description: str = ""
    regulatory_tags: list[str] = []
    on_reject: OnRejectDef | None = None  # default for approvals; None means end the run
    steps: list[Step]


ParallelStep.model_rebuild()
RepeatStep.model_rebuild()
ProtocolDefinition.model_rebuild()
