"""Step actions over HTTP: completing a task (POST /tasks/{id}/complete) and deciding an approval
(POST /runs/{id}/approvals) take one path, `submit_step_action`:

1. the run and the workflow's message, in the transaction authentication opened: a completion names its task, whose
   run is looked up once and kept (per app); a decision names its run, and is signed here (password, gates);
2. the Update on the run's workflow, by reference (`ProtocolRun.complete_task`, `ProtocolRun.decide`), retried
   while the run catches up after a worker restart;
3. when the workflow refuses, the first answer to this X-Request-ID if there was one (the run may have moved on
   since it was given), else the refusal, on record;
4. an X-Request-ID reused for another task, or by another person, refused (409) and on record.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from temporalio.workflow import UpdateMethodMultiParam

from api import temporal
from api.deps import Platform, in_tx
from api.refusals import asked_by_caller, refused
from core import metrics
from domain.approvals import service as approvals
from domain.approvals.models import ApprovalRequest
from domain.errors import Conflict, DomainError, Invalid, Unavailable
from domain.identity.service import LoginLimits
from domain.roles import Caller
from domain.runs.messages import ENDED, ActorRef, Completion, Decision, Outcome
from domain.signatures import Meaning, SignatureInput, verify
from domain.tasks import actions
from domain.tasks import service as tasks
from domain.tasks.models import TaskCompletion
from workflows.run import ProtocolRun

Message = TypeVar("Message", Completion, Decision)

CATCH_UP_S = 5.0
CATCHING_UP = ("the run is catching up (its worker restarted) and has not reached this step again yet; retry "
               "with the same X-Request-ID header")


@dataclass(frozen=True)
class StepAction(Generic[Message]):
    """What a person asks of one step of a run: `completion(...)` or `decision(...)`."""

    doing: Literal["completion", "approval"]  # the refusal's words: "completion refused: …"
    names: Literal["task", "run"]  # what the request's path names: a refusal before the workflow is about it
    id: uuid.UUID  # … its id
    update: UpdateMethodMultiParam[[ProtocolRun, Message], Outcome]  # the run's Update that takes the message
    message: Callable[[Session, Caller, uuid.UUID], Message]  # the message for the run, in the first transaction


def completion(task_id: uuid.UUID, data: TaskCompletion) -> StepAction[Completion]:
    """A task completed with its form values, checklist confirmations and evidence."""

    def message(s: Session, caller: Caller, run_id: uuid.UUID) -> Completion:
        return Completion(task_id=str(task_id), actor=ActorRef.of(caller), values=data.values,
                          checklist=data.confirmed(), evidence=data.evidence,
                          checklist_evidence=data.checklist_evidence, request=caller.context)

    return StepAction("completion", "task", task_id, ProtocolRun.complete_task, message)


def decision(run_id: uuid.UUID, data: ApprovalRequest, limits: LoginLimits) -> StepAction[Decision]:
    """An approval decided with an electronic signature."""

    def signed(s: Session, caller: Caller, run_id: uuid.UUID) -> Decision:
        """Gates and the password, then the decision carrying the signature bound to the reviewed records. The
        signature is recorded by the decision's activity, with the decision, or not at all. A retried request
        reuses the first signature."""
        prior = actions.prior_answer(s, caller.context.request_id)
        if prior is not None and prior[1].signature_id:
            yours(prior[1], caller)
            task = approvals.approval_task(s, run_id, uuid.UUID(prior[0]))
            signature_id, content_hash = prior[1].signature_id, approvals.signed_hash(s, prior[1].signature_id)
            return Decision(task_id=str(task.id), actor=ActorRef.of(caller), decision=data.decision,
                            signature_id=signature_id, content_hash=content_hash, reason=data.reason,
                            request=caller.context)
        task = approvals.approval_task(s, run_id, data.task_id)
        content_hash = approvals.check_approval(s, caller, task, data.decision, data.reason)
        meaning = Meaning(task.spec["meaning"]) if data.decision == "approve" else Meaning.rejected
        sig = verify(s, caller, SignatureInput(password=data.password, meaning=meaning, reason=data.reason),
                     entity_type="task", entity_id=str(task.id), content_hash=content_hash, limits=limits)
        return Decision(task_id=str(task.id), actor=ActorRef.of(caller), decision=data.decision,
                        signature_id=str(sig.id), content_hash=content_hash, reason=data.reason,
                        meaning=sig.meaning.value, signer_name=sig.signer_name, signed_at=sig.signed_at,
                        request=caller.context)

    return StepAction("approval", "run", run_id, ProtocolRun.decide, signed)


async def submit_step_action(p: Platform, s: Session, caller: Caller, action: StepAction[Message]) -> Outcome:
    """Do the step action once, whatever the retries: the outcome (naming the tasks open next), or the workflow's
    refusal (every reason), each on record; the same X-Request-ID gets the first answer again. The API answers it
    with `answer`; the web pages show it."""
    try:
        outcome = await _submit(p, s, caller, action)
    except DomainError as exc:
        metrics.STEP_ACTIONS.labels(action.doing, "unavailable" if isinstance(exc, Unavailable) else "refused").inc()
        raise
    metrics.STEP_ACTIONS.labels(action.doing, "accepted" if outcome.ok else "refused").inc()
    return outcome


async def _submit(p: Platform, s: Session, caller: Caller, action: StepAction[Message]) -> Outcome:
    temporal.client_of(p)  # 503 before anything is checked or signed when Temporal is not configured
    request_id = caller.context.request_id
    cache_key = (caller.org_id, action.id)
    known_run = p.runs_of_tasks.get(cache_key) if action.names == "task" else None
    try:
        run_id, message = await in_tx(s, _prepare, caller, action, known_run)
    except (Conflict, Invalid) as exc:
        await refused(s, caller, action.names, str(action.id), action.doing, exc)
        raise
    if action.names == "task":
        p.runs_of_tasks[cache_key] = run_id
    try:
        # Always through the workflow, even for a retry: it must learn of a step its activity recorded.
        outcome = await _update_step(p, s, run_id, action.update, message, request_id)
    except (Conflict, Invalid) as exc:
        # The run moved on (or ended) after answering this very request before: the first answer.
        prior = await in_tx(s, actions.prior_answer, request_id)
        if prior is None or prior[0] != message.task_id:
            await refused(s, caller, "task", message.task_id, action.doing, exc)
            raise
        outcome = prior[1]
    try:
        if outcome.task_id != message.task_id:
            raise Conflict(f"X-Request-ID {request_id} already answered a request about another task")
        return yours(outcome, caller)
    except Conflict as reused:
        await refused(s, caller, "task", message.task_id, action.doing, reused)
        raise


def _prepare(s: Session, caller: Caller, action: StepAction[Message], known_run: uuid.UUID | None
             ) -> tuple[uuid.UUID, Message]:
    if action.names == "run":
        run_id = action.id
    else:  # NotFound, audited, for a task the caller's organization does not have
        run_id = known_run or tasks.locate(s, action.id).run_id
    return run_id, action.message(s, caller, run_id)


async def _update_step(p: Platform, s: Session, run_id: uuid.UUID,
                       update: UpdateMethodMultiParam[[ProtocolRun, Message], Outcome], message: Message,
                       request_id: str | None) -> Outcome:
    """The Update about one step. A step the database shows open but the workflow does not wait on yet is a run
    catching up after a worker crash (it re-runs the last activities of a lost workflow task): retry a few
    seconds, then 503."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CATCH_UP_S
    while True:
        try:
            return await temporal.update(p, run_id, update, message, request_id=request_id)
        except temporal.UpdateRefused as exc:
            if exc.kind != "WrongStep" or not await in_tx(s, _still_open, uuid.UUID(message.task_id)):
                raise
            if loop.time() > deadline:
                raise Unavailable(CATCHING_UP) from exc
            await asyncio.sleep(0.2)


def _still_open(s: Session, task_id: uuid.UUID) -> bool:
    task = tasks.locate(s, task_id)
    return task.status == "open" and task.run_status not in ENDED


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
