"""What the run workflow, its activities and the API pass each other through Temporal.

The workflow sandbox imports this module: it needs only pydantic, the standard library, the plan and
the roles (who acts, the request they came with).
Nothing here carries a password: the API verifies it, and a signature travels as what the decision's activity
records (id, meaning, signer, time, the hash signed).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.protocols.plan import ApprovalNode, ExecutionPlan, TaskNode
from domain.roles import Actor, Caller, RequestContext

ENDED: frozenset[str] = frozenset({"completed", "rejected", "cancelled", "failed"})


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunRef(_Message):
    """Enough of the run for every record it writes (outbox payloads name the protocol version)."""

    org_id: str
    run_id: str
    protocol_key: str
    protocol_version: int


class ActorRef(_Message):
    """Who acts, as the API authenticated them: a person (with their role then) or an API key."""

    type: str
    id: str
    display: str
    user_id: str | None = None
    role: str | None = None

    @classmethod
    def of(cls, caller: Caller) -> ActorRef:
        return cls(type=caller.actor.type, id=caller.actor.id, display=caller.actor.display,
                   user_id=str(caller.user_id) if caller.user_id else None, role=caller.role.value)

    def actor(self) -> Actor:
        """Who acts, as the records name them."""
        return Actor(type=self.type, id=self.id, display=self.display)


class Resume(_Message):
    """Where a run continued-as-new picks up: the next root step and what the run knows so far."""

    next_index: int
    values: dict[str, dict[str, Any]]
    reached: dict[str, int]
    held: bool


class RunInput(_Message):
    # Fields a workflow input no longer has are ignored, so runs started with one still start and replay:
    # `continue_every` (a test hook until issue 8; tests now override ProtocolRun.continue_as_new_due).
    model_config = ConfigDict(extra="ignore")

    run: RunRef
    plan: ExecutionPlan
    time_scale: float = Field(default=1.0, gt=0, le=1)
    resume: Resume | None = None
    indexed: bool = False  # the API set the run's search attributes: the workflow keeps FlasktrackStatus current


class CheckAuthorizations(_Message):
    """The run asks whether its surface needs an authorization it lacks, as of `at` (workflow time)."""

    run: RunRef
    at: dt.datetime


class AuthorizationCheck(_Message):
    """Held for want of an authorization, and why; when the earliest authorization the run relies on ends."""

    held: bool
    reasons: list[str] = []
    next_expiry: dt.datetime | None = None


class TaskBrief(_Message):
    task_id: str
    step_key: str
    kind: Literal["task", "approval"]
    title: str
    iteration: int
    due_at: dt.datetime | None = None


class Waiting(_Message):
    """One thing a run waits for now, and until when: a task or approval (until its due time), a timer (until it
    fires), or a hold (until someone resumes the run; no time)."""

    kind: Literal["task", "approval", "timer", "hold"]
    step_key: str = ""
    title: str = ""
    task_id: str | None = None
    iteration: int = 0
    until: dt.datetime | None = None
    reason: str | None = None  # a hold's


HumanNode = Annotated[TaskNode | ApprovalNode, Field(discriminator="kind")]


class OpenStep(_Message):
    run: RunRef
    task_id: str
    step: HumanNode
    iteration: int
    opened_at: dt.datetime
    due_at: dt.datetime | None


class Completion(_Message):
    """A technician's submission for one task (the Update's argument)."""

    task_id: str
    actor: ActorRef
    values: dict[str, Any] = {}
    checklist: dict[str, bool] = {}
    evidence: list[str] = []
    checklist_evidence: dict[str, list[str]] = {}  # item key → evidence ids (none in runs recorded before)
    request: RequestContext = RequestContext()


class CompleteTask(_Message):
    run: RunRef
    step: TaskNode
    iteration: int
    completion: Completion
    open_next: list[OpenStep] = []  # what the run opens next, recorded with the completion when it is done


class Decision(_Message):
    """An approver's decision on one approval step, signed beforehand by the API (the Update's argument)."""

    task_id: str
    actor: ActorRef
    decision: Literal["approve", "reject"]
    signature_id: str
    content_hash: str
    # The signature the API verified (password re-entered), recorded with the decision in one transaction.
    meaning: str | None = None
    signer_name: str | None = None
    signed_at: dt.datetime | None = None
    reason: str | None = None
    request: RequestContext = RequestContext()


class DecideApproval(_Message):
    run: RunRef
    step: ApprovalNode
    iteration: int
    decision: Decision
    open_next: list[OpenStep] = []


class Outcome(_Message):
    """The answer to a completion or a decision: done, or refused with every reason (status 403/409/422)."""

    ok: bool
    status: int = 200
    message: str = ""
    reasons: list[str] = []
    task_id: str
    run_id: str
    step_key: str
    iteration: int
    result: Literal["completed", "approved", "rejected", "refused"]
    submission_id: str | None = None
    signature_id: str | None = None
    closed_at: dt.datetime | None = None
    values: dict[str, Any] | None = None
    open_tasks: list[TaskBrief] = []  # what the run waits for next, once it has moved on
    run_status: str | None = None
    # Who sent the request this answers: the same X-Request-ID from someone else is refused, never answered
    # with this (None in answers recorded before it was kept).
    actor_id: str | None = None


class Escalate(_Message):
    run: RunRef
    task_id: str
    step_key: str
    step_kind: Literal["task", "approval"]
    title: str
    iteration: int
    level: int  # 0 = the due time itself; n = the protocol's n-th escalation level
    notify_roles: list[str]
    due_at: dt.datetime
    fired_at: dt.datetime  # the workflow's clock when the level fired: its time, plus the worker's pick-up delay
    scheduled_at: dt.datetime | None = None  # when the level was due to fire: due_at + the level's delay


class StepEvent(_Message):
    """A step event the workflow records itself: timers, skipped steps, the run's end."""

    run: RunRef
    key: str  # idempotency key, unique in the run
    step_key: str
    step_kind: str
    event: str
    iteration: int = 0
    at: dt.datetime  # the workflow's clock
    detail: dict[str, Any] = {}


class Control(_Message):
    """Hold, resume or cancel, with the reason on record."""

    action: Literal["hold", "resume", "cancel"]
    actor: ActorRef
    reason: str = Field(min_length=1, max_length=2000)
    request: RequestContext = RequestContext()


class ControlRun(_Message):
    run: RunRef
    control: Control


class FinishRun(_Message):
    run: RunRef
    status: Literal["completed", "rejected"]
    reason: str | None = None


class RunState(_Message):
    """The workflow's own view (the Query), beside the runs row that mirrors it."""

    run_id: str
    status: str
    held: bool
    open_tasks: list[TaskBrief]
    reached: dict[str, int]
    waiting_for: list[Waiting] = []
    # A control's answer: who sent it, so the same X-Request-ID from someone else is refused, never answered
    # with this (None in a query's answer and in answers recorded before it was kept).
    actor_id: str | None = None
