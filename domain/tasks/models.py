"""Shapes of the task inbox over the API."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

from domain.limits import Input, Key, key_problem

_REF = r"^[^\s\x00-\x1f\x7f-\x9f]{1,128}$"  # an id: no spaces, no control characters
EvidenceId = Annotated[str, Field(max_length=128, pattern=_REF)]


class TaskCompletion(Input):
    """What a technician submits: form values, checklist confirmations, evidence references."""

    values: dict[str, Any] = Field(default={}, max_length=500, description="form values by field key")
    checklist: Annotated[dict[Key, bool], Field(max_length=500)] | Annotated[list[Key], Field(max_length=500)] = Field(
        default={}, description="confirmed checklist items: {item_key: true} or [item_key, …]"
    )
    evidence: list[str] = Field(default=[], max_length=100,
                                description="ids of evidence files (POST /api/v1/evidence) this completion links to "
                                            "the task: photos, printouts; each must exist in your organization",
                                json_schema_extra={"items": {"type": "string", "pattern": _REF}})
    checklist_evidence: Annotated[dict[Key, Annotated[list[EvidenceId], Field(max_length=20)]],
                                  Field(max_length=100)] = Field(
        default={}, description="evidence for checklist items: {item_key: [evidence id, …]}, each file linked to "
                                "the item (and must exist in your organization)")

    @field_validator("checklist")
    @classmethod
    def _keys(cls, v: dict[str, bool] | list[str]) -> dict[str, bool] | list[str]:
        for key in v:
            why = key_problem(key)
            if why:
                raise ValueError(f"key {key!r}: {why}")
        return v

    @field_validator("evidence")
    @classmethod
    def _refs(cls, v: list[str]) -> list[str]:
        import re

        bad = [ref for ref in v if not re.fullmatch(_REF, ref)]
        if bad:
            raise ValueError(f"evidence references are ids without spaces, at most 128 characters: {bad[:3]}")
        return v

    @field_validator("checklist_evidence")
    @classmethod
    def _item_keys(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for key in v:
            why = key_problem(key)
            if why:
                raise ValueError(f"key {key!r}: {why}")
        return v

    def confirmed(self) -> dict[str, bool]:
        return dict(self.checklist) if isinstance(self.checklist, dict) else dict.fromkeys(self.checklist, True)


class TaskRead(BaseModel):
    id: uuid.UUID
    run_id: uuid.UUID
    protocol_key: str
    protocol_version: int
    step_key: str
    iteration: int
    kind: str
    title: str
    instructions: str
    roles: list[str]
    form: dict[str, Any] | None = Field(description="the form to fill in: key and fields")
    checklist: list[dict[str, str]] = Field(description="items to confirm, the protocol's and the compliance ones")
    meaning: str | None = Field(default=None, description="approvals: what the signature means")
    status: str
    opened_at: dt.datetime
    due_at: dt.datetime | None
    overdue: bool
    escalation_level: int
    claimed_by: uuid.UUID | None
    claimed_by_display: str | None
    closed_at: dt.datetime | None
    closed_by_display: str | None


@dataclass(frozen=True)
class TaskFilter:
    mine: bool = False  # claimed by me
    my_roles: bool = False  # workable by my role
    overdue: bool = False
    run_id: uuid.UUID | None = None
    subject: str | None = None  # a sample or batch id the task's run works on
    status: str | None = "open"  # None: any


class NotificationRead(BaseModel):
    id: uuid.UUID
    run_id: uuid.UUID | None
    task_id: uuid.UUID | None
    recipient_role: str
    channel: str
    subject: str
    body: str
    created_at: dt.datetime
