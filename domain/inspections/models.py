"""Formal audits: what callers send and get. (Named `inspections` beside domain/audit, the audit log.)"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from domain.limits import BodyDate, Input
from domain.signatures import Signature


class Outcome(StrEnum):
    passed = "pass"
    conditional = "conditional"
    fail = "fail"


class FindingSeverity(StrEnum):
    observation = "observation"
    minor = "minor"
    major = "major"
    critical = "critical"


class AuditCreate(Input):
    """An audit's scope: the framework it checks against (by name or code), the period, and optionally the runs and
    labs it covers."""

    title: str = Field(min_length=1, max_length=200)
    framework: str = Field(min_length=1, max_length=200, description="e.g. NIH Guidelines, BMBL BSL-2")
    period_start: BodyDate
    period_end: BodyDate
    runs: list[uuid.UUID] = Field(default_factory=list, max_length=200)
    labs: list[str] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _period(self) -> AuditCreate:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        if any(not lab.strip() or len(lab) > 200 for lab in self.labs):
            raise ValueError("labs: each a name of 1 to 200 characters")
        return self


class FindingCreate(Input):
    severity: FindingSeverity
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=10_000)
    evidence: list[uuid.UUID] = Field(default_factory=list, max_length=50, description="evidence files")
    event_id: uuid.UUID | None = Field(default=None, description="the compliance event tracking the corrective work")


class AuditFinalize(Input):
    outcome: Outcome
    summary: str = Field(min_length=1, max_length=10_000)
    password: str = Field(min_length=1, max_length=1024, description="re-entered to sign the audit")


class FindingRead(BaseModel):
    id: uuid.UUID
    number: int
    severity: FindingSeverity
    title: str
    description: str
    evidence_ids: list[uuid.UUID]
    event_id: uuid.UUID | None
    created_at: dt.datetime
    created_by: str


class AuditRead(BaseModel):
    id: uuid.UUID
    code: str
    title: str
    framework: str
    period_start: BodyDate
    period_end: BodyDate
    scope_runs: list[uuid.UUID]
    scope_labs: list[str]
    auditor_id: uuid.UUID
    auditor_display: str
    status: str
    outcome: Outcome | None
    summary: str | None
    content_hash: str | None
    finalized_at: dt.datetime | None
    created_at: dt.datetime
    revision: int


class AuditDetail(AuditRead):
    findings: list[FindingRead]
    signature: Signature | None = None
