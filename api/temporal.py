"""The API's one Temporal client and every call the API makes through it.

The client is created in the app's lifespan with `lazy=True`: the API starts even when Temporal is down and
reconnects on its own once it is up. Every call carries an `rpc_timeout`, so a stopped Temporal or a missing
worker answers 503 with what to do instead of hanging. /healthz reads the last result of a background probe.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog
from google.protobuf.json_format import MessageToDict
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from api.deps import Platform
from domain.canonical import format_ts
from domain.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unavailable
from domain.runs.messages import RunInput
from domain.runs.service import temporal_summary
from workflows.run import (
    AUTHORIZATION_RECHECK,
    ORG_ATTR,
    PROTOCOL_ATTR,
    SEARCH_ATTRIBUTES,
    STATUS_ATTR,
    SUBJECT_ATTR,
    ProtocolRun,
)

log = structlog.get_logger("flasktrack.api.temporal")

START_TIMEOUT = dt.timedelta(seconds=5)
UPDATE_TIMEOUT = dt.timedelta(seconds=10)
READ_TIMEOUT = dt.timedelta(seconds=10)
PROBE_EVERY_S = 5.0
NO_WORKER = ("no worker answered within {s:.0f} s: is `flasktrack worker` running? Retry with the same X-Request-ID "
             "header; the platform will not act twice.")

Arg = TypeVar("Arg")
Result = TypeVar("Result")


class UpdateRefused(Conflict):
    """The run's workflow refused the request (wrong step, wrong state): 409, nothing changed."""

    def __init__(self, message: str, *, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind  # the validator's error type: WrongStep, WrongState; "" when the run has ended


async def attach(p: Platform) -> Callable[[], Awaitable[None]]:
    """Create the client (unless the platform has one, e.g. a test's) and start the health probe; the closer."""
    # Unset: the dev server `flasktrack up` starts (the worker assumes the same).
    address = p.settings.temporal_address or f"127.0.0.1:{p.settings.temporal_port}"
    if p.temporal is None:
        p.temporal = await Client.connect(address, namespace=p.settings.temporal_namespace,
                                          data_converter=pydantic_data_converter, lazy=True)
    task = asyncio.create_task(_probe(p))

    async def close() -> None:
        task.cancel()

    return close


async def _probe(p: Platform) -> None:
    health = p.temporal_health
    while True:
        client = p.temporal
        health.checked_at = dt.datetime.now(dt.UTC).isoformat()
        if client is None:
            health.status, health.error = "down", "not configured: set FLASKTRACK_TEMPORAL_ADDRESS"
        else:
            try:
                await client.service_client.check_health(timeout=dt.timedelta(seconds=2))
                health.status, health.error = "up", None
                health.address = client.service_client.config.target_host
            except Exception as exc:  # noqa: BLE001 - report, never raise, from a health probe
                health.status, health.error = "down", _why(exc)
        await asyncio.sleep(PROBE_EVERY_S)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


_BY_STATUS: dict[int, type[DomainError]] = {403: Forbidden, 404: NotFound, 409: Conflict, 422: Invalid}


def _refused(exc: WorkflowUpdateFailedError) -> DomainError:
    """What the workflow's refusal means to the caller: its validator's 409; an activity's domain error as the
    same status the API gives it (the activity sends the status along); a record that could not be made, 503."""
    cause = exc.cause
    message = getattr(cause, "message", None) or str(cause or exc)
    kind = getattr(cause, "type", None) or ""
    if kind == "NotRecorded":
        return Unavailable(message)
    details = cause.details if isinstance(cause, ApplicationError) else ()
    refusal = details[0] if details and isinstance(details[0], dict) else {}
    status = refusal.get("status")
    if isinstance(status, int) and status in _BY_STATUS:
        return _BY_STATUS[status](message, reasons=[str(r) for r in refusal.get("reasons") or []])
    return UpdateRefused(message, kind=kind)


def client_of(p: Platform) -> Client:
    client = p.temporal
    if client is None:
        raise Unavailable("Temporal is not configured for this API (set FLASKTRACK_TEMPORAL_ADDRESS); "
                          "runs cannot be launched or worked on")
    return client


def _unavailable(exc: BaseException) -> Unavailable:
    log.warning("temporal call failed", error=_why(exc))
    return Unavailable(f"Temporal is not reachable ({_why(exc)}); try again shortly")


async def search_attributes_ready(p: Platform) -> bool:
    """Whether the namespace knows the runs' search attributes, registering them when allowed (the dev server
    allows it; a production cluster may need `temporal operator search-attribute create`). Remembered once
    true; when false, runs start without them rather than not at all."""
    if p.search_attributes_ready:
        return True
    client = client_of(p)
    try:
        known = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace), timeout=START_TIMEOUT)
        missing = {k.name: IndexedValueType.ValueType(k.indexed_value_type) for k in SEARCH_ATTRIBUTES
                   if k.name not in known.custom_attributes}
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing),
                timeout=START_TIMEOUT)
    except (RPCError, RuntimeError) as exc:
        log.warning("runs start without search attributes: they are not registered in Temporal", error=_why(exc))
        return False
    p.search_attributes_ready = True
    return True


async def start_run(p: Platform, inp: RunInput, *, org: str = "", subjects: Sequence[str] = ()) -> None:
    """Start the run's workflow (workflow id = run id); a start already made counts as done. The run carries
    search attributes (organization, protocol, subjects, status) so an operator finds it in the Temporal UI."""
    indexed = await search_attributes_ready(p)
    attributes = TypedSearchAttributes([
        SearchAttributePair(ORG_ATTR, org or inp.run.org_id),
        SearchAttributePair(PROTOCOL_ATTR, f"{inp.run.protocol_key} v{inp.run.protocol_version}"),
        SearchAttributePair(SUBJECT_ATTR, list(subjects)),
        SearchAttributePair(STATUS_ATTR, "running")]) if indexed else None
    try:
        await client_of(p).start_workflow(
            ProtocolRun.run, inp.model_copy(update={"indexed": indexed}), id=inp.run.run_id,
            task_queue=p.settings.task_queue, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, search_attributes=attributes,
            rpc_timeout=START_TIMEOUT)
    except WorkflowAlreadyStartedError:
        pass
    except (RPCError, RuntimeError) as exc:
        raise _unavailable(exc) from exc


async def request_cancellation(p: Platform, run_id: uuid.UUID | str, reason: str) -> None:
    """After a platform cancel, ask Temporal to cancel the workflow too, so it ends CANCELED there (the workflow
    waits for it; without it, it ends failed with RunCancelled a minute later). Best effort: the cancel is
    recorded already."""
    try:
        await client_of(p).get_workflow_handle(str(run_id)).cancel(reason=reason[:1000], rpc_timeout=READ_TIMEOUT)
    except (RPCError, RuntimeError) as exc:
        log.warning("cancellation request not sent; the run ends as failed (RunCancelled)", run_id=str(run_id),
                    error=_why(exc))


async def update(p: Platform, run_id: uuid.UUID | str, update: UpdateMethodMultiParam[[ProtocolRun, Arg], Result],
                 arg: Arg, *, request_id: str | None) -> Result:
    """One Update on the run's workflow (`ProtocolRun.hold`, …), its id the update's name and the request id: the
    same request never acts twice, and an id a client reuses for another kind of request (a hold, then a resume)
    is a request of its own, never answered with the other's result (Temporal deduplicates update ids across all
    of a workflow's updates)."""
    handle = client_of(p).get_workflow_handle_for(ProtocolRun.run, str(run_id))
    # The name the update is registered under (the SDK's own record of it, declared on the decorated method).
    update_id = f"{update._defn.name}:{request_id}" if request_id else None
    try:
        return await handle.execute_update(update, arg, id=update_id, rpc_timeout=UPDATE_TIMEOUT)
    except WorkflowUpdateFailedError as exc:
        raise _refused(exc) from exc
    except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
        raise Unavailable(NO_WORKER.format(s=UPDATE_TIMEOUT.total_seconds())) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UpdateRefused("the run has ended: its workflow takes no more requests") from exc
        if exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise Unavailable(NO_WORKER.format(s=UPDATE_TIMEOUT.total_seconds())) from exc
        raise _unavailable(exc) from exc
    except RuntimeError as exc:  # the lazy client could not connect
        raise _unavailable(exc) from exc


_BULKY = {"input", "result", "payloads", "details", "header", "data", "lastFailure", "failure", "memo",
          "searchAttributes", "userMetadata"}


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if k not in _BULKY}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


async def history_events(p: Platform, run_id: uuid.UUID) -> tuple[list[dict[str, Any]], dict[str, Any], Any]:
    """Temporal's events of the run as timeline items, whether they were available, and the raw history
    (JSON) for exports. Never raises: when Temporal has dropped the history (retention) or is down, the
    audit log still tells the story."""
    try:
        history = await client_of(p).get_workflow_handle(str(run_id)).fetch_history(rpc_timeout=READ_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - the audit part answers regardless
        gone = isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND
        reason = "no longer kept by Temporal (past the namespace's retention)" if gone else _why(exc)
        return [], {"available": False, "reason": reason}, None
    events = []
    for e in history.events:
        kind = EventType.Name(e.event_type)
        which = e.WhichOneof("attributes")
        attrs = MessageToDict(getattr(e, which)) if which else {}
        events.append({"at": format_ts(e.event_time.ToDatetime(tzinfo=dt.UTC)), "event_id": e.event_id,
                       "type": kind, "summary": temporal_summary(kind, attrs), "attributes": _prune(attrs)})
    return events, {"available": True, "events": len(events), "run_id": history.run_id}, history.to_json_dict()


async def recheck_authorizations(p: Platform, run_ids: Sequence[uuid.UUID | str]) -> int:
    """Tell each run's workflow its surface or the authorizations changed (a signal; it checks again by itself).
    Best effort, after the change is committed: a run not told now is told by its next expiry timer or change.
    How many were told."""
    if p.temporal is None or not run_ids:
        return 0
    told = 0
    for run_id in run_ids:
        try:
            await p.temporal.get_workflow_handle(str(run_id)).signal(AUTHORIZATION_RECHECK)
            told += 1
        except (RPCError, RuntimeError) as exc:
            log.warning("could not tell the run to check its authorizations", run_id=str(run_id), error=_why(exc))
    return told
