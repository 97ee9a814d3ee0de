"""What every handler needs: the platform's services, the caller, permission checks, the request's transaction.

Handlers stay thin: authenticate and check the permission (`Annotated` dependencies: `PlatformDep`, `SessionDep`,
a router's permission aliases), validate (pydantic), then one service call with the session authentication used.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Concatenate, Literal, ParamSpec, TypeVar

import structlog
from cachetools import LRUCache
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import Depends, Header, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BeforeValidator
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

from core.config import Settings
from core.db import TenantSessions
from core.net import address_behind
from core.storage import ObjectStore
from domain import audit
from domain.audit import Severity
from domain.audit.checkpoints import CheckpointStore, SigningKey
from domain.errors import Forbidden, Unauthenticated
from domain.identity import service as identity
from domain.identity.secrets import API_KEY_PREFIX, SESSION_PREFIX
from domain.identity.service import LoginLimits
from domain.roles import Caller, Permission, RequestContext

log = structlog.get_logger("flasktrack.api")
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)

# Both credentials travel as `Authorization: Bearer …`; two schemes so the interactive docs offer each by name.
SESSION_TOKEN = HTTPBearer(scheme_name="sessionToken", bearerFormat=f"{SESSION_PREFIX}…", auto_error=False,
                           description="A session token: `token` from POST /api/v1/auth/login (expires; revoked by "
                                       "POST /api/v1/auth/logout).")
API_KEY = HTTPBearer(scheme_name="apiKey", bearerFormat=f"{API_KEY_PREFIX}…", auto_error=False,
                     description="An API key from POST /api/v1/apikeys, bound to one organization and one role.")


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: object) -> object:
    # Pydantic alone would take `0.5` as a Unix time and a date without an offset as local time: an instant
    # in an audit filter must say what it means.
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("an instant with its offset, as in 2024-05-01T09:30:00Z or 2024-05-01T11:30:00+02:00")
    return value


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("an instant needs its offset (Z or ±hh:mm)")
    return value


Instant = Annotated[dt.datetime, BeforeValidator(_rfc3339), AfterValidator(_aware)]
"""A query parameter naming an instant: RFC 3339 with its offset (what `format: date-time` promises)."""


@dataclass
class TemporalHealth:
    """What the app's Temporal probe (api/temporal.py) found last; /healthz shows it."""

    status: Literal["up", "down"] = "down"
    error: str | None = "not checked yet"
    address: str | None = None
    checked_at: str | None = None

    def report(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Platform:
    """Long-lived services of one API process, and what its app keeps between requests.

    One per app: tests that build several apps give each its own (`dataclasses.replace`), which starts the app's
    own state (the fields after `temporal`) anew rather than sharing it."""

    settings: Settings
    sessions: TenantSessions
    checkpoints: CheckpointStore
    public_keys: dict[str, Ed25519PublicKey]
    signing_key: SigningKey
    objects: ObjectStore  # evidence files (core/storage.py), from settings.objects_uri
    temporal: Client | None = None  # the app's lifespan connects one (lazily) unless given one (tests give theirs)
    temporal_health: TemporalHealth = field(init=False, default_factory=TemporalHealth)
    search_attributes_ready: bool = field(init=False, default=False)  # once true, never asked again
    # (org, task) → the task's run, which never changes (api/steps.py): a retried completion looks up nothing.
    runs_of_tasks: LRUCache[tuple[uuid.UUID, uuid.UUID], uuid.UUID] = field(
        init=False, default_factory=lambda: LRUCache(maxsize=50_000))
    # The lake as reports read it (lake/reports.py), opened on first use (api/reports.py).
    report_lake: Any = field(init=False, default=None)

    @contextmanager
    def tx(self, caller: Caller | None) -> Iterator[Session]:
        """A transaction of its own (the request's is `SessionDep`): denials and lockouts on record while the request
        fails, health checks, streamed exports."""
        with self.sessions.begin(caller.org_id if caller else None) as s:
            yield s


def platform_of(request: Request) -> Platform:
    p: Platform = request.app.state.platform
    return p


async def platform(request: Request) -> Platform:
    return platform_of(request)


PlatformDep = Annotated[Platform, Depends(platform)]


async def request_session(p: PlatformDep) -> AsyncIterator[Session]:
    """The request's database session. Authentication's look-ups open its first transaction before the organization
    is known (SECURITY DEFINER functions only); the caller's organization is set in it once known (row-level
    security), and the handler's work follows in the same transaction, committed before the answer is sent (rolled
    back on error). An async handler ends it (`in_tx`) before it waits on Temporal; each later `in_tx` is a
    transaction of its own."""
    s = p.sessions.open()  # no I/O until its first statement
    try:
        yield s
        if s.in_transaction():  # a sync handler's: commit in the thread pool; an async one's ended already
            await run_in_threadpool(s.commit)
    except BaseException:
        if s.in_transaction():
            await run_in_threadpool(s.rollback)
        raise
    finally:
        s.close()  # no I/O: the session holds no connection any more


# scope="function": committed before the response is sent, so a client's next request sees what this one wrote.
SessionDep = Annotated[Session, Depends(request_session, scope="function")]

T = TypeVar("T")
P = ParamSpec("P")


async def in_tx(s: Session, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(s, ...)` off the event loop, committed (rolled back on error) before it returns: an async handler's
    database work between its Temporal calls, holding no connection while it waits. The first call continues the
    transaction authentication opened."""

    def work() -> T:
        try:
            result = fn(s, *args, **kwargs)
            s.commit()
        except BaseException:
            s.rollback()
            raise
        return result

    return await run_in_threadpool(work)


def request_id(
    x_request_id: str | None = Header(
        default=None, alias="X-Request-ID", pattern=REQUEST_ID_PATTERN,
        description="Your id for this request, the idempotency key of every write: a retried request with the same "
                    "id never acts twice and gets the first answer. 1–128 of `A-Z a-z 0-9 . _ : -`; another value "
                    "is refused (422), never replaced, since a replaced id would make a retry act twice."),
) -> str | None:
    """Declares (and so documents and validates) the X-Request-ID header on every operation."""
    return x_request_id


def request_context(request: Request) -> RequestContext:
    rid = request.headers.get("x-request-id")
    if rid is not None and not _REQUEST_ID.fullmatch(rid):
        # The request_id dependency refuses it first; this guards any entry point that does not declare it.
        raise RequestValidationError([{"type": "string_pattern_mismatch", "loc": ("header", "X-Request-ID"),
                                       "msg": f"String should match pattern '{REQUEST_ID_PATTERN}'", "input": rid}])
    if not rid:
        rid = getattr(request.state, "request_id", None) or str(uuid.uuid4())
    return RequestContext(
        request_id=rid,
        client_address=caller_address(request),
        user_agent=(request.headers.get("user-agent") or "")[:512] or None,
    )


def login_limits(s: Settings) -> LoginLimits:
    """When failed logins and signature passwords lock an account or an address out."""
    return LoginLimits(max_fail=s.login_max_failures, max_fail_addr=s.login_max_failures_per_address,
                       window=dt.timedelta(minutes=s.login_lockout_minutes))


def caller_address(request: Request) -> str | None:
    """The peer, or X-Forwarded-For when the peer is a trusted proxy (core/net.py: Flight's rule too)."""
    peer = request.client.host if request.client else None
    p: Platform | None = getattr(request.app.state, "platform", None)
    return address_behind(peer, request.headers.get("x-forwarded-for"), p.settings.trusted_proxies if p else ())


def authenticate(request: Request, s: Session) -> Caller:
    """The bearer credential → the caller (Unauthenticated otherwise), kept on the request for the error handlers."""
    # The header is read here for either credential (the dependencies' Security parameters only document them).
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token: log in at POST /api/v1/auth/login")
    caller = identity.resolve_credential(s, token.strip(), request_context(request))
    request.state.caller = caller
    structlog.contextvars.bind_contextvars(org_id=str(caller.org_id), actor=f"{caller.actor.type}:{caller.actor.id}")
    return caller


Credential = HTTPAuthorizationCredentials | None


def current_caller(request: Request, s: SessionDep, _session: Annotated[Credential, Security(SESSION_TOKEN)],
                   _api_key: Annotated[Credential, Security(API_KEY)]) -> Caller:
    """The caller, authenticated in the request's transaction, which works in the caller's organization from here on."""
    caller = authenticate(request, s)
    TenantSessions.enter(s, caller.org_id)
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]


def record_denial(p: Platform, caller: Caller, request: Request, reason: str, severity: Severity) -> None:
    """Every denied action leaves an entry in the caller's org, in its own transaction."""
    with p.tx(caller) as s:
        audit.record_denial(s, caller, f"{request.method} {request.url.path}", reason, severity)
    log.warning("denied", path=request.url.path, reason=reason)


class Permitted:
    """Dependency: the caller, if their role holds `permission`; else 403, audited (api/errors.py records every 403).
    Routers name one alias per permission they check: `Annotated[Caller, Depends(Permitted(Permission.tasks_work))]`."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission  # read by the role × endpoint test

    async def __call__(self, caller: CallerDep) -> Caller:
        if not caller.can(self.permission):
            raise Forbidden(f"your role ({caller.role}) may not do this ({self.permission})")
        return caller


Member = Annotated[Caller, Depends(Permitted(Permission.org_read))]
"""Any member of the organization (every role holds `org_read`)."""
