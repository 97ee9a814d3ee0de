"""Runs of approved protocols: launch, read, hold/resume/cancel, approvals (e-signatures), history.

Handlers are async because they talk to Temporal; their database work runs in the thread pool through
`in_tx`, one transaction per call, as in the other routers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import temporal
from api.deps import Platform, login_limits, platform, require
from domain import audit
from domain.audit import Severity
from domain.errors import Conflict, DomainError, Forbidden, Invalid, Unavailable
from domain.identity import service as identity
from domain.identity.service import LoginLimits
from domain.roles import Caller, Permission
from domain.runs import service as runs
from domain.runs.messages import Control, Decision, Outcome, RunInput, RunState
from domain.runs.models import (
    SUBJECT_FILTER,
    SUBJECT_ID,
    ApprovalRequest,
    ControlResult,
    RunControl,
    RunDetail,
    RunHistory,
    RunLaunch,
    RunRead,
)
from domain.signatures import Meaning, SignatureInput, verify
from domain.tasks import service as tasks

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
T = TypeVar("T")


async def in_tx(p: Platform, caller: Caller, fn: Callable[..., T], *args: Any) -> T:
    """`fn(session, *args)` in one transaction of the caller's org, off the event loop."""

    def work() -> T:
        with p.tx(caller) as s:
            return fn(s, *args)

    return await run_in_threadpool(work)


def refusal_reason(doing: str, message: str) -> str:
    """`<doing> refused: <why>`, once: domain messages often say it themselves already."""
    return (message if message.startswith(f"{doing} refused") else f"{doing} refused: {message}")[:2000]


def record_refusal(s: Session, caller: Caller, entity_type: str, entity_id: str, doing: str, exc: DomainError) -> None:
    """A refused request that changed nothing stays on record (403s and 404s are recorded by api/errors.py)."""
    audit.record(s, org_id=caller.org_id, actor=caller.actor, action="refuse", entity_type=entity_type,
                 entity_id=entity_id, after={"doing": doing, "status": exc.status, "reasons": exc.reasons},
                 reason=refusal_reason(doing, exc.message), severity=Severity.warning, context=caller.context)


async def refused(p: Platform, caller: Caller, entity_type: str, entity_id: str, doing: str, exc: DomainError) -> None:
    if not isinstance(exc, Forbidden) and exc.status < 500:
        await in_tx(p, caller, record_refusal, caller, entity_type, entity_id, doing, exc)


def asked_by_caller(first_actor_id: str | None, caller: Caller, about: str) -> None:
    """The rule for every X-Request-ID replay (launch, controls, completions, approvals): an id is one person's
    idempotency key, so a replay by another person neither acts nor tells them the first answer (Conflict,
    audited by the caller). None: an answer recorded before the asker was kept."""
    if first_actor_id is not None and first_actor_id != caller.actor.id:
        raise Conflict(f"X-Request-ID {caller.context.request_id} was already used by someone else for {about}: "
                       "send your request with a new X-Request-ID")


def yours(outcome: Outcome, caller: Caller) -> Outcome:
    """The first answer to this X-Request-ID, if it answered this caller (`asked_by_caller`)."""
    asked_by_caller(outcome.actor_id, caller, "this task")
    return outcome


def answer(outcome: Outcome) -> JSONResponse:
    """A done step answers 200 with the outcome; a refused one its status with every reason."""
    body = outcome.model_dump(mode="json")
    if not outcome.ok:
        body = {"detail": outcome.message, "reasons": outcome.reasons, **body}
    return JSONResponse(status_code=200 if outcome.ok else outcome.status, content=body)


@router.post("", response_model=RunRead, status_code=201, responses={
    200: {"model": RunRead, "description": "The run this X-Request-ID already launched (a retry): nothing new."}})
async def launch(data: RunLaunch, caller: Caller = Depends(require(Permission.runs_launch)),
                 p: Platform = Depends(platform)) -> JSONResponse:
    """Launch a run of an approved protocol version on samples/batches: a durable workflow (id = run id)
    interprets the pinned plan. `time_scale` (0 < x ≤ 1) shortens every due time, escalation and timer for
    training and demo runs. Retrying with the same X-Request-ID returns the same run (200)."""
    temporal.client_of(p)  # 503 before anything is written when Temporal is not configured
    run, plan, created = await in_tx(p, caller, runs.launch, caller, data)
    if not created:
        try:
            asked_by_caller(run.launched_by, caller, "a launch")
        except Conflict as exc:
            await refused(p, caller, "run", str(run.id), "launch", exc)
            raise
    if created:
        try:
            org = caller.org_slug or (await in_tx(p, caller, identity.get_org, caller)).slug
            await temporal.start_run(p, RunInput(run=runs.ref(run), plan=plan, time_scale=run.time_scale),
                                     org=org, subjects=[f"{x.type}:{x.id}" for x in run.subjects])
        except Unavailable as exc:
            await in_tx(p, caller, runs.launch_failed, caller, run.id, exc.message)
            raise
    return JSONResponse(status_code=201 if created else 200, content=run.model_dump(mode="json"))


@router.get("", response_model=list[RunRead])
def list_runs(status: str | None = Query(default=None, max_length=20),
              protocol_key: str | None = Query(default=None, max_length=64),
              subject: str | None = Query(default=None, pattern=SUBJECT_ID, description=SUBJECT_FILTER),
              limit: int = Query(default=100, ge=1, le=1000),
              caller: Caller = Depends(require(Permission.runs_read)),
              p: Platform = Depends(platform)) -> list[RunRead]:
    """Runs of the organization, newest first."""
    with p.tx(caller) as s:
        return runs.list_runs(s, status=status, protocol_key=protocol_key, subject=subject, limit=limit)


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: uuid.UUID, caller: Caller = Depends(require(Permission.runs_read)),
            p: Platform = Depends(platform)) -> RunDetail:
    """The run, what it waits for now, and every step event so far."""
    with p.tx(caller) as s:
        return runs.detail(s, run_id)


async def _control(action: Literal["hold", "resume", "cancel"], run_id: uuid.UUID, data: RunControl, caller: Caller,
                   p: Platform) -> ControlResult:
    await in_tx(p, caller, runs.get, run_id)
    msg = Control(action=action, actor=runs.actor_ref(caller), reason=data.reason, request=runs.request_info(caller))
    try:
        state = await temporal.update(p, run_id, action, msg, request_id=caller.context.request_id,
                                      result_type=RunState)
        asked_by_caller(state.actor_id, caller, f"a {action} of this run")
    except (Conflict, Invalid) as exc:
        await refused(p, caller, "run", str(run_id), action, exc)
        raise
    if action == "cancel":
        await temporal.request_cancellation(p, run_id, f"cancelled on the platform by {caller.actor.display}: "
                                                        f"{data.reason}")
    return ControlResult(run_id=run_id, status=state.status, open_tasks=state.open_tasks,
                         waiting_for=state.waiting_for)


@router.post("/{run_id}/hold", response_model=ControlResult)
async def hold(run_id: uuid.UUID, data: RunControl, caller: Caller = Depends(require(Permission.runs_control)),
               p: Platform = Depends(platform)) -> ControlResult:
    """Put a running run on hold, with the reason: completions and approvals are refused until it resumes,
    no new step opens and escalations wait; timers (incubations) keep running."""
    return await _control("hold", run_id, data, caller, p)


@router.post("/{run_id}/resume", response_model=ControlResult)
async def resume(run_id: uuid.UUID, data: RunControl, caller: Caller = Depends(require(Permission.runs_control)),
                 p: Platform = Depends(platform)) -> ControlResult:
    """Resume a held run, with the reason."""
    return await _control("resume", run_id, data, caller, p)


@router.post("/{run_id}/cancel", response_model=ControlResult)
async def cancel(run_id: uuid.UUID, data: RunControl, caller: Caller = Depends(require(Permission.runs_control)),
                 p: Platform = Depends(platform)) -> ControlResult:
    """Cancel the run, with the reason: its open tasks close and it takes no more work."""
    return await _control("cancel", run_id, data, caller, p)


def _sign(s: Session, caller: Caller, run_id: uuid.UUID, data: ApprovalRequest, limits: LoginLimits) -> Decision:
    """Gates and the password, then the decision carrying the signature bound to the reviewed records. The
    signature is recorded by the decision's activity, with the decision, or not at all. A retried request
    reuses the first signature."""
    prior = tasks.prior_answer(s, caller.context.request_id)
    if prior is not None and prior[1].signature_id:
        yours(prior[1], caller)
        task = runs.approval_task(s, run_id, uuid.UUID(prior[0]))
        signature_id, content_hash = prior[1].signature_id, runs.signed_hash(s, prior[1].signature_id)
        return Decision(task_id=str(task.id), actor=runs.actor_ref(caller), decision=data.decision,
                        signature_id=signature_id, content_hash=content_hash, reason=data.reason,
                        request=runs.request_info(caller))
    task = runs.approval_task(s, run_id, data.task_id)
    content_hash = runs.check_approval(s, caller, task, data.decision, data.reason)
    meaning = Meaning(task.spec["meaning"]) if data.decision == "approve" else Meaning.rejected
    sig = verify(s, caller, SignatureInput(password=data.password, meaning=meaning, reason=data.reason),
                 entity_type="task", entity_id=str(task.id), content_hash=content_hash, limits=limits)
    return Decision(task_id=str(task.id), actor=runs.actor_ref(caller), decision=data.decision,
                    signature_id=str(sig.id), content_hash=content_hash, reason=data.reason,
                    meaning=sig.meaning.value, signer_name=sig.signer_name, signed_at=sig.signed_at,
                    request=runs.request_info(caller))


async def _still_open(p: Platform, caller: Caller, decision: Decision) -> bool:
    task = await in_tx(p, caller, tasks.locate, uuid.UUID(decision.task_id))
    return bool(task.status == "open" and task.run_status in ("running", "on_hold"))


@router.post("/{run_id}/approvals", response_model=Outcome)
async def decide(run_id: uuid.UUID, data: ApprovalRequest, caller: Caller = Depends(require(Permission.approvals_sign)),
                 p: Platform = Depends(platform)) -> JSONResponse:
    """Approve or reject the run's open approval with an electronic signature: password re-entered, the meaning
    the protocol gives it (or `rejected`), a reason when rejecting. The signature is bound to the hash of the
    reviewed step records. Whoever performed a reviewed step in this run may not sign it (403). A rejection
    follows the step's `on_reject`: the steps from `from_step` open again, or the run ends as rejected.
    The X-Request-ID header is the idempotency key, as for completions."""
    temporal.client_of(p)
    try:
        decision = await in_tx(p, caller, _sign, caller, run_id, data, login_limits(p.settings))
    except (Conflict, Invalid) as exc:
        await refused(p, caller, "run", str(run_id), "approval", exc)
        raise
    try:
        outcome = await temporal.update_step(p, run_id, "decide", decision, request_id=caller.context.request_id,
                                             result_type=Outcome, still_open=lambda: _still_open(p, caller, decision))
    except (Conflict, Invalid) as exc:
        prior = await in_tx(p, caller, tasks.prior_answer, caller.context.request_id)
        if prior is not None and prior[0] == decision.task_id:
            outcome = prior[1]
        else:
            await refused(p, caller, "task", decision.task_id, "approval", exc)
            raise
    try:
        return answer(yours(outcome, caller))
    except Conflict as exc:
        await refused(p, caller, "task", decision.task_id, "approval", exc)
        raise


@router.get("/{run_id}/history", response_model=RunHistory)
async def history(run_id: uuid.UUID, download: bool = Query(default=False, description="as a JSON file to keep"),
                  caller: Caller = Depends(require(Permission.runs_history)),
                  p: Platform = Depends(platform)) -> JSONResponse:
    """One timeline of the run for auditors: the audit entries (run, tasks, signatures, refusals) merged with
    Temporal's event history. When Temporal no longer keeps the history, the audit part still answers.
    `download=1` adds Temporal's raw history and answers as a file."""
    await in_tx(p, caller, runs.get, run_id)
    events, availability, raw = await temporal.history_events(p, run_id)
    run, timeline = await in_tx(p, caller, runs.history, run_id, events)
    body: dict[str, Any] = RunHistory(run=run, temporal=availability, timeline=timeline).model_dump(mode="json")
    headers = {}
    if download:
        body["temporal_history"] = raw
        headers["Content-Disposition"] = f'attachment; filename="run-{run_id}-history.json"'
    return JSONResponse(content=body, headers=headers)
