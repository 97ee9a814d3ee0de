"""What the compliance event workflow, its activities and the API pass each other through Temporal.

The workflow sandbox imports this module: pydantic, the standard library and the roles only. Nothing here carries
a password: the API verifies it, and the closure's signature travels as what the activity records.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.roles import RequestContext
from domain.runs.messages import ActorRef

EVENT_WORKFLOW = "ComplianceEvent"
WATCH_WORKFLOW = "ComplianceWatch"
# After an action's due time: level 0 tells its owner; level 1, this long later, tells the lab managers too.
SECOND_LEVEL_AFTER = dt.timedelta(days=2)

Transition = Literal["investigate", "root_cause", "add_action", "complete_action", "effectiveness", "close"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


def workflow_id(event_id: str) -> str:
    return f"event-{event_id}"


class EventRef(_Message):
    org_id: str
    event_id: str


class ActionSpec(_Message):
    kind: str
    description: str
    owner_id: str
    due_at: dt.datetime


class SignedClosure(_Message):
    """The closer's signature, verified by the API (password re-entered); recorded with the closure."""

    signature_id: str
    signer_id: str
    signer_name: str
    meaning: str
    reason: str | None = None
    content_hash: str
    signed_at: dt.datetime


class EventStep(_Message):
    """One person's transition of an event."""

    event: EventRef
    action: Transition
    actor: ActorRef
    key: str = ""  # the Update's id (set by the workflow): a transition recorded twice is recorded once
    request: RequestContext = Field(default_factory=RequestContext)
    reason: str | None = None
    root_cause: str | None = None
    actions: list[ActionSpec] = Field(default_factory=list)
    action_id: str | None = None
    note: str | None = None
    effective: bool | None = None
    signature: SignedClosure | None = None


class ActionState(_Message):
    id: str
    owner_id: str
    due_at: dt.datetime
    done: bool
    level: int = -1  # the highest escalation level fired


class EventState(_Message):
    """The event as its workflow needs it: where it stands and the CAPA actions it watches."""

    event_id: str
    code: str
    status: str
    reporter_id: str
    effective: bool | None = None
    actions: list[ActionState] = Field(default_factory=list)


class EventInput(_Message):
    event: EventRef


class CapaEscalation(_Message):
    event: EventRef
    action_id: str
    level: int
    due_at: dt.datetime
    fired_at: dt.datetime


class WatchInput(_Message):
    every_seconds: float = 300.0
    rounds: int = 0  # rounds done before this run continued as new
