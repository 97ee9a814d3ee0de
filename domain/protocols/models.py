"""Shapes of protocol data over the API, one per direction (create / update / read).

A protocol document arrives either as a JSON object in `definition` or as text in `yaml` (YAML or JSON
text: JSON is YAML too), never both. Versions move draft → in_review → approved → retired, and
in_review → draft when sent back; only drafts change.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict

from domain.limits import INT32_MAX, Input
from domain.protocols.definition import ProtocolDefinition
from domain.protocols.plan import Problem
from domain.signatures import Meaning

MAX_DOCUMENT_TEXT = 500_000  # characters of YAML: far beyond any lab protocol


class VersionStatus(StrEnum):
    draft = "draft"
    in_review = "in_review"
    approved = "approved"
    retired = "retired"


_Input = Input


# The schema states what the service checks first (domain/protocols/service.py `document_of`), so a client
# and /openapi.json agree on which bodies are well formed: exactly one document, or (new versions) at most one.
# What the compiler requires at the top of a document (ProtocolDefinition's required fields), so a body the schema
# allows is not refused for a missing `key`; the rest of a document's meaning is the compiler's (422 with paths).
_DOCUMENT: JsonDict = {"type": "object", "required": [n for n, f in ProtocolDefinition.model_fields.items()
                                                      if f.is_required()],
                       "properties": {"key": {"type": "string"}, "title": {"type": "string"},
                                      "steps": {"type": "array", "items": {"type": "object"}}}}
_GIVES_DEFINITION: JsonDict = {"required": ["definition"], "properties": {"definition": {"type": "object"}}}
_BY_DEFINITION: JsonDict = {"required": ["definition"], "properties": {"definition": _DOCUMENT}}
_BY_YAML: JsonDict = {"required": ["yaml"], "properties": {"yaml": {"type": "string"}}}
_WITH_FROM_VERSION: JsonDict = {"required": ["from_version"], "properties": {"from_version": {"type": "integer"}}}


class DocumentInput(_Input):
    """A protocol document: `definition` as a JSON object, or `yaml` as YAML (or JSON) text. Exactly one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [_BY_DEFINITION, _BY_YAML]})

    definition: dict[str, Any] | None = Field(default=None, description="the document as a JSON object (at least "
                                                                            "`key`, `title` and `steps`)")
    yaml: str | None = Field(
        default=None, max_length=MAX_DOCUMENT_TEXT, description="the document as YAML text (JSON text works too)"
    )


class ProtocolCreate(DocumentInput):
    """A new protocol: its key and title come from the document; it starts as draft version 1."""


class DraftUpdate(DocumentInput):
    """The whole new document of a draft version (its key cannot change)."""

    reason: str | None = Field(default=None, max_length=2000, description="why it changed, for the audit trail")


class VersionCreate(DocumentInput):
    """A new draft version. Without a document it starts as a copy of `from_version` (default: the latest)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {**_BY_DEFINITION, "not": _WITH_FROM_VERSION}, {**_BY_YAML, "not": _WITH_FROM_VERSION},
        {"not": {"anyOf": [_GIVES_DEFINITION, _BY_YAML]}}]})

    from_version: int | None = Field(default=None, ge=1, le=INT32_MAX, description="copy this version's document")
    reason: str | None = Field(default=None, max_length=2000)


class ValidateRequest(DocumentInput):
    """Any document: validating answers its problems (a missing `key` among them), never refuses it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [_GIVES_DEFINITION, _BY_YAML]})

    version: int = Field(default=1, ge=1, le=INT32_MAX, description="the version number to compile the plan for")


class TransitionReason(_Input):
    reason: str = Field(min_length=1, max_length=2000, description="why; kept in the audit trail")


class Person(BaseModel):
    id: uuid.UUID | None
    name: str | None


class ApprovalRead(BaseModel):
    """The approval's electronic signature as 21 CFR 11.50 asks: printed name, date and time, meaning."""

    signature_id: uuid.UUID
    signer: Person
    meaning: Meaning
    signed_at: dt.datetime
    content_hash: str  # what was signed (11.70)
    reason: str | None = None


class VersionSummary(BaseModel):
    id: uuid.UUID
    protocol_key: str
    version: int
    status: VersionStatus
    title: str
    content_hash: str
    author: Person
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    approved_at: dt.datetime | None
    retired_at: dt.datetime | None
    approval: ApprovalRead | None


class VersionRead(VersionSummary):
    definition: dict[str, Any]
    plan: dict[str, Any] | None = Field(description="the compiled execution plan, from submission on")
    problems: list[Problem] = Field(
        default_factory=list, description="drafts only: what submitting would refuse, each with its path"
    )


class ProtocolRead(BaseModel):
    id: uuid.UUID
    key: str
    title: str
    created_by: Person
    created_at: dt.datetime
    latest_version: VersionSummary
    approved_versions: list[int] = Field(description="versions runs may use now, oldest first")


class ProtocolDetail(ProtocolRead):
    versions: list[VersionSummary]


class ValidationResult(BaseModel):
    ok: bool
    problems: list[Problem]
    content_hash: str | None
    plan: dict[str, Any] | None
