"""Reports over HTTP: the builder (tables, validate, preview), definitions (versioned, shared by role), reports and
their lifecycle (execute, review, finalize with an e-signature, reproduce), executions and their exports, and the
run record of a run as a PDF.

A report's SQL runs in the lake's sandbox (lake/reports.py) with only the caller's organization's tables; the
database work around it is in transactions of their own (`in_tx`), none held while the lake works.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.deps import Permitted, Platform, PlatformDep, SessionDep, in_tx, login_limits
from api.refusals import refused
from domain.analysis import LakeTable, QueryFailed, record_query
from domain.errors import DomainError, Invalid
from domain.evidence.content import content_disposition
from domain.reports import params, run_record, service
from domain.reports.exports import MEDIA_TYPES, rows_of
from domain.reports.models import (
    KEY,
    CheckResult,
    DefinitionCreate,
    DefinitionRead,
    DefinitionUpdate,
    ExecutionRead,
    ExecutionResult,
    ExportFormat,
    Finalize,
    PreviewResult,
    QueryCheck,
    QueryPreview,
    ReportCreate,
    ReportRead,
    ReportUpdate,
    ShareUpdate,
    Submit,
)
from domain.roles import Caller, Permission

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])
User = Annotated[Caller, Depends(Permitted(Permission.reports_use))]
Reviewer = Annotated[Caller, Depends(Permitted(Permission.reports_finalize))]
DefinitionKey = Annotated[str, Path(pattern=KEY, description="the definition's key")]
SHOWN_ROWS = 200
FILE = {"content": {t: {"schema": {"type": "string", "format": "binary"}} for t in MEDIA_TYPES.values()},
        "description": "the file, with its context (definition version, parameters, table versions, who, when)"}


def report_lake(p: Platform) -> Any:
    """The app's lake for reports, opened on first use (no thread, no connection until then)."""
    if p.report_lake is None:
        from lake.query import SandboxSettings
        from lake.reports import ReportQueries

        s = p.settings
        p.report_lake = ReportQueries(s.resolved_lake_uri, storage_options=s.resolved_lake_storage_options or None,
                                      settings=SandboxSettings(memory_limit="512MB", threads=1, timeout_s=30.0))
    return p.report_lake


# ---------------------------------------------------------------- the builder


@router.get("/builder/tables", response_model=list[LakeTable])
def builder_tables(caller: User, p: PlatformDep) -> list[LakeTable]:
    """The organization's lake tables the caller's role may read, each column with its label (the form field's
    label, or what a platform column holds) and unit."""
    tables: list[LakeTable] = report_lake(p).tables(caller.org_id, str(caller.role))
    return tables


def _on_record(s: Any, caller: Caller, sql: str, outcome: Any, rows: int, duration_ms: float, tables: Any,
               reason: str | None) -> None:
    record_query(s, org_id=caller.org_id, actor=caller.actor, sql=sql, outcome=outcome, rows=rows,
                 duration_ms=duration_ms, tables=tables, reason=reason, context=caller.context)


def _bound_sql(data: QueryCheck) -> str:
    params.check_declared(data.sql, data.parameters)
    values = params.resolve(data.parameters, {**{q.name: q.default for q in data.parameters}, **data.values})
    return params.bind(data.sql, data.parameters, values)


@router.post("/builder/validate", response_model=CheckResult)
async def builder_validate(data: QueryCheck, caller: User, s: SessionDep, p: PlatformDep) -> CheckResult:
    """Check a query without running it: `ok`, or the sandbox's reason it is refused (not a single SELECT, a table
    function, another organization's or an unknown table, …). On record like every lake query."""
    sql = _bound_sql(data)
    lake = report_lake(p)
    try:
        tables = await run_in_threadpool(lake.check, caller.org_id, str(caller.role), sql)
        result = CheckResult(ok=True, outcome="ok", reason=None, tables=list(tables))
    except QueryFailed as exc:
        result = CheckResult(ok=False, outcome="refused" if exc.outcome == "refused" else "error",
                             reason=exc.message, tables=list(exc.tables))
    await in_tx(s, _on_record, caller, sql, result.outcome, 0, 0.0, result.tables, result.reason)
    return result


@router.post("/builder/preview", response_model=PreviewResult)
async def builder_preview(data: QueryPreview, caller: User, s: SessionDep, p: PlatformDep) -> PreviewResult:
    """Run a query for its first `limit` rows (at most 1000). A refused or failing query answers 422 with the
    sandbox's reason; either way it is on record."""
    sql = _bound_sql(data)
    lake = report_lake(p)
    try:
        answer = await run_in_threadpool(lake.run, caller.org_id, str(caller.role), sql, data.limit)
    except QueryFailed as exc:
        await in_tx(s, _on_record, caller, sql, exc.outcome, 0, 0.0, exc.tables, exc.message)
        raise Invalid(exc.message, reasons=[f"sql: {exc.outcome}: {exc.message}"]) from None
    await in_tx(s, _on_record, caller, sql, "ok", answer.table.num_rows, answer.duration_ms, answer.tables, None)
    return PreviewResult(columns=answer.table.column_names, rows=rows_of(answer.table), truncated=answer.truncated,
                         tables=list(answer.tables), duration_ms=round(answer.duration_ms, 3))


# ---------------------------------------------------------------- definitions


@router.get("/definitions", response_model=list[DefinitionRead])
def list_definitions(caller: User, s: SessionDep) -> list[DefinitionRead]:
    """The newest version of each definition the caller may see: the system reports, their own, and those shared
    with their role."""
    return service.list_definitions(s, caller)


async def _checked(s: Any, caller: Caller, p: Platform, sql: str, doing: str, key: str) -> None:
    """The sandbox checks the SQL before a definition is saved: 422 with its reason (on record) otherwise."""
    if "$" in sql:
        sql = params.PLACEHOLDER.sub("NULL", sql)
    try:
        await run_in_threadpool(report_lake(p).check, caller.org_id, str(caller.role), sql)
    except QueryFailed as exc:
        error = Invalid(f"the sandbox refuses this SQL: {exc.message}",
                        reasons=[f"sql: {exc.outcome}: {exc.message}"])
        await refused(s, caller, "report_definition", key, doing, error)
        raise error from None


@router.post("/definitions", response_model=DefinitionRead, status_code=201)
async def create_definition(data: DefinitionCreate, caller: User, s: SessionDep, p: PlatformDep) -> DefinitionRead:
    """Save a query as a report definition (version 1) with its parameters (`$name` in the SQL), table layout and
    optional Vega-Lite chart, shared with the roles named. The SQL is checked by the sandbox first."""
    params.check_declared(data.sql, data.parameters)
    await _checked(s, caller, p, data.sql, "save the report definition", data.key)
    try:
        return await in_tx(s, service.create_definition, caller, data)
    except DomainError as exc:
        await refused(s, caller, "report_definition", data.key, "save the report definition", exc)
        raise


@router.get("/definitions/{definition_id:uuid}", response_model=DefinitionRead)
def get_definition(definition_id: uuid.UUID, caller: User, s: SessionDep) -> DefinitionRead:
    """One definition version."""
    return service.get_definition(s, caller, definition_id)


@router.get("/definitions/by-key/{key}/versions", response_model=list[DefinitionRead])
def definition_versions(key: DefinitionKey, caller: User, s: SessionDep) -> list[DefinitionRead]:
    """Every version of a definition, oldest first."""
    return service.definition_versions(s, caller, key)


@router.post("/definitions/by-key/{key}/versions", response_model=DefinitionRead, status_code=201)
async def edit_definition(key: DefinitionKey, data: DefinitionUpdate, caller: User, s: SessionDep,
                          p: PlatformDep) -> DefinitionRead:
    """Edit a custom definition: its next version (the earlier ones stay as they were, with the reports that
    used them)."""
    if data.sql is not None:
        await _checked(s, caller, p, data.sql, "edit the report definition", key)
    try:
        return await in_tx(s, service.edit_definition, caller, key, data)
    except DomainError as exc:
        await refused(s, caller, "report_definition", key, "edit the report definition", exc)
        raise


@router.put("/definitions/by-key/{key}/sharing", response_model=DefinitionRead)
def share_definition(key: DefinitionKey, data: ShareUpdate, caller: User, s: SessionDep) -> DefinitionRead:
    """Share a custom definition (every version) with roles of the organization; an empty list keeps it the
    author's."""
    return service.share_definition(s, caller, key, data)


# ---------------------------------------------------------------- reports


@router.get("", response_model=list[ReportRead])
def list_reports(caller: User, s: SessionDep, limit: int = Query(default=100, ge=1, le=500)) -> list[ReportRead]:
    """The organization's reports the caller may see, most recently changed first."""
    return service.list_reports(s, caller, limit=limit)


@router.post("", response_model=ReportRead, status_code=201)
async def create_report(data: ReportCreate, caller: User, s: SessionDep) -> ReportRead:
    """A report of a definition version with its parameters (status `created`)."""
    try:
        return await in_tx(s, service.create_report, caller, data)
    except DomainError as exc:
        await refused(s, caller, "report", str(data.definition_id), "create the report", exc)
        raise


@router.get("/{report_id:uuid}", response_model=ReportRead)
def get_report(report_id: uuid.UUID, caller: User, s: SessionDep) -> ReportRead:
    """One report: its status, latest execution, and once finalized its signature and content hash."""
    return service.get_report(s, caller, report_id)


@router.patch("/{report_id:uuid}", response_model=ReportRead)
async def update_report(report_id: uuid.UUID, data: ReportUpdate, caller: User, s: SessionDep) -> ReportRead:
    """Edit a report's title or parameters (its author, before review; 409 once in review or finalized)."""
    try:
        return await in_tx(s, service.update_report, caller, report_id, data)
    except DomainError as exc:
        await refused(s, caller, "report", str(report_id), "edit the report", exc)
        raise


async def _run(s: Any, p: Platform, caller: Caller, plan: service.Plan) -> ExecutionResult:
    if plan.definition.source == "run_record":
        table, duration = await in_tx(s, service.run_record_result, caller, plan)
        versions: dict[str, int] = {}
    else:
        result = await run_in_threadpool(lambda: report_lake(p).execute(
            caller.org_id, str(caller.role), plan.sql, pinned=plan.pinned, max_rows=service.MAX_ROWS))
        table, versions, duration = result.table, result.versions, result.duration_ms
    execution, table = await in_tx(s, service.record_execution, p.objects, caller, plan, table, versions, duration)
    return ExecutionResult(**execution.model_dump(), columns=table.column_names, rows=rows_of(table, SHOWN_ROWS),
                           reproduces=(execution.result_sha256 == plan.expected_sha256)
                           if plan.expected_sha256 is not None else None)


@router.post("/{report_id:uuid}/execute", response_model=ExecutionResult)
async def execute_report(report_id: uuid.UUID, caller: User, s: SessionDep, p: PlatformDep) -> ExecutionResult:
    """Execute the report now: every table it reads at its current Delta version, recorded with the execution
    (parameters, rows, duration, versions); the rows stored once by their SHA-256. The report becomes `updated`."""
    try:
        plan = await in_tx(s, service.plan_execution, caller, report_id)
        return await _run(s, p, caller, plan)
    except QueryFailed as exc:
        error = Invalid(f"the report did not run: {exc.message}", reasons=[f"sql: {exc.outcome}: {exc.message}"])
        await refused(s, caller, "report", str(report_id), "execute the report", error)
        raise error from None
    except DomainError as exc:
        await refused(s, caller, "report", str(report_id), "execute the report", exc)
        raise


@router.post("/{report_id:uuid}/reproduce", response_model=ExecutionResult)
async def reproduce_report(report_id: uuid.UUID, caller: User, s: SessionDep, p: PlatformDep) -> ExecutionResult:
    """Execute a finalized report again at the Delta versions it pinned (time travel): `reproduces` says whether
    the rows have the finalized result's hash. Recorded as an execution with purpose `reproduce`."""
    try:
        plan = await in_tx(s, service.plan_reproduction, caller, report_id)
        return await _run(s, p, caller, plan)
    except QueryFailed as exc:
        error = Invalid(f"the report could not be reproduced: {exc.message}",
                        reasons=[f"sql: {exc.outcome}: {exc.message}"])
        await refused(s, caller, "report", str(report_id), "reproduce the report", error)
        raise error from None
    except DomainError as exc:
        await refused(s, caller, "report", str(report_id), "reproduce the report", exc)
        raise


@router.get("/{report_id:uuid}/executions", response_model=list[ExecutionRead])
def list_executions(report_id: uuid.UUID, caller: User, s: SessionDep) -> list[ExecutionRead]:
    """The report's executions, newest first."""
    return service.list_executions(s, caller, report_id)


@router.post("/{report_id:uuid}/review", response_model=ReportRead)
async def submit_for_review(report_id: uuid.UUID, data: Submit, caller: User, s: SessionDep) -> ReportRead:
    """Put the report in review, on its latest execution: it changes no more until finalized."""
    try:
        return await in_tx(s, service.submit_for_review, caller, report_id, data.reason)
    except DomainError as exc:
        await refused(s, caller, "report", str(report_id), "submit the report for review", exc)
        raise


@router.post("/{report_id:uuid}/finalize", response_model=ReportRead)
async def finalize_report(report_id: uuid.UUID, data: Finalize, caller: Reviewer, s: SessionDep,
                          p: PlatformDep) -> ReportRead:
    """Finalize a report in review with an electronic signature (password re-entered, a meaning) by someone other
    than its author (403 otherwise). The signature binds the report's content hash (definition version,
    parameters, table versions, result hash), which also goes into the audit chain; the PDF is rendered and
    stored; the report is locked."""
    try:
        return await in_tx(s, service.finalize, p.objects, caller, report_id, data.signature,
                           login_limits(p.settings))
    except DomainError as exc:
        await refused(s, caller, "report", str(report_id), "finalize the report", exc)
        raise


# ---------------------------------------------------------------- executions and exports


@router.get("/executions/{execution_id:uuid}", response_model=ExecutionRead)
def get_execution(execution_id: uuid.UUID, caller: User, s: SessionDep) -> ExecutionRead:
    """One execution: its parameters, row count, duration and the Delta version of each table it read."""
    return service.get_execution(s, caller, execution_id)


@router.get("/executions/{execution_id:uuid}/export", response_class=Response, responses={200: FILE})
def export_execution(execution_id: uuid.UUID, caller: User, s: SessionDep, p: PlatformDep,
                     format: ExportFormat = Query(description="csv, jsonl (JSON lines), parquet, xlsx (Excel), or "
                                                              "pdf (a finalized report's)")) -> Response:
    """The execution's rows as a file carrying its context (definition version, parameters, table versions, who
    executed it and when, who exported it). `pdf` is the finalized report's stored PDF. On record."""
    out = service.export(s, p.objects, caller, execution_id, format)
    return Response(out.data, media_type=out.media_type, headers={
        "Content-Disposition": content_disposition(out.filename), "ETag": f'"{out.record["sha256"]}"',
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})


@router.get("/runs/{run_id:uuid}/record.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "the run record as PDF"}})
def run_record_pdf(run_id: uuid.UUID, caller: Reviewer, s: SessionDep) -> Response:
    """The run record (electronic batch record) of one run as it stands now, as a PDF to read and sign. To keep it
    as a finalized, signed record: create a report of the `run-record` definition with this run and finalize it."""
    data = run_record.run_record_pdf(s, run_id)
    from domain import audit
    from domain.reports.exports import sha256

    audit.record(s, org_id=caller.org_id, actor=caller.actor, action="download", entity_type="run_record",
                 entity_id=run_id, after={"sha256": sha256(data), "size_bytes": len(data)}, context=caller.context)
    return Response(data, media_type="application/pdf", headers={
        "Content-Disposition": content_disposition(f"run-record-{run_id}.pdf"), "Cache-Control": "private, no-store"})
