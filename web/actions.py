"""What the pages ask of a run's workflow, handed in by the API app (api/app.py `web_services`).

Launching, holding, resuming, cancelling, signing an approval and reading a run's history talk to Temporal
through the run's workflow (`workflows.run.ProtocolRun`), which this package may not import: the API binds its
own functions (api/runs.py `launch_run`, `control_run`, `run_history`; api/steps.py `submit_step_action`) to its
platform and hands them over, so a page and an API call take the same path, checks, refusals and audit entries.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from domain.analysis import LakeTable
from domain.approvals.models import ApprovalRequest
from domain.compliance.models import AuthorizationRead, AuthorizationSign
from domain.events.models import ActionDone, EventCreate, EventDetail
from domain.reports.models import (
    CheckResult,
    DefinitionCreate,
    DefinitionRead,
    ExecutionResult,
    Finalize,
    PreviewResult,
    QueryCheck,
    QueryPreview,
    ReportCreate,
    ReportRead,
    ReportUpdate,
    Submit,
)
from domain.roles import Caller
from domain.runs.messages import Outcome
from domain.runs.models import ControlResult, RunControl, RunHistory, RunLaunch, RunRead

ControlAction = Literal["hold", "resume", "cancel"]
EventAction = Literal["investigate", "root_cause", "effectiveness", "close"]


@dataclass(frozen=True)
class RunActions:
    """Each raises the domain's error when refused (the refusal on record as in the API)."""

    launch: Callable[[Caller, RunLaunch], Awaitable[RunRead]]
    control: Callable[[Caller, uuid.UUID, ControlAction, RunControl], Awaitable[ControlResult]]
    decide: Callable[[Caller, uuid.UUID, ApprovalRequest], Awaitable[Outcome]]  # the run, the signed decision
    history: Callable[[Caller, uuid.UUID], Awaitable[RunHistory]]


@dataclass(frozen=True)
class ReportActions:
    """The API's own report handlers (api/reports.py) bound to its platform: the sandbox's check before a save, the
    lake's executions, and the refusals on record (409s and 422s) exactly as over HTTP. Each raises the domain's
    error when refused; reads the pages make through domain/reports/service.py directly."""

    tables: Callable[[Caller], Awaitable[list[LakeTable]]]
    validate: Callable[[Caller, QueryCheck], Awaitable[CheckResult]]
    preview: Callable[[Caller, QueryPreview], Awaitable[PreviewResult]]
    save: Callable[[Caller, DefinitionCreate], Awaitable[DefinitionRead]]
    create: Callable[[Caller, ReportCreate], Awaitable[ReportRead]]
    update: Callable[[Caller, uuid.UUID, ReportUpdate], Awaitable[ReportRead]]
    execute: Callable[[Caller, uuid.UUID], Awaitable[ExecutionResult]]
    submit: Callable[[Caller, uuid.UUID, Submit], Awaitable[ReportRead]]
    finalize: Callable[[Caller, uuid.UUID, Finalize], Awaitable[ReportRead]]


@dataclass(frozen=True)
class ComplianceActions:
    """The API's paths for what reaches a workflow (api/compliance.py, api/events.py): signing an authorization
    (then open runs check their authorizations again), raising an event (its workflow started), and an event's
    transition or a CAPA action's completion as an Update on its workflow (`data` the API's body model). Each raises the
    domain's error when refused, on record as in the API."""

    sign_authorization: Callable[[Caller, uuid.UUID, AuthorizationSign], Awaitable[AuthorizationRead]]
    raise_event: Callable[[Caller, EventCreate], Awaitable[EventDetail]]
    event_step: Callable[[Caller, uuid.UUID, EventAction, BaseModel], Awaitable[EventDetail]]
    complete_action: Callable[[Caller, uuid.UUID, uuid.UUID, ActionDone], Awaitable[EventDetail]]  # event, action
