"""The task inbox: list, claim, release, complete; and the notifications escalations send."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from api import temporal
from api.deps import Platform, platform, require
from api.runs import answer, in_tx, refused, yours
from domain import notifications
from domain.errors import Conflict, Invalid
from domain.roles import Caller, Permission
from domain.runs import service as runs
from domain.runs.messages import Completion, Outcome
from domain.runs.models import SUBJECT_FILTER, SUBJECT_ID
from domain.tasks import service
from domain.tasks.models import NotificationRead, TaskCompletion, TaskFilter, TaskRead

router = APIRouter(prefix="/api/v1", tags=["tasks"])
Status = Literal["open", "completed", "approved", "rejected", "cancelled", "any"]


@router.get("/tasks", response_model=list[TaskRead])
def inbox(mine: bool = Query(default=False, description="only tasks I have claimed"),
          my_roles: bool = Query(default=False, description="only tasks my role may work on"),
          overdue: bool = Query(default=False, description="only open tasks past their due time"),
          run_id: uuid.UUID | None = None,
          subject: str | None = Query(default=None, pattern=SUBJECT_ID, description=SUBJECT_FILTER + ": tasks "
                                      "of the runs on it"),
          status: Status = "open",
          limit: int = Query(default=200, ge=1, le=1000),
          caller: Caller = Depends(require(Permission.tasks_read)), p: Platform = Depends(platform)) -> list[TaskRead]:
    """Tasks and approvals, most urgent first, with what each needs: form fields, checklist, due time."""
    f = TaskFilter(mine=mine, my_roles=my_roles, overdue=overdue, run_id=run_id, subject=subject,
                   status=None if status == "any" else status)
    with p.tx(caller) as s:
        return service.inbox(s, caller, f, limit=limit)


@router.get("/tasks/{task_id}", response_model=TaskRead)
def get_task(task_id: uuid.UUID, caller: Caller = Depends(require(Permission.tasks_read)),
             p: Platform = Depends(platform)) -> TaskRead:
    """One task with its form, checklist and state."""
    with p.tx(caller) as s:
        return service.get(s, task_id)


@router.post("/tasks/{task_id}/claim", response_model=TaskRead)
def claim(task_id: uuid.UUID, caller: Caller = Depends(require(Permission.tasks_work)),
          p: Platform = Depends(platform)) -> TaskRead:
    """Take the task: others see who works on it, and only you can complete it until you release it."""
    with p.tx(caller) as s:
        return service.claim(s, caller, task_id)


@router.post("/tasks/{task_id}/release", response_model=TaskRead)
def release(task_id: uuid.UUID, caller: Caller = Depends(require(Permission.tasks_work)),
            p: Platform = Depends(platform)) -> TaskRead:
    """Give the task back (yours, or any as a lab manager)."""
    with p.tx(caller) as s:
        return service.release(s, caller, task_id)


_RUNS_OF_TASKS: OrderedDict[tuple[uuid.UUID, uuid.UUID], uuid.UUID] = OrderedDict()


async def _run_of(p: Platform, caller: Caller, task_id: uuid.UUID) -> uuid.UUID:
    """The run a task belongs to (it never changes: kept in memory per org); NotFound, audited, otherwise."""
    key = (caller.org_id, task_id)
    run_id = _RUNS_OF_TASKS.get(key)
    if run_id is None:
        run_id = (await in_tx(p, caller, service.locate, task_id)).run_id
        _RUNS_OF_TASKS[key] = run_id
        if len(_RUNS_OF_TASKS) > 50_000:
            _RUNS_OF_TASKS.popitem(last=False)
    return run_id


async def _still_open(p: Platform, caller: Caller, task_id: uuid.UUID) -> bool:
    task = await in_tx(p, caller, service.locate, task_id)
    return bool(task.status == "open" and task.run_status in ("running", "on_hold"))


@router.post("/tasks/{task_id}/complete", response_model=Outcome)
async def complete(task_id: uuid.UUID, data: TaskCompletion, caller: Caller = Depends(require(Permission.tasks_work)),
                   p: Platform = Depends(platform)) -> JSONResponse:
    """Complete a task with its form values, checklist confirmations and evidence references.

    Gates: your role is allowed for the step, every checklist item is confirmed, the run is not on hold, the
    task is open and not claimed by someone else, the values fit the form. A refusal answers 403, 409 or 422
    with every reason and is on record. The X-Request-ID header is the idempotency key: a retried request
    never completes twice and gets the first answer. The answer names the tasks open next."""
    request_id = caller.context.request_id
    run_id = await _run_of(p, caller, task_id)
    completion = Completion(task_id=str(task_id), actor=runs.actor_ref(caller), values=data.values,
                            checklist=data.confirmed(), evidence=data.evidence, request=runs.request_info(caller))
    try:
        # Always through the workflow, even for a retry: it must learn of a completion its activity recorded.
        outcome = await temporal.update_step(p, run_id, "complete_task", completion, request_id=request_id,
                                             result_type=Outcome, still_open=lambda: _still_open(p, caller, task_id))
    except (Conflict, Invalid) as exc:
        # The run moved on (or ended) after answering this very request before: the first answer.
        prior = await in_tx(p, caller, service.prior_answer, request_id)
        if prior is None or prior[0] != str(task_id):
            await refused(p, caller, "task", str(task_id), "completion", exc)
            raise
        outcome = prior[1]
    try:
        if outcome.task_id != str(task_id):
            raise Conflict(f"X-Request-ID {request_id} already answered a request about another task")
        return answer(yours(outcome, caller))
    except Conflict as reused:
        await refused(p, caller, "task", str(task_id), "completion", reused)
        raise


@router.get("/notifications", response_model=list[NotificationRead])
def my_notifications(limit: int = Query(default=100, ge=1, le=1000),
                     caller: Caller = Depends(require(Permission.tasks_read)),
                     p: Platform = Depends(platform)) -> list[NotificationRead]:
    """Notifications addressed to your role (escalations of overdue work), newest first."""
    with p.tx(caller) as s:
        return notifications.for_role(s, caller.role.value, limit=limit)
