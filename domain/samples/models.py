"""Shapes of samples, batches, lineage, custody and trace over the API, one per direction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, model_validator

from domain.limits import Input

SampleType = Literal["culture", "plate", "callus", "explant", "spore_suspension", "dna_prep", "plasmid_prep",
                     "glycerol_stock", "seed", "tissue", "medium", "other"]
SampleStatus = Literal["received", "in_use", "consumed", "disposed", "contaminated"]
BatchType = Literal["media", "transformation", "culture", "plant_line", "seed", "other"]
BatchStatus = Literal["open", "released", "rejected", "closed"]
Operation = Literal["aliquot", "subculture", "passage", "pooling", "transformation", "extraction"]

SAMPLE_TYPES: tuple[str, ...] = get_args(SampleType)
OPERATIONS: tuple[str, ...] = get_args(Operation)
MAX_PRODUCED = 500  # samples one step completion may create

# A sample's life: what each state may become next. Consumed and disposed are the end.
SAMPLE_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "received": ("in_use", "consumed", "disposed", "contaminated"),
    "in_use": ("consumed", "disposed", "contaminated"),
    "contaminated": ("disposed",),
    "consumed": (),
    "disposed": (),
}
UNUSABLE: dict[str, str] = {"consumed": "consumed", "disposed": "disposed", "contaminated": "contaminated"}
BATCH_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("released", "rejected"),
    "released": ("closed",),
    "rejected": ("closed",),
    "closed": (),
}
BATCH_DECISIONS = ("released", "rejected", "closed")  # samples.manage; nothing else changes a batch's status

MAX_DEPTH = 20
REF = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"  # a sample or batch named by its id or its code
Reason: Any = Field(min_length=1, max_length=2000, description="why, for the audit trail")
Attributes: Any = Field(default={}, max_length=100, description="free-form details (volume, OD600, passage number, …)")


class Component(Input):
    """What a sample is made of: a registry item (strain, plasmid, ingredient lot, …)."""

    item_id: uuid.UUID
    quantity: str | None = Field(default=None, max_length=100)


class SampleCreate(Input):
    """Register a sample (status `received`). Its location and holder start its chain of custody."""

    sample_type: SampleType
    name: str = Field(min_length=1, max_length=200)
    location_id: uuid.UUID | None = Field(default=None, description="a storage location of the registry")
    owner_id: uuid.UUID | None = Field(default=None, description="the member who holds it (default: you)")
    batch_id: uuid.UUID | None = None
    attributes: dict[str, Any] = Attributes
    components: list[Component] = Field(default=[], max_length=50)
    reason: str | None = Field(default=None, max_length=2000)


class SampleUpdate(Input):
    """Correct a sample's details. `revision` is the one you read: a change made since is refused (409)."""

    revision: int = Field(ge=1, le=2**31 - 1)
    reason: str = Reason
    name: str | None = Field(default=None, min_length=1, max_length=200)
    attributes: dict[str, Any] | None = Field(default=None, max_length=100)
    batch_id: uuid.UUID | None = None


class StatusChange(Input):
    """Move a sample along its life (e.g. in_use → consumed), with the reason."""

    status: SampleStatus
    reason: str = Reason
    revision: int | None = Field(default=None, ge=1, le=2**31 - 1, description="refused (409) if changed since")


class BatchStatusChange(Input):
    """Release or reject an open batch, close a decided one, with the reason."""

    status: BatchStatus
    reason: str = Reason
    revision: int | None = Field(default=None, ge=1, le=2**31 - 1, description="refused (409) if changed since")


class ArchiveChange(Input):
    reason: str = Reason


class SampleRead(BaseModel):
    id: uuid.UUID
    code: str
    sample_type: str
    name: str
    status: str
    status_reason: str | None
    location_id: uuid.UUID | None
    owner_id: uuid.UUID | None
    owner_display: str | None
    batch_id: uuid.UUID | None
    attributes: dict[str, Any]
    created_in_run: uuid.UUID | None
    created_in_step: str | None
    archived_at: dt.datetime | None
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    revision: int


class ComponentRead(BaseModel):
    item_id: uuid.UUID
    kind: str
    code: str
    name: str
    quantity: str | None


class SampleDetail(SampleRead):
    components: list[ComponentRead]
    parents: list[uuid.UUID]
    children: list[uuid.UUID]


class Provenance(Input):
    """The run, step and task that did it (all optional: bench work outside a run)."""

    run_id: uuid.UUID | None = None
    step_key: str | None = Field(default=None, max_length=64)
    task_id: uuid.UUID | None = None


class ChildSpec(Input):
    sample_type: SampleType | None = Field(default=None, description="default: the first parent's type")
    name: str | None = Field(default=None, min_length=1, max_length=200, description="default: `<parent code> <op> n`")
    location_id: uuid.UUID | None = None
    batch_id: uuid.UUID | None = None
    attributes: dict[str, Any] = Attributes


class Derivation(Provenance):
    """Make children from one or more parents by a named operation (`count` alike, or each described)."""

    parent_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)
    operation: Operation
    count: int | None = Field(default=None, ge=1, le=500)
    children: list[ChildSpec] = Field(default=[], max_length=500)
    reason: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _how_many(self) -> Derivation:
        if (self.count is None) == (not self.children):
            raise ValueError("give either count (children alike) or children (each described)")
        return self


class ParentLink(Provenance):
    """Record that this (existing) sample derives from these parents."""

    parent_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)
    operation: Operation
    reason: str | None = Field(default=None, max_length=2000)


class Move(Input):
    """A location move and/or a hand-over to another member, with the reason."""

    to_location_id: uuid.UUID | None = None
    to_holder_id: uuid.UUID | None = Field(default=None, description="the member who takes it over")
    reason: str = Reason
    run_id: uuid.UUID | None = None
    step_key: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _somewhere(self) -> Move:
        if self.to_location_id is None and self.to_holder_id is None:
            raise ValueError("name a location (to_location_id), a person (to_holder_id) or both")
        return self


class MovementRead(BaseModel):
    id: uuid.UUID
    from_location_id: uuid.UUID | None
    to_location_id: uuid.UUID | None
    to_location_code: str | None = None
    to_location_name: str | None = None
    from_holder_id: uuid.UUID | None
    to_holder_id: uuid.UUID | None
    to_holder_display: str | None
    moved_at: dt.datetime
    moved_by: str
    moved_by_display: str
    reason: str | None
    run_id: uuid.UUID | None
    step_key: str | None


class Whereabouts(BaseModel):
    """Where the sample was at `at` (null before it was registered) and its full location history."""

    sample_id: uuid.UUID
    at: dt.datetime | None
    location_id: uuid.UUID | None
    location_code: str | None
    location_name: str | None
    holder_id: uuid.UUID | None
    holder_display: str | None
    since: dt.datetime | None
    history: list[MovementRead]


class LineageNode(BaseModel):
    id: uuid.UUID
    code: str
    sample_type: str
    status: str
    depth: int


class LineageEdge(BaseModel):
    parent_id: uuid.UUID
    child_id: uuid.UUID
    operation: str
    run_id: uuid.UUID | None
    step_key: str | None
    task_id: uuid.UUID | None
    recorded_at: dt.datetime


class Lineage(BaseModel):
    root: uuid.UUID
    direction: Literal["ancestors", "descendants"]
    depth: int
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    truncated: bool = Field(description="more edges than one answer holds: ask a smaller depth")


class BatchCreate(Input):
    batch_type: BatchType
    name: str = Field(min_length=1, max_length=200)
    record: dict[str, Any] = Field(default={}, max_length=100,
                                   description="the batch record: recipe, lots used, volumes, sterilization, …")
    reason: str | None = Field(default=None, max_length=2000)


class BatchUpdate(Input):
    revision: int = Field(ge=1, le=2**31 - 1)
    reason: str = Reason
    name: str | None = Field(default=None, min_length=1, max_length=200)
    record: dict[str, Any] | None = Field(default=None, max_length=100)


class BatchRead(BaseModel):
    id: uuid.UUID
    code: str
    batch_type: str
    name: str
    status: str
    record: dict[str, Any]
    created_in_run: uuid.UUID | None
    created_in_step: str | None
    archived_at: dt.datetime | None
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    revision: int


class BatchDetail(BatchRead):
    samples: list[SampleRead]


class TraceEntry(BaseModel):
    at: dt.datetime
    kind: Literal["created", "change", "run", "step", "movement", "lineage", "evidence"]
    summary: str
    actor: str | None
    run_id: uuid.UUID | None = None
    step_key: str | None = None
    detail: dict[str, Any] = {}


class Trace(BaseModel):
    target_type: Literal["sample", "batch"]
    target_id: uuid.UUID
    code: str
    entries: list[TraceEntry]
