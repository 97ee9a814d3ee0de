"""Shapes of run data over the API, one per direction."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from domain.limits import INT32_MAX, Input
from domain.runs.messages import TaskBrief, Waiting

SUBJECT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"  # a sample or batch id
_ID = SUBJECT_ID
SUBJECT_FILTER = ("a sample or batch id (`S-1`: any subject with that id), or `type:id` as Temporal's search "
                  "attributes show it (`sample:S-1`: that sample)")


def subject_filter(value: str, column: str) -> tuple[str, dict[str, str]]:
    """The SQL condition (on a `subjects` jsonb column) and its parameters for a `?subject=` filter: the id alone,
    or `sample:S-1` / `batch:B-7`, the form the Temporal UI and the README show. Ids may hold `:` themselves, so
    `sample:S-1` also matches a subject whose id is literally that."""
    alternatives = [[{"id": value}]]
    kind, sep, rest = value.partition(":")
    if sep and rest and kind in ("sample", "batch"):
        alternatives.append([{"type": kind, "id": rest}])
    params = {f"subj{i}": json.dumps(a) for i, a in enumerate(alternatives)}
    return "(" + " OR ".join(f"{column} @> CAST(:{name} AS jsonb)" for name in params) + ")", params


_Input = Input


class Subject(_Input):
    """A sample or batch the run works on, by its id."""

    type: Literal["sample", "batch"]
    id: str = Field(pattern=_ID, max_length=128)


_BY_KEY: JsonDict = {"required": ["protocol_key"], "properties": {"protocol_key": {"type": "string"}}}
_BY_ID: JsonDict = {"required": ["protocol_version_id"], "properties": {"protocol_version_id": {"type": "string"}}}
_WITH_VERSION: JsonDict = {"required": ["protocol_version"], "properties": {"protocol_version": {"type": "integer"}}}


class RunLaunch(_Input):
    """Launch a run of an approved protocol version: name it by key (+ version; default the newest approved)
    or by `protocol_version_id`."""

    # What `_one_protocol` checks, stated in the schema so /openapi.json allows exactly the bodies accepted.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [_BY_KEY, _BY_ID],
                                                                 "not": {"allOf": [_BY_ID, _WITH_VERSION]}})

    protocol_key: str | None = Field(default=None, max_length=64)
    protocol_version: int | None = Field(default=None, ge=1, le=INT32_MAX)
    protocol_version_id: uuid.UUID | None = None
    subjects: list[Subject] = Field(default=[], max_length=500)
    parameters: dict[str, Any] = Field(
        default={}, max_length=100,
        description="free-form run parameters, recorded with the run (text, numbers within ±2⁶³, lists, objects)")
    time_scale: float = Field(
        default=1.0, gt=0, le=1,
        description="training/demo runs: multiplies every due time, escalation delay and timer (0.001: 48 h → 173 s)",
    )

    @model_validator(mode="after")
    def _one_protocol(self) -> RunLaunch:
        if (self.protocol_key is None) == (self.protocol_version_id is None):
            raise ValueError("name the protocol by protocol_key (and protocol_version) or by protocol_version_id")
        if self.protocol_version is not None and self.protocol_key is None:
            raise ValueError("protocol_version goes with protocol_key")
        return self


class RunControl(_Input):
    reason: str = Field(min_length=1, max_length=2000, description="why, for the audit trail")


class RunRead(BaseModel):
    id: uuid.UUID
    org_id: uuid.UUID
    protocol_version_id: uuid.UUID
    protocol_key: str
    protocol_version: int
    protocol_title: str
    status: str
    status_reason: str | None
    subjects: list[Subject]
    parameters: dict[str, Any]
    time_scale: float
    launched_by: str
    launched_by_display: str
    launched_at: dt.datetime
    updated_at: dt.datetime
    ended_at: dt.datetime | None
    revision: int


class RunDetail(RunRead):
    open_tasks: list[TaskBrief]
    waiting_for: list[Waiting] = Field(description="what the run waits for now, and until when (nothing once ended)")
    steps: list[dict[str, Any]] = Field(description="every step event so far, oldest first")


class ControlResult(BaseModel):
    run_id: uuid.UUID
    status: str
    open_tasks: list[TaskBrief]
    waiting_for: list[Waiting] = Field(description="what the run waits for now, and until when (nothing once ended)")


class TimelineEntry(BaseModel):
    at: str
    source: Literal["audit", "temporal"]
    kind: str  # audit action or Temporal event type
    summary: str
    detail: dict[str, Any]


class RunHistory(BaseModel):
    run: RunRead
    temporal: dict[str, Any] = Field(description="whether Temporal's event history was available")
    timeline: list[TimelineEntry]
