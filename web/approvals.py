"""The approver's page: exactly what an approval signs — the reviewed steps with their values, the content hash the
signature binds, the signature's meaning — then the decision with the password re-entered. It signs through the
API's own path (POST /api/v1/runs/{id}/approvals, web/actions.py): the same gates, signature and audit entries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from domain.approvals import service as approvals
from domain.approvals.models import ApprovalRequest
from domain.errors import DomainError, NotFound
from domain.roles import Caller, Permission
from domain.runs import service as runs
from domain.runs.messages import ActorRef
from domain.tasks import service as tasks
from domain.tasks.models import TaskRead
from web.acting import acting, new_request_id, on_record
from web.app import PREFIX, _caller, _check_csrf, _form, _render, _require, _services, _text

router = APIRouter()


@dataclass
class Reviewed:
    """One reviewed step as the signature binds it, with the labels and units of its form."""

    title: str
    step_key: str
    iteration: int
    performed_by: str
    completed_at: str
    values: list[tuple[str, str]]  # (label with unit, value)
    checklist: list[str]
    evidence: list[str] = field(default_factory=list)


@dataclass
class Approval:
    task: TaskRead
    subject: str
    meaning: str
    content_hash: str
    reviewed: list[Reviewed]
    blocked: list[str]  # why this person may not sign now (the gates' own words)
    signed: approvals.SignedAs | None = None  # a closed approval's signature: the hash it bound, not today's


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return "—" if v is None else str(v)


def _reviewed(done: TaskRead, record: approvals.ReviewedRecord) -> Reviewed:
    """A reviewed step's record, its values under the form's labels and units, its checklist in words."""
    fields = {str(f.get("key")): f for f in (done.form or {}).get("fields", []) if isinstance(f, dict)}

    def label(key: str) -> str:
        spec = fields.get(key, {})
        return str(spec.get("label", key)) + (f" ({spec['unit']})" if spec.get("unit") else "")

    words = {i.get("key"): i.get("text") or i.get("key") for i in done.checklist}
    values, checklist, evidence = record.get("values"), record.get("checklist"), record.get("evidence")
    return Reviewed(
        title=done.title, step_key=done.step_key, iteration=done.iteration, performed_by=done.closed_by_display or "",
        completed_at=str(record.get("completed_at", ""))[:19].replace("T", " "),
        values=[(label(str(k)), _value(v)) for k, v in values.items()] if isinstance(values, dict) else [],
        checklist=[str(words.get(str(c), c)) for c in checklist] if isinstance(checklist, list) else [],
        evidence=[str(e) for e in evidence] if isinstance(evidence, list) else [])


def _approval(caller: Caller, request: Request, task_id: uuid.UUID) -> Approval:
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        task = tasks.get(session, task_id)  # NotFound for another organization's (404, on record)
        if task.kind != "approval":
            raise NotFound(f"task {task_id} is not an approval")
        row = approvals.approval_task(session, task.run_id, task_id)
        run = runs.get(session, task.run_id)
        reviews = list(row.spec.get("reviews", []))
        content_hash, records = approvals.reviewed_records(session, str(task.run_id), reviews)
        reviewed = []
        for r in records:
            done = tasks.get(session, uuid.UUID(str(r["task_id"])))
            reviewed.append(_reviewed(done, r))
        blocked: list[str] = []
        signed = approvals.signature_of(session, task_id) if task.status != "open" else None
        if task.status == "open":
            forbidden, conflicts, _ = approvals.approval_gates(session, row, ActorRef.of(caller), "approve", None)
            blocked = forbidden + conflicts
        if not caller.can(Permission.approvals_sign) or caller.role.value not in task.roles:
            blocked.insert(0, f"your role ({caller.role.value}) may not sign this approval "
                              f"(allowed: {', '.join(task.roles)})")
    subject = ", ".join(f"{x.type} {x.id}" for x in run.subjects)
    return Approval(task=task, subject=subject, meaning=str(row.spec.get("meaning", "approved")),
                    content_hash=content_hash, reviewed=reviewed, blocked=blocked, signed=signed)


def _page(request: Request, approval: Approval, *, message: str | None = None, reasons: list[str] | None = None,
          decision: str = "approve", reason: str = "", signed: bool = False, status: int = 200) -> HTMLResponse:
    return _render(request, "approval.html", {"a": approval, "message": message, "reasons": reasons or [],
                                              "decision": decision, "reason": reason, "signed": signed,
                                              "request_id": new_request_id()}, status=status)


@router.get("/approvals/{task_id}")
def approval_page(request: Request, task_id: uuid.UUID, signed: bool = False) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.tasks_read)
    return _page(request, _approval(caller, request, task_id), signed=signed)


@router.post("/approvals/{task_id}")
async def sign(request: Request, task_id: uuid.UUID) -> Response:
    caller = _caller(request)
    form = _text(await _form(request))
    await _check_csrf(request, caller, form)
    _require(caller, Permission.approvals_sign)
    s = _services(request)
    shown = await run_in_threadpool(_approval, caller, request, task_id)
    decision, reason = form.get("decision", ""), form.get("reason", "").strip()[:2000]

    async def again(message: str, reasons: list[str], status: int) -> HTMLResponse:
        fresh = await run_in_threadpool(_approval, caller, request, task_id)
        return _page(request, fresh, message=message, reasons=reasons, decision=decision, reason=reason,
                     status=status)

    if form.get("content_hash") != shown.content_hash:
        # What the page showed is not what would be signed now: nothing is signed, the person reviews again.
        return await again("Not signed: the reviewed records changed since this page showed them; review them "
                           "again below and sign what you see.", [], 409)
    try:
        data = ApprovalRequest(task_id=task_id, decision=decision, password=form.get("password", ""),  # type: ignore[arg-type]
                               reason=reason or None)
    except ValidationError as exc:
        reasons = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return await again("Not signed: " + ("enter your password to sign." if not form.get("password")
                                             else "correct the decision."), reasons, 422)
    who = acting(request, caller, s.settings, form)
    try:
        outcome = await s.runs.decide(who, shown.task.run_id, data)
    except DomainError as exc:
        await on_record(request, s.sessions, who, exc)
        return await again(f"Not signed: {exc.message}", exc.reasons, exc.status)
    if not outcome.ok:
        return await again(f"Not signed: {outcome.message}", outcome.reasons, outcome.status)
    return RedirectResponse(f"{PREFIX}/approvals/{task_id}?signed=1", status_code=303)
