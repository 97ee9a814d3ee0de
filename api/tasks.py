"""The task inbox: list, claim, release, complete; and the notifications escalations send."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from api.deps import Permitted, PlatformDep, SessionDep
from api.paging import CursorQuery, SearchQuery, link_next
from api.steps import answer, completion, submit_step_action
from domain import notifications
from domain.roles import Caller, Permission
from domain.runs.messages import Outcome
from domain.runs.models import SUBJECT_FILTER, SUBJECT_ID
from domain.tasks import service
from domain.tasks.models import NotificationRead, TaskCompletion, TaskFilter, TaskRead

router = APIRouter(prefix="/api/v1", tags=["tasks"])
Status = Literal["open", "completed", "approved", "rejected", "cancelled", "any"]
TaskReader = Annotated[Caller, Depends(Permitted(Permission.tasks_read))]
TaskWorker = Annotated[Caller, Depends(Permitted(Permission.tasks_work))]


@router.get("/tasks", response_model=list[TaskRead])
def inbox(caller: TaskReader, s: SessionDep, request: Request, response: Response,
          mine: bool = Query(default=False, description="only tasks I have claimed"),
          my_roles: bool = Query(default=False, description="only tasks my role may work on"),
          overdue: bool = Query(default=False, description="only open tasks past their due time"),
          run_id: uuid.UUID | None = None,
          subject: str | None = Query(default=None, pattern=SUBJECT_ID, description=SUBJECT_FILTER + ": tasks "
                                      "of the runs on it"),
          status: Status = "open",
          q: str | None = SearchQuery, cursor: str | None = CursorQuery,
          limit: int = Query(default=200, ge=1, le=1000)) -> list[TaskRead]:
    """Tasks and approvals, most urgent first, with what each needs: form fields, checklist, due time. `q` finds
    tasks by words of their title, step, claimant and their run's protocol and subjects. A full page names the
    next one in `Link` (rel="next") and `X-Next-Cursor`."""
    f = TaskFilter(mine=mine, my_roles=my_roles, overdue=overdue, run_id=run_id, subject=subject,
                   status=None if status == "any" else status)
    page = service.inbox(s, caller, f, q=q, cursor=cursor, limit=limit)
    link_next(request, response, service.page_cursor(page, limit))
    return page


@router.get("/tasks/{task_id}", response_model=TaskRead)
def get_task(task_id: uuid.UUID, caller: TaskReader, s: SessionDep) -> TaskRead:
    """One task with its form, checklist and state."""
    return service.get(s, task_id)


@router.post("/tasks/{task_id}/claim", response_model=TaskRead)
def claim(task_id: uuid.UUID, caller: TaskWorker, s: SessionDep) -> TaskRead:
    """Take the task: others see who works on it, and only you can complete it until you release it."""
    return service.claim(s, caller, task_id)


@router.post("/tasks/{task_id}/release", response_model=TaskRead)
def release(task_id: uuid.UUID, caller: TaskWorker, s: SessionDep) -> TaskRead:
    """Give the task back (yours, or any as a lab manager)."""
    return service.release(s, caller, task_id)


@router.post("/tasks/{task_id}/complete", response_model=Outcome)
async def complete(task_id: uuid.UUID, data: TaskCompletion, caller: TaskWorker, s: SessionDep,
                   p: PlatformDep) -> JSONResponse:
    """Complete a task with its form values, checklist confirmations and evidence references.

    Gates: your role is allowed for the step, every checklist item is confirmed, the run is not on hold, the
    task is open and not claimed by someone else, the values fit the form. A refusal answers 403, 409 or 422
    with every reason and is on record. The X-Request-ID header is the idempotency key: a retried request
    never completes twice and gets the first answer. The answer names the tasks open next."""
    return answer(await submit_step_action(p, s, caller, completion(task_id, data)))


@router.get("/notifications", response_model=list[NotificationRead])
def my_notifications(caller: TaskReader, s: SessionDep,
                     limit: int = Query(default=100, ge=1, le=1000)) -> list[NotificationRead]:
    """Notifications addressed to your role (escalations of overdue work), newest first."""
    return notifications.for_role(s, caller.role.value, limit=limit)
