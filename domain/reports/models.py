"""What callers send and get for reports: definitions, reports, executions, exports, the builder's questions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt

from domain.limits import Input
from domain.roles import Role
from domain.signatures import Signature, SignatureInput

KEY = r"^[a-z][a-z0-9_-]{0,79}$"
NAME = r"^[a-z][a-z0-9_]{0,62}$"
ParameterType = Literal["string", "integer", "number", "boolean", "date", "timestamp"]
Status = Literal["created", "updated", "in_review", "finalized"]
ExportFormat = Literal["csv", "jsonl", "parquet", "xlsx", "pdf"]
SHARE_ROLES = (Role.owner, Role.admin, Role.lab_manager, Role.scientist, Role.auditor, Role.analyst)


class ParameterSpec(Input):
    """A typed parameter: `$name` in the SQL."""

    name: str = Field(max_length=64, pattern=NAME)
    type: ParameterType
    label: str | None = Field(default=None, max_length=200)
    required: StrictBool = True
    default: Annotated[str, Field(max_length=1000)] | int | float | bool | None = None
    choices: list[str] | None = Field(default=None, max_length=100)


class ColumnLayout(Input):
    name: str = Field(min_length=1, max_length=128)
    label: str | None = Field(default=None, max_length=200)
    unit: str | None = Field(default=None, max_length=40)
    format: str | None = Field(default=None, max_length=40, description="e.g. `.1%`, `.2f`, `date`")


class Layout(Input):
    """How the result is shown as a table: which columns, in which order, with which labels and units."""

    columns: list[ColumnLayout] = Field(default_factory=list, max_length=200)
    max_rows_in_pdf: StrictInt = Field(default=500, ge=1, le=5000)


class DefinitionCreate(Input):
    key: str = Field(max_length=80, pattern=KEY, description="stable name; an edit is a new version of the same key")
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    sql: str = Field(min_length=1, max_length=20000, description="one SELECT over the organization's lake tables; "
                                                                  "`$name` for a parameter")
    parameters: list[ParameterSpec] = Field(default_factory=list, max_length=30)
    layout: Layout = Field(default_factory=Layout)
    chart: dict[str, Any] | None = Field(default=None, description="a Vega-Lite specification without data "
                                                                   "(the execution's rows are its data)")
    shared_roles: list[Role] = Field(default_factory=list, max_length=7,
                                     description="roles of the organization that may see and use it")


class DefinitionUpdate(Input):
    """A new version: what changes (the rest is the previous version's)."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    sql: str | None = Field(default=None, min_length=1, max_length=20000)
    parameters: list[ParameterSpec] | None = Field(default=None, max_length=30)
    layout: Layout | None = None
    chart: dict[str, Any] | None = None
    reason: str = Field(min_length=1, max_length=2000)


class ShareUpdate(Input):
    shared_roles: list[Role] = Field(max_length=7)
    reason: str | None = Field(default=None, max_length=2000)


class DefinitionRead(BaseModel):
    id: uuid.UUID
    key: str
    version: int
    kind: Literal["system", "custom"]
    source: Literal["lake", "run_record"]
    title: str
    description: str | None
    sql: str
    parameters: list[ParameterSpec]
    layout: Layout
    chart: dict[str, Any] | None
    shared_roles: list[str]
    created_by: str
    created_by_display: str
    created_at: dt.datetime


class QueryCheck(Input):
    sql: str = Field(min_length=1, max_length=20000)
    parameters: list[ParameterSpec] = Field(default_factory=list, max_length=30)
    values: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class QueryPreview(QueryCheck):
    limit: StrictInt = Field(default=100, ge=1, le=1000)


class CheckResult(BaseModel):
    ok: bool
    outcome: Literal["ok", "refused", "error"]
    reason: str | None
    tables: list[str]


class PreviewResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    tables: list[str]
    duration_ms: float


class ReportCreate(Input):
    definition_id: uuid.UUID
    title: str | None = Field(default=None, max_length=200)
    parameters: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class ReportUpdate(Input):
    title: str | None = Field(default=None, max_length=200)
    parameters: dict[str, str | int | float | bool | None] | None = None
    reason: str | None = Field(default=None, max_length=2000)


class ExecutionRead(BaseModel):
    id: uuid.UUID
    definition_id: uuid.UUID
    definition_key: str
    definition_version: int
    report_id: uuid.UUID | None
    purpose: Literal["execute", "reproduce"]
    parameters: dict[str, Any]
    table_versions: dict[str, int]
    row_count: int
    duration_ms: float
    result_sha256: str
    executed_by: str
    executed_by_display: str
    executed_at: dt.datetime


class ExecutionResult(ExecutionRead):
    columns: list[str]
    rows: list[list[Any]] = Field(description="the first rows (at most 200); exports carry them all")
    reproduces: bool | None = Field(default=None, description="a reproduction: whether its result has the "
                                                              "finalized result's hash")


class ReportRead(BaseModel):
    id: uuid.UUID
    definition_id: uuid.UUID
    definition_key: str
    definition_version: int
    title: str
    parameters: dict[str, Any]
    status: Status
    locked: bool
    author_id: str
    author_display: str
    created_at: dt.datetime
    updated_at: dt.datetime
    execution_id: uuid.UUID | None
    submitted_at: dt.datetime | None
    finalized_at: dt.datetime | None
    finalized_by: str | None
    signature: Signature | None
    content_hash: str | None
    pdf_sha256: str | None


class Finalize(Input):
    signature: SignatureInput


class Submit(Input):
    reason: str | None = Field(default=None, max_length=2000)


class ExportRead(BaseModel):
    id: uuid.UUID
    execution_id: uuid.UUID
    format: ExportFormat
    sha256: str
    size_bytes: int
    exported_by: str
    exported_at: dt.datetime
