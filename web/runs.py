"""The lab manager's run pages: launch a run, the run page (facts, what it waits for, its timeline), and hold,
resume or cancel with a reason. Each action takes the API's own path (web/actions.py), so a page and
POST /api/v1/runs/{id}/hold check, refuse and record alike."""

from __future__ import annotations

import json
import uuid
from typing import Any, cast, get_args

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from domain.errors import DomainError
from domain.protocols import service as protocols
from domain.roles import Caller, Permission
from domain.runs import service as runs
from domain.runs.models import RunControl, RunHistory, RunLaunch
from domain.tasks import service as tasks
from domain.tasks.models import TaskFilter
from web.acting import PAGE, acting, field_errors, new_request_id, on_record, page_number
from web.actions import ControlAction
from web.app import PREFIX, _caller, _check_csrf, _form, _render, _require, _services, _text
from web.compliance import Compliance, compliance_of

router = APIRouter()
MAX_SUBJECT_LINES = 500
CONTROLS: tuple[ControlAction, ...] = get_args(ControlAction)
CONTROL_WORDS = {"hold": "Put on hold", "resume": "Resume", "cancel": "Cancel the run"}


# ------------------------------------------------------------------ launch


def _approved(caller: Caller, request: Request) -> list[tuple[str, str]]:
    """(value, label) of every approved protocol version, newest protocol first."""
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        found = protocols.list_protocols(session)
    return [(f"{p.key}:{v}", f"{p.title} — {p.key} v{v}") for p in found for v in reversed(p.approved_versions)]


def _launch_page(request: Request, caller: Caller, values: dict[str, str], errors: dict[str, str] | None = None,
                 message: str | None = None, status: int = 200) -> HTMLResponse:
    return _render(request, "run_launch.html", {
        "choices": _approved(caller, request), "values": values, "errors": errors or {}, "message": message,
        "request_id": values.get("request_id") if errors is None and message is None else new_request_id()},
        status=status)


@router.get("/runs/new")
def launch_form(request: Request, protocol: str = "") -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.runs_launch)
    return _launch_page(request, caller, {"protocol": protocol[:80], "time_scale": "1",
                                          "request_id": new_request_id()})


def _subjects(text: str) -> list[dict[str, str]]:
    """One subject per line, as the lab writes it: `sample S-2024-0042`, `batch B-7` (a bare id is a sample)."""
    out = []
    for line in text.splitlines()[:MAX_SUBJECT_LINES + 1]:
        words = line.split()
        if not words:
            continue
        if len(words) == 1:
            out.append({"type": "sample", "id": words[0]})
        else:
            out.append({"type": words[0].lower(), "id": " ".join(words[1:])})
    return out


def _parameters(text: str) -> tuple[dict[str, Any], str | None]:
    """`name: value` lines (YAML) or a JSON object; the reason when it is neither."""
    if not text.strip():
        return {}, None
    try:
        value = yaml.safe_load(text)
        json.dumps(value, allow_nan=False)
    except (yaml.YAMLError, TypeError, ValueError) as exc:
        return {}, f"write one `name: value` per line (YAML) or a JSON object ({str(exc).splitlines()[0][:200]})"
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        return {}, "write one `name: value` per line (YAML) or a JSON object"
    return value, None


@router.post("/runs")
async def launch(request: Request) -> Response:
    caller = _caller(request)
    form = _text(await _form(request))
    await _check_csrf(request, caller, form)
    _require(caller, Permission.runs_launch)
    s = _services(request)
    values = {k: form.get(k, "")[:20_000] for k in ("protocol", "subjects", "parameters", "time_scale", "request_id")}
    key, _, version = values["protocol"].rpartition(":")
    errors: dict[str, str] = {}
    if not key or not version.isdigit():
        errors["protocol"] = "choose an approved protocol version"
    parameters, problem = _parameters(values["parameters"])
    if problem:
        errors["parameters"] = problem
    body = {"protocol_key": key or None, "protocol_version": int(version) if version.isdigit() else None,
            "subjects": _subjects(values["subjects"]), "parameters": parameters,
            "time_scale": values["time_scale"].strip() or "1"}
    try:
        data = RunLaunch.model_validate(body)
    except ValidationError as exc:
        errors = {**field_errors(exc, {"protocol_key": "protocol", "protocol_version": "protocol"}), **errors}
    if errors:
        return await run_in_threadpool(_launch_page, request, caller, values, errors, None, 422)
    who = acting(request, caller, s.settings, form)
    try:
        run = await s.runs.launch(who, data)
    except DomainError as exc:
        await on_record(request, s.sessions, who, exc)
        message = exc.message + ("" if not exc.reasons else ": " + "; ".join(exc.reasons))
        return await run_in_threadpool(_launch_page, request, caller, values, None, message, exc.status)
    return RedirectResponse(f"{PREFIX}/runs/{run.id}?done=launched", status_code=303)


# ------------------------------------------------------------------ the run page


def _timeline(history: RunHistory | None, steps: list[dict[str, Any]], temporal: bool) -> list[dict[str, str]]:
    """The run's story, oldest first, each line naming the step and the person: the audit part of the history
    (and Temporal's events on request); for a role without the history, the run's step events."""
    if history is not None:
        return [{"at": t.at, "who": t.detail.get("actor", {}).get("display", "Temporal") if t.source == "audit"
                 else "Temporal", "kind": t.kind, "summary": t.summary, "source": t.source}
                for t in history.timeline if temporal or t.source == "audit"]
    return [{"at": e["occurred_at"], "who": e["actor"] or "", "kind": e["event"], "source": "steps",
             "summary": f"{e['actor']}: {e['event'].replace('_', ' ')}"
                        + (f" — step {e['step_key']}" if e["step_key"] else "")} for e in steps]


async def _run_page(request: Request, caller: Caller, run_id: uuid.UUID, *, page: int = 1, temporal: bool = False,
                    message: str | None = None, errors: dict[str, str] | None = None, done: str | None = None,
                    status: int = 200) -> HTMLResponse:
    s = _services(request)

    def read() -> tuple[Any, list[Any], Compliance | None]:
        with s.sessions.begin(caller.org_id) as session:
            detail = runs.detail(session, run_id)  # NotFound for another organization's run (404, on record)
            compliance = compliance_of(session, caller, "run", run_id)
            open_now = tasks.inbox(session, caller, TaskFilter(run_id=run_id), limit=PAGE) \
                if caller.can(Permission.tasks_read) else []
        return detail, open_now, compliance

    detail, open_now, compliance = await run_in_threadpool(read)
    history = await s.runs.history(caller, run_id) if caller.can(Permission.runs_history) else None
    lines = _timeline(history, detail.steps, temporal)
    page = page_number(page)
    shown = lines[(page - 1) * PAGE: page * PAGE]
    return _render(request, "run.html", {
        "run": detail, "open_now": open_now, "timeline": shown, "page": page, "more": len(lines) > page * PAGE,
        "temporal": temporal, "temporal_state": history.temporal if history else None, "message": message,
        "errors": errors or {}, "done": done, "controls": _controls(caller, detail.status),
        "request_id": new_request_id(), "compliance": compliance}, status=status)


def _controls(caller: Caller, status: str) -> list[tuple[str, str]]:
    if not caller.can(Permission.runs_control):
        return []
    allowed = {"running": ("hold", "cancel"), "on_hold": ("resume", "cancel")}.get(status, ())
    return [(a, CONTROL_WORDS[a]) for a in CONTROLS if a in allowed]


@router.get("/runs/{run_id}")
async def run_page(request: Request, run_id: uuid.UUID, page: int = 1, temporal: bool = False,
                   done: str | None = None) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.runs_read)
    return await _run_page(request, caller, run_id, page=page, temporal=temporal,
                           done=done if done in CONTROLS or done == "launched" else None)


@router.post("/runs/{run_id}/{action}")
async def control(request: Request, run_id: uuid.UUID, action: str) -> Response:
    caller = _caller(request)
    form = _text(await _form(request))
    await _check_csrf(request, caller, form)
    if action not in CONTROLS:
        raise HTTPException(404, "no such page")
    chosen = cast(ControlAction, action)
    _require(caller, Permission.runs_control)
    s = _services(request)
    try:
        data = RunControl(reason=form.get("reason", "").strip()[:5000])
    except ValidationError:
        return await _run_page(request, caller, run_id, status=422, errors={action: "give the reason (up to 2000 "
                                                                                    "characters): it goes on record"})
    who = acting(request, caller, s.settings, form)
    try:
        await s.runs.control(who, run_id, chosen, data)
    except DomainError as exc:
        await on_record(request, s.sessions, who, exc)
        return await _run_page(request, caller, run_id, status=exc.status,
                               message=f"Not done: {exc.message}" + ("" if not exc.reasons else
                                                                      " (" + "; ".join(exc.reasons) + ")"))
    return RedirectResponse(f"{PREFIX}/runs/{run_id}?done={action}", status_code=303)
