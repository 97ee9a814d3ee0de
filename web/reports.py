"""The reports pages: the list (system and saved definitions, the organization's reports with their status), the
builder (the lake's tables with labels and units, a SQL editor, validate with the sandbox's reasons, a preview grid,
save as a definition with typed parameters and a Vega-Lite chart), and a report's page (execute with parameters, the
results grid, the chart drawn on the server as SVG, exports, submit for review, finalize with the password
re-entered by a reviewer who is not the author).

Everything that writes or touches the lake takes the API's own handlers (api/reports.py, handed in as
`Services.reports`: web/actions.py), so the sandbox's check, the refusals on record and the audit entries are the
API's; what the pages only read they read through domain/reports/service.py, with the same visibility rules.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from domain.errors import DomainError, Invalid, Unavailable
from domain.evidence.content import content_disposition
from domain.reports import render, service
from domain.reports.exports import rows_of
from domain.reports.models import (
    KEY,
    SHARE_ROLES,
    DefinitionCreate,
    DefinitionRead,
    ExecutionRead,
    ExportFormat,
    Finalize,
    ParameterSpec,
    QueryCheck,
    QueryPreview,
    ReportCreate,
    ReportRead,
    ReportUpdate,
    Submit,
)
from domain.roles import Caller, Permission
from domain.signatures import Meaning, SignatureInput
from web.acting import acting, field_errors, on_record
from web.actions import ReportActions
from web.app import PREFIX, _caller, _check_csrf, _form, _render, _require, _services, _text, posted

router = APIRouter()
SHOWN_ROWS = 200  # rows of an execution on its page (exports carry them all)
PREVIEW_ROWS = 100
CHART_ROWS = 5000
FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl", "parquet", "xlsx")
MEANINGS = (Meaning.approved, Meaning.reviewed, Meaning.verified)
TYPES = ("string", "integer", "number", "boolean", "date", "timestamp")


def _actions(request: Request) -> ReportActions:
    actions = _services(request).reports
    if actions is None:
        raise Unavailable("reports are not available from this process")
    return actions


# ------------------------------------------------------------------ the list


@router.get("/reports")
def reports_list(request: Request, saved: str | None = None) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.reports_use)
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        definitions = service.list_definitions(session, caller)
        reports = service.list_reports(session, caller, limit=200)
    return _render(request, "reports.html", {
        "system": [d for d in definitions if d.kind == "system"],
        "custom": [d for d in definitions if d.kind == "custom"], "reports": reports,
        "saved": saved if saved and len(saved) <= 80 else None})


@router.post("/reports")
async def new_report(request: Request) -> Response:
    caller, form = await posted(request, Permission.reports_use)
    try:
        definition_id = uuid.UUID(form.get("definition_id", ""))
    except ValueError:
        raise Invalid("choose a report definition") from None
    title = form.get("title", "").strip()[:200] or None
    who = acting(request, caller, _services(request).settings, form)
    report = await _actions(request).create(who, ReportCreate(definition_id=definition_id, title=title))
    return RedirectResponse(f"{PREFIX}/reports/{report.id}", status_code=303)


# ------------------------------------------------------------------ the builder


@dataclass
class Draft:
    """What the builder's form holds, as the person wrote it."""

    sql: str = ""
    parameters: str = ""
    key: str = ""
    title: str = ""
    description: str = ""
    chart: str = ""
    shared: tuple[str, ...] = ()


def parse_parameters(text: str) -> list[ParameterSpec]:
    """One parameter a line: `name type [default]` (`since date 2026-01-01`); Invalid naming each wrong line."""
    specs: list[ParameterSpec] = []
    problems: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) < 2 or parts[1] not in TYPES:
            problems.append(f"parameters: line {n}: write `name type [default]`, the type one of {', '.join(TYPES)}")
            continue
        default: Any = parts[2].strip() if len(parts) == 3 else None
        try:
            spec = ParameterSpec(name=parts[0], type=parts[1], required=default is None)  # type: ignore[arg-type]
            if default is not None:
                default = typed(spec, default)
            specs.append(spec.model_copy(update={"default": default}))
        except ValidationError as exc:
            problems += [f"parameters: line {n}: {m}" for m in field_errors(exc).values()]
        except ValueError as exc:
            problems.append(f"parameters: line {n}: the default is not {exc}")
    if problems:
        raise Invalid("the parameters are not readable", reasons=problems)
    return specs


def typed(spec: ParameterSpec, raw: str) -> Any:
    """A form's text as the parameter's type (ValueError saying what it should be)."""
    raw = raw.strip()
    if spec.type == "integer":
        try:
            return int(raw)
        except ValueError:
            raise ValueError("an integer") from None
    if spec.type == "number":
        try:
            number = float(raw)
        except ValueError:
            raise ValueError("a number") from None
        if not math.isfinite(number):
            raise ValueError("a finite number")
        return number
    if spec.type == "boolean":
        if raw.lower() in ("true", "yes", "1"):
            return True
        if raw.lower() in ("false", "no", "0"):
            return False
        raise ValueError("true or false")
    return raw


def parse_chart(text: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise Invalid("the chart is not JSON", reasons=[f"chart: {exc}"]) from None
    if not isinstance(spec, dict):
        raise Invalid("the chart is a Vega-Lite specification: a JSON object", reasons=["chart: not an object"])
    return spec


def _draft(form: dict[str, str], shared: list[str]) -> Draft:
    return Draft(sql=form.get("sql", "")[:20000], parameters=form.get("parameters", "")[:5000],
                 key=form.get("key", "").strip()[:80], title=form.get("title", "").strip()[:200],
                 description=form.get("description", "")[:5000], chart=form.get("chart", "")[:20000],
                 shared=tuple(r for r in shared if r in {str(x) for x in SHARE_ROLES}))


async def _builder(request: Request, caller: Caller, draft: Draft, *, status: int = 200, **shown: Any) -> HTMLResponse:
    tables = await _actions(request).tables(caller)
    return _render(request, "report_builder.html", {"tables": tables, "d": draft, "types": TYPES, "key_pattern": KEY,
                                                    "share_roles": [str(r) for r in SHARE_ROLES], **shown},
                   status=status)


@router.get("/reports/builder")
async def builder(request: Request) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.reports_use)
    return await _builder(request, caller, Draft())


@router.post("/reports/builder")
async def builder_action(request: Request) -> Response:
    caller = _caller(request)
    raw = await _form(request)
    form = _text(raw)
    await _check_csrf(request, caller, form)
    _require(caller, Permission.reports_use)
    draft = _draft(form, [v for v in raw.getlist("shared_roles") if isinstance(v, str)])
    action = form.get("action", "validate")
    who = acting(request, caller, _services(request).settings, form)
    actions = _actions(request)
    try:
        if not draft.sql.strip():
            raise Invalid("write one SELECT", reasons=["sql: empty"])
        specs = parse_parameters(draft.parameters)
        if action == "save":
            try:
                data = DefinitionCreate(key=draft.key, title=draft.title, description=draft.description or None,
                                        sql=draft.sql, parameters=specs, chart=parse_chart(draft.chart),
                                        shared_roles=list(draft.shared))  # type: ignore[arg-type]
            except ValidationError as exc:
                raise Invalid("the definition is not complete",
                              reasons=[f"{k}: {v}" for k, v in field_errors(exc).items()]) from None
            saved = await actions.save(who, data)
            return RedirectResponse(f"{PREFIX}/reports?saved={saved.key}", status_code=303)
        parse_chart(draft.chart)
        if action == "preview":
            preview = await actions.preview(who, QueryPreview(sql=draft.sql, parameters=specs, limit=PREVIEW_ROWS))
            return await _builder(request, caller, draft, preview=preview)
        check = await actions.validate(who, QueryCheck(sql=draft.sql, parameters=specs))
        return await _builder(request, caller, draft, check=check, status=200 if check.ok else 422)
    except DomainError as exc:
        await on_record(request, _services(request).sessions, who, exc)
        return await _builder(request, caller, draft, problem=exc.message, reasons=exc.reasons, status=exc.status)


# ------------------------------------------------------------------ a report


@dataclass
class Shown:
    report: ReportRead
    definition: DefinitionRead
    executions: list[ExecutionRead]
    latest: ExecutionRead | None
    headings: list[tuple[str, str]]  # the result's columns: (name, heading with the layout's label and unit)
    rows: list[list[Any]]
    chart: str | None  # the chart as an SVG data URL
    chart_problem: str | None


def _chart(d: DefinitionRead, table: Any) -> tuple[str | None, str | None]:
    if not d.chart:
        return None, None
    try:
        svg = render.chart_svg({"width": 560, "height": 260, **d.chart}, table, max_rows=CHART_ROWS)
    except Exception as exc:  # noqa: BLE001 - a chart that cannot be drawn must not lose the page
        return None, f"The chart could not be drawn: {str(exc)[:300]}"
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode(), None


def _shown(request: Request, caller: Caller, report_id: uuid.UUID) -> Shown:
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        report = service.get_report(session, caller, report_id)  # NotFound for another organization's
        definition = service.get_definition(session, caller, report.definition_id)
        executions = service.list_executions(session, caller, report_id)
    latest = next((e for e in executions if e.id == report.execution_id), None)
    labels = {c.name: c.label or c.name for c in definition.layout.columns}
    units = {c.name: c.unit for c in definition.layout.columns if c.unit}
    headings: list[tuple[str, str]] = []
    rows: list[list[Any]] = []
    chart = problem = None
    if latest is not None and s.objects is not None:
        table = service.load_result(s.objects, latest, caller.org_id)
        headings = [(n, labels.get(n, n) + (f" ({units[n]})" if n in units else "")) for n in table.column_names]
        rows = rows_of(table, SHOWN_ROWS)
        chart, problem = _chart(definition, table)
    return Shown(report, definition, executions, latest, headings, rows, chart, problem)


def _report_page(request: Request, shown: Shown, *, status: int = 200, message: str | None = None,
                 reasons: list[str] | None = None, values: dict[str, str] | None = None, **more: Any
                 ) -> HTMLResponse:
    caller: Caller = request.state.caller
    r = shown.report
    current = {p.name: "" if r.parameters.get(p.name, p.default) is None else str(r.parameters.get(p.name, p.default))
               for p in shown.definition.parameters}
    return _render(request, "report.html", {
        "s": shown, "r": r, "d": shown.definition, "message": message, "reasons": reasons or [],
        "values": {**current, **(values or {})}, "formats": FORMATS, "meanings": [m.value for m in MEANINGS],
        "open": r.status in ("created", "updated"), "author": r.author_id == caller.actor.id,
        "may_finalize": caller.can(Permission.reports_finalize), **more}, status=status)


@router.get("/reports/{report_id}")
async def report_page(request: Request, report_id: uuid.UUID, done: str | None = None) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.reports_use)
    shown = await run_in_threadpool(_shown, request, caller, report_id)
    notices = {"executed": "Executed: the rows below are this execution's.", "review": "Submitted for review.",
               "finalized": "Finalized: your signature is on record and the report is locked."}
    return _report_page(request, shown, notice=notices.get(done or ""))


async def _refused_in_place(request: Request, who: Caller, report_id: uuid.UUID, exc: DomainError,
                            values: dict[str, str] | None = None) -> HTMLResponse:
    await on_record(request, _services(request).sessions, who, exc)
    shown = await run_in_threadpool(_shown, request, who, report_id)
    return _report_page(request, shown, status=exc.status, message=exc.message, reasons=exc.reasons, values=values)


@router.post("/reports/{report_id}/execute")
async def execute(request: Request, report_id: uuid.UUID) -> Response:
    caller, form = await posted(request, Permission.reports_use)
    who = acting(request, caller, _services(request).settings, form)
    actions = _actions(request)
    sent = {k[len("param."):]: v for k, v in form.items() if k.startswith("param.")}
    try:
        shown = await run_in_threadpool(_shown, request, who, report_id)
        values: dict[str, Any] = {}
        problems = []
        for spec in shown.definition.parameters:
            text = sent.get(spec.name, "").strip()
            if not text:
                continue
            try:
                values[spec.name] = typed(spec, text)
            except ValueError as exc:
                problems.append(f"parameters.{spec.name}: {spec.label or spec.name} should be {exc}")
        if problems:
            raise Invalid("the parameters are not right", reasons=problems)
        if values != shown.report.parameters and shown.report.status in ("created", "updated"):
            await actions.update(who, report_id, ReportUpdate(parameters=values, reason="parameters set on the page"))
        await actions.execute(who, report_id)
    except DomainError as exc:
        return await _refused_in_place(request, who, report_id, exc, sent)
    return RedirectResponse(f"{PREFIX}/reports/{report_id}?done=executed", status_code=303)


@router.post("/reports/{report_id}/review")
async def review(request: Request, report_id: uuid.UUID) -> Response:
    caller, form = await posted(request, Permission.reports_use)
    who = acting(request, caller, _services(request).settings, form)
    try:
        await _actions(request).submit(who, report_id, Submit(reason=form.get("reason", "").strip()[:2000] or None))
    except DomainError as exc:
        return await _refused_in_place(request, who, report_id, exc)
    return RedirectResponse(f"{PREFIX}/reports/{report_id}?done=review", status_code=303)


@router.post("/reports/{report_id}/finalize")
async def finalize(request: Request, report_id: uuid.UUID) -> Response:
    caller, form = await posted(request, Permission.reports_finalize)
    who = acting(request, caller, _services(request).settings, form)
    try:
        try:
            data = Finalize(signature=SignatureInput(password=form.get("password", ""),
                                                     meaning=form.get("meaning", "approved"),  # type: ignore[arg-type]
                                                     reason=form.get("reason", "").strip()[:2000] or None))
        except ValidationError as exc:
            raise Invalid("enter your password to sign" if not form.get("password") else "choose a meaning",
                          reasons=[f"{k}: {v}" for k, v in field_errors(exc).items()]) from None
        await _actions(request).finalize(who, report_id, data)
    except DomainError as exc:
        return await _refused_in_place(request, who, report_id, exc)
    return RedirectResponse(f"{PREFIX}/reports/{report_id}?done=finalized", status_code=303)


@router.get("/reports/executions/{execution_id}/export")
def export(request: Request, execution_id: uuid.UUID, format: str = "csv") -> Response:  # noqa: A002 - the query's
    caller = _caller(request)
    _require(caller, Permission.reports_use)
    if format not in (*FORMATS, "pdf"):
        raise Invalid(f"no export format {format[:20]}: one of csv, jsonl, parquet, xlsx, pdf")
    s = _services(request)
    if s.objects is None:
        raise Unavailable("the object store is not reachable from this process")
    with s.sessions.begin(caller.org_id) as session:
        out = service.export(session, s.objects, caller, execution_id, format)  # type: ignore[arg-type]
    return Response(out.data, media_type=out.media_type, headers={
        "Content-Disposition": content_disposition(out.filename), "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store"})
