"""Runs of approved protocols: launch, read, hold/resume/cancel, approvals (e-signatures), history.

Handlers are async because they talk to Temporal; their database work runs in the thread pool through
`in_tx`, one committed transaction per call (the first is authentication's), none held while Temporal answers.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from temporalio.workflow import UpdateMethodMultiParam

from api import temporal
from api.deps import Permitted, Platform, PlatformDep, SessionDep, in_tx, login_limits
from api.paging import CursorQuery, SearchQuery, link_next
from api.refusals import asked_by_caller, refused
from api.steps import answer, decision, submit_step_action
from core import metrics
from domain.approvals.models import ApprovalRequest
from domain.errors import Conflict, Invalid, Unavailable
from domain.identity import service as identity
from domain.roles import Caller, Permission
from domain.runs import service as runs
from domain.runs.messages import ActorRef, Control, Outcome, RunInput, RunState
from domain.runs.models import (
    SUBJECT_FILTER,
    SUBJECT_ID,
    ControlResult,
    RunControl,
    RunDetail,
    RunHistory,
    RunLaunch,
    RunRead,
)
from workflows.run import ProtocolRun

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
Launcher = Annotated[Caller, Depends(Permitted(Permission.runs_launch))]
RunReader = Annotated[Caller, Depends(Permitted(Permission.runs_read))]
Controller = Annotated[Caller, Depends(Permitted(Permission.runs_control))]
Signer = Annotated[Caller, Depends(Permitted(Permission.approvals_sign))]
HistoryReader = Annotated[Caller, Depends(Permitted(Permission.runs_history))]

ControlAction = Literal["hold", "resume", "cancel"]
CONTROLS: dict[ControlAction, UpdateMethodMultiParam[[ProtocolRun, Control], RunState]] = {
    "hold": ProtocolRun.hold, "resume": ProtocolRun.resume, "cancel": ProtocolRun.cancel}


@router.post("", response_model=RunRead, status_code=201, responses={
    200: {"model": RunRead, "description": "The run this X-Request-ID already launched (a retry): nothing new."}})
async def launch(data: RunLaunch, caller: Launcher, s: SessionDep, p: PlatformDep) -> JSONResponse:
    """Launch a run of an approved protocol version on samples/batches: a durable workflow (id = run id)
    interprets the pinned plan. `time_scale` (0 < x ≤ 1) shortens every due time, escalation and timer for
    training and demo runs. Retrying with the same X-Request-ID returns the same run (200)."""
    run, created = await launch_run(p, s, caller, data)
    return JSONResponse(status_code=201 if created else 200, content=run.model_dump(mode="json"))


async def launch_run(p: Platform, s: Session, caller: Caller, data: RunLaunch) -> tuple[RunRead, bool]:
    """Record the run and start its workflow: the run, and whether this request created it (False: a retry of the
    same request id, by the same person). The API's launch and the web pages' (api/app.py hands it to them)."""
    temporal.client_of(p)  # 503 before anything is written when Temporal is not configured
    run, plan, created = await in_tx(s, runs.launch, caller, data)
    if not created:
        try:
            asked_by_caller(run.launched_by, caller, "a launch")
        except Conflict as exc:
            await refused(s, caller, "run", str(run.id), "launch", exc)
            raise
    if created:
        try:
            org = caller.org_slug or (await in_tx(s, identity.get_org, caller)).slug
            await temporal.start_run(p, RunInput(run=runs.ref(run), plan=plan, time_scale=run.time_scale),
                                     org=org, subjects=[f"{x.type}:{x.id}" for x in run.subjects])
        except Unavailable as exc:
            await in_tx(s, runs.launch_failed, caller, run.id, exc.message)
            raise
    return run, created


@router.get("", response_model=list[RunRead])
def list_runs(caller: RunReader, s: SessionDep, request: Request, response: Response,
              status: str | None = Query(default=None, max_length=20),
              protocol_key: str | None = Query(default=None, max_length=64),
              subject: str | None = Query(default=None, pattern=SUBJECT_ID, description=SUBJECT_FILTER),
              q: str | None = SearchQuery, cursor: str | None = CursorQuery,
              limit: int = Query(default=100, ge=1, le=1000)) -> list[RunRead]:
    """Runs of the organization, newest first. `q` finds runs by words of their protocol, subjects and who
    launched them. A full page names the next one in `Link` (rel="next") and `X-Next-Cursor`."""
    page = runs.list_runs(s, status=status, protocol_key=protocol_key, subject=subject, q=q, cursor=cursor,
                          limit=limit)
    link_next(request, response, runs.page_cursor(page, limit))
    return page


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: uuid.UUID, caller: RunReader, s: SessionDep) -> RunDetail:
    """The run, what it waits for now, and every step event so far."""
    return runs.detail(s, run_id)


async def control_run(p: Platform, s: Session, caller: Caller, action: ControlAction, run_id: uuid.UUID,
                      data: RunControl) -> ControlResult:
    """Hold, resume or cancel the run through its workflow, with the reason: the API's controls and the web
    pages' (api/app.py hands it to them). A refusal (wrong state) is on record and raised."""
    await in_tx(s, runs.get, run_id)
    msg = Control(action=action, actor=ActorRef.of(caller), reason=data.reason, request=caller.context)
    try:
        state = await temporal.update(p, run_id, CONTROLS[action], msg, request_id=caller.context.request_id)
        asked_by_caller(state.actor_id, caller, f"a {action} of this run")
    except (Conflict, Invalid) as exc:
        await refused(s, caller, "run", str(run_id), action, exc)
        raise
    metrics.RUN_CONTROLS.labels(action).inc()
    if action == "cancel":
        await temporal.request_cancellation(p, run_id, f"cancelled on the platform by {caller.actor.display}: "
                                                        f"{data.reason}")
    return ControlResult(run_id=run_id, status=state.status, open_tasks=state.open_tasks,
                         waiting_for=state.waiting_for)


@router.post("/{run_id}/hold", response_model=ControlResult)
async def hold(run_id: uuid.UUID, data: RunControl, caller: Controller, s: SessionDep,
               p: PlatformDep) -> ControlResult:
    """Put a running run on hold, with the reason: completions and approvals are refused until it resumes,
    no new step opens and escalations wait; timers (incubations) keep running."""
    return await control_run(p, s, caller, "hold", run_id, data)


@router.post("/{run_id}/resume", response_model=ControlResult)
async def resume(run_id: uuid.UUID, data: RunControl, caller: Controller, s: SessionDep,
                 p: PlatformDep) -> ControlResult:
    """Resume a held run, with the reason."""
    return await control_run(p, s, caller, "resume", run_id, data)


@router.post("/{run_id}/cancel", response_model=ControlResult)
async def cancel(run_id: uuid.UUID, data: RunControl, caller: Controller, s: SessionDep,
                 p: PlatformDep) -> ControlResult:
    """Cancel the run, with the reason: its open tasks close and it takes no more work."""
    return await control_run(p, s, caller, "cancel", run_id, data)


@router.post("/{run_id}/approvals", response_model=Outcome)
async def decide(run_id: uuid.UUID, data: ApprovalRequest, caller: Signer, s: SessionDep,
                 p: PlatformDep) -> JSONResponse:
    """Approve or reject the run's open approval with an electronic signature: password re-entered, the meaning
    the protocol gives it (or `rejected`), a reason when rejecting. The signature is bound to the hash of the
    reviewed step records. Whoever performed a reviewed step in this run may not sign it (403). A rejection
    follows the step's `on_reject`: the steps from `from_step` open again, or the run ends as rejected.
    The X-Request-ID header is the idempotency key, as for completions."""
    return answer(await submit_step_action(p, s, caller, decision(run_id, data, login_limits(p.settings))))


@router.get("/{run_id}/history", response_model=RunHistory)
async def history(run_id: uuid.UUID, caller: HistoryReader, s: SessionDep, p: PlatformDep,
                  download: bool = Query(default=False, description="as a JSON file to keep")) -> JSONResponse:
    """One timeline of the run for auditors: the audit entries (run, tasks, signatures, refusals) merged with
    Temporal's event history. When Temporal no longer keeps the history, the audit part still answers.
    `download=1` adds Temporal's raw history and answers as a file."""
    found, raw = await run_history(p, s, run_id)
    body: dict[str, Any] = found.model_dump(mode="json")
    headers = {}
    if download:
        body["temporal_history"] = raw
        headers["Content-Disposition"] = f'attachment; filename="run-{run_id}-history.json"'
    return JSONResponse(content=body, headers=headers)


async def run_history(p: Platform, s: Session, run_id: uuid.UUID) -> tuple[RunHistory, Any]:
    """The run's timeline (audit entries merged with Temporal's events) and Temporal's raw history (None when it
    is not available): the API's history and the web pages' run page (api/app.py hands it to them)."""
    await in_tx(s, runs.get, run_id)
    events, availability, raw = await temporal.history_events(p, run_id)
    run, timeline = await in_tx(s, runs.history, run_id, events)
    return RunHistory(run=run, temporal=availability, timeline=timeline), raw
