"""What the lab manager's and approver's pages share: acting with a form's request id, refusals on record,
the server's validation messages by field, and pages of a list.

A form carries a request id made when the page was rendered: the idempotency key of what it asks (as the API's
X-Request-ID), so a double submit acts once and a corrected resubmission is a request of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

import structlog
from fastapi import Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from core.config import Settings
from core.db import TenantSessions
from domain import audit
from domain.audit import Severity
from domain.errors import DomainError, Forbidden, NotFound
from domain.identity import service as identity
from domain.identity.service import LockedOut
from domain.roles import Caller
from domain.signatures import SignatureRefused
from web import sessions

log = structlog.get_logger("flasktrack.web")
PAGE = 50  # rows per page of every list
T = TypeVar("T")


def new_request_id() -> str:
    return str(uuid.uuid4())


def acting(request: Request, caller: Caller, settings: Settings, form: dict[str, str]) -> Caller:
    """The person acting with this form's request id (a new one if the form has none or a malformed one)."""
    request_id = form.get("request_id", "")
    try:
        uuid.UUID(request_id)
    except ValueError:
        request_id = new_request_id()
    who = replace(caller, context=sessions.request_context(request, settings, request_id))
    request.state.caller = who
    return who


def _own_tx(db: TenantSessions, caller: Caller | None, work: Callable[..., None], *args: object) -> None:
    try:
        with db.begin(caller.org_id if caller else None) as s:
            work(s, *args)
    except Exception:  # noqa: BLE001 - the refusal is shown anyway; the log says what was not recorded
        log.exception("could not record a refusal")


async def on_record(request: Request, db: TenantSessions, caller: Caller, exc: DomainError) -> None:
    """A refusal a page shows in place (rather than on the error page) is on record as the API puts it: a 403 or
    404 as a denial, a wrong signature password towards the account's lockout, a lockout once. (409s and 422s of
    a run's workflow are recorded by the API's path itself.)"""
    if isinstance(exc, Forbidden | NotFound):
        severity = Severity.warning if isinstance(exc, Forbidden) else Severity.notice
        reason = ("denied: " if isinstance(exc, Forbidden) else "not found: ") + exc.message
        await run_in_threadpool(_own_tx, db, caller, audit.record_denial, caller,
                                f"{request.method} {request.url.path}", reason, severity)
    if isinstance(exc, SignatureRefused):
        await run_in_threadpool(_own_tx, db, caller, identity.record_failed_signature, caller)
    if isinstance(exc, LockedOut):
        await run_in_threadpool(_own_tx, db, None, identity.record_lockout, exc, caller.context)


def field_errors(exc: ValidationError, names: dict[str, str] | None = None) -> dict[str, str]:
    """The validator's messages by the form field they concern (its first location), e.g. `subjects`:
    "line 2, id: String should match pattern …"."""
    errors: dict[str, list[str]] = {}
    for e in exc.errors():
        loc = [str(x) for x in e["loc"]]
        field = (names or {}).get(loc[0], loc[0]) if loc else "form"
        where = ", ".join(f"line {int(x) + 1}" if x.isdigit() else x for x in loc[1:])
        errors.setdefault(field, []).append(f"{where}: {e['msg']}" if where else str(e["msg"]))
    return {k: "; ".join(v)[:600] for k, v in errors.items()}


def page_of(rows: Sequence[T], page: int, size: int = PAGE) -> tuple[list[T], bool]:
    """One page of rows read with one row more than the page (that row tells whether a next page exists)."""
    return list(rows[(page - 1) * size: page * size]), len(rows) > page * size


def page_number(page: int) -> int:
    return max(1, min(page, 1000))
