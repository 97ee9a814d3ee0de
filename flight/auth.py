"""Who may talk to the Flight SQL server, and the bearer sessions they get.

The platform's identity layer implements `Authenticator`; this module only depends on
that Protocol. Handshake is Basic auth (user e-mail + password, or any username + an API
key as password — the Authenticator decides) answered with a random bearer token; every
later call must carry `authorization: Bearer <token>`.

pyarrow answers Handshake with UNIMPLEMENTED unless a `ServerAuthHandler` is installed,
so the server installs the no-op `NoOpAuthHandler` and does the real work in
`BearerAuthMiddlewareFactory` (headers are visible there; the handler never sees them).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NoReturn, Protocol

import pyarrow.flight as flight
import structlog

from domain.roles import PERMISSIONS, Permission

log = structlog.get_logger(__name__)

QUERY_ROLES = frozenset(str(r) for r in PERMISSIONS[Permission.lake_query])
"""Roles allowed to run queries and browse the catalog (the platform's `lake.query` permission);
every other role is PERMISSION_DENIED."""

Outcome = Literal["ok", "refused", "error", "denied", "unauthenticated"]


@dataclass(frozen=True)
class Principal:
    org_id: str  # UUID string
    role: str  # owner|admin|lab_manager|scientist|technician|auditor|analyst
    actor_type: str  # "user" | "api_key"
    actor_id: str
    display: str

    @property
    def may_query(self) -> bool:
        return self.role in QUERY_ROLES


@dataclass(frozen=True)
class QueryEvent:
    """One audited request: a query (ok, refused, failed or denied) or a failed login.

    `principal` is passed beside the event to `Authenticator.record_query` (None when
    the caller could not be authenticated; `username` then says who it claimed to be).
    """

    sql: str
    outcome: Outcome
    rows: int = 0
    duration_ms: float = 0.0
    reason: str | None = None
    username: str | None = None
    client_address: str | None = None
    tables: tuple[str, ...] = ()


class Authenticator(Protocol):
    def authenticate(self, username: str, password: str, client_address: str | None) -> Principal | None:
        """Check credentials; None = bad credentials."""
        ...

    def record_query(self, principal: Principal | None, event: QueryEvent) -> None:
        """Audit hook, called for every query and failed login (must not raise)."""
        ...


@dataclass
class Session:
    token: str
    principal: Principal
    created_at: float
    last_used_at: float
    client_address: str | None = None


@dataclass
class SessionStore:
    """In-memory bearer tokens: token → principal, with idle and absolute expiry."""

    idle_ttl_s: float = 3600.0
    max_ttl_s: float = 12 * 3600.0
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, principal: Principal, client_address: str | None = None) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), principal, now, now, client_address)
        with self._lock:
            self._expire(now)
            self._sessions[session.token] = session
        return session

    def lookup(self, token: str) -> Session | None:
        now = self.clock()
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if now - session.last_used_at > self.idle_ttl_s or now - session.created_at > self.max_ttl_s:
                del self._sessions[token]
                return None
            session.last_used_at = now
            return session

    def revoke(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self, now: float) -> None:
        stale = [
            t
            for t, s in self._sessions.items()
            if now - s.last_used_at > self.idle_ttl_s or now - s.created_at > self.max_ttl_s
        ]
        for t in stale:
            del self._sessions[t]


def parse_basic(value: str) -> tuple[str, str] | None:
    """`Basic <base64(user:password)>` → (user, password). The Go client omits '=' padding."""
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    encoded = encoded.strip()
    encoded += "=" * (-len(encoded) % 4)
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def parse_bearer(value: str) -> str | None:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def record(authenticator: Authenticator, principal: Principal | None, event: QueryEvent) -> None:
    """Call the audit hook; a failing hook is logged, never turned into a client error."""
    try:
        authenticator.record_query(principal, event)
    except Exception:  # noqa: BLE001
        log.exception("flight.audit_hook_failed", outcome=event.outcome)


def _header(headers: dict[str, list[str | bytes]], name: str) -> str | None:
    values = headers.get(name) or []
    if not values:
        return None
    value = values[0]
    return value.decode("latin-1") if isinstance(value, bytes) else value


class NoOpAuthHandler(flight.ServerAuthHandler):
    """Makes pyarrow accept Handshake; authentication happens in the middleware."""

    def authenticate(self, outgoing: flight.ServerAuthSender, incoming: flight.ServerAuthReader) -> None:
        return None

    def is_valid(self, token: bytes) -> str:
        return ""


class BearerAuthMiddleware(flight.ServerMiddleware):
    def __init__(self, session: Session, issued: bool) -> None:
        self.session = session
        self._issued = issued

    @property
    def principal(self) -> Principal:
        return self.session.principal

    @property
    def token(self) -> str:
        return self.session.token

    def sending_headers(self) -> dict[str, str]:
        if self._issued:
            return {"authorization": f"Bearer {self.session.token}"}
        return {}


class BearerAuthMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Basic → Bearer on Handshake (or on any call that sends Basic); Bearer required afterwards."""

    def __init__(
        self, authenticator: Authenticator, sessions: SessionStore, *, trust_forwarded_for: bool = False
    ) -> None:
        self.authenticator = authenticator
        self.sessions = sessions
        # pyarrow shows a middleware the headers, not the peer: the client address is only known
        # from X-Forwarded-For, which only a trusted proxy in front of the server may set.
        self.trust_forwarded_for = trust_forwarded_for

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str | bytes]]) -> BearerAuthMiddleware:
        authorization = _header(headers, "authorization")
        forwarded = _header(headers, "x-forwarded-for") if self.trust_forwarded_for else None
        address = forwarded.split(",")[0].strip() if forwarded else None
        if authorization is not None:
            token = parse_bearer(authorization)
            if token is not None:
                session = self.sessions.lookup(token)
                if session is not None:
                    return BearerAuthMiddleware(session, issued=False)
                self._reject(None, "expired or unknown bearer token", address)
            credentials = parse_basic(authorization)
            if credentials is not None:
                username, password = credentials
                principal = self._authenticate(username, password, address)
                if principal is None:
                    self._reject(username, "bad credentials", address)
                return BearerAuthMiddleware(self.sessions.open(principal, address), issued=True)
        self._reject(None, "no credentials (Basic on Handshake, then Bearer)", address)

    def _authenticate(self, username: str, password: str, address: str | None) -> Principal | None:
        try:
            return self.authenticator.authenticate(username, password, address)
        except Exception:  # noqa: BLE001 - an identity-layer failure must read as a refusal
            log.exception("flight.authenticator_failed")
            return None

    def _reject(self, username: str | None, reason: str, address: str | None) -> NoReturn:
        event = QueryEvent(sql="", outcome="unauthenticated", reason=reason, username=username, client_address=address)
        record(self.authenticator, None, event)
        raise flight.FlightUnauthenticatedError(f"unauthenticated: {reason}")


def caller(context: flight.ServerCallContext) -> BearerAuthMiddleware:
    """The authenticated session of the current call (the middleware always sets one)."""
    middleware = context.get_middleware("auth")
    if not isinstance(middleware, BearerAuthMiddleware):  # pragma: no cover - middleware misconfigured
        raise flight.FlightUnauthenticatedError("unauthenticated")
    return middleware
