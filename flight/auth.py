"""Who may talk to the Flight SQL server, and the bearer sessions they get.

The platform's identity layer implements `Authenticator`; this module only depends on
that Protocol. Handshake is Basic auth (user e-mail + password, or any username + an API
key as password — the Authenticator decides) answered with a random bearer token; every
later call must carry `authorization: Bearer <token>`.

pyarrow answers Handshake with UNIMPLEMENTED unless a `ServerAuthHandler` is installed,
so the server installs the no-op `NoOpAuthHandler` and does the real work in
`BearerAuthMiddlewareFactory` (headers are visible there; the handler never sees them).

pyarrow shows neither the middleware nor the handshake handler the peer's address, only the
RPC handlers (`ServerCallContext.peer()`). The password is what per-address login throttling
guards, so it is checked where the address is known: Handshake answers a *pending* bearer
token, and the first call that carries it checks the credentials with the caller's address
(`caller(context)`); wrong credentials or a lockout end the session there (UNAUTHENTICATED).

Sessions live in memory for hours, so the principal is checked against the identity layer
again at most every `recheck_s` seconds: a revoked API key, a changed role or a disabled
account takes effect on the next call after that.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NoReturn, Protocol

import pyarrow.flight as flight
import structlog
from cachetools import TLRUCache

from core.net import client_address, peer_host, trusted_networks
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


class LoginRefused(Exception):
    """An Authenticator's refusal that tells the caller what to do (instead of "bad credentials")."""


class LoginThrottled(LoginRefused):
    """An Authenticator's answer while the account or the address is locked out."""


class Authenticator(Protocol):
    def authenticate(self, username: str, password: str, client_address: str | None) -> Principal | None:
        """Check credentials; None = bad credentials; LoginRefused (LoginThrottled while locked out)
        when the caller is to be told why."""
        ...

    def refresh(self, principal: Principal) -> Principal | None:
        """The principal as it stands now (its role may have changed); None once it may no longer
        log in (API key revoked, account disabled, membership ended)."""
        ...

    def record_query(self, principal: Principal | None, event: QueryEvent) -> None:
        """Audit hook, called for every query and failed login (must not raise)."""
        ...


@dataclass
class Session:
    token: str
    principal: Principal | None  # None while pending (credentials not checked yet)
    created_at: float
    last_used_at: float
    client_address: str | None = None
    checked_at: float = 0.0  # when the principal was last confirmed by the Authenticator
    credentials: tuple[str, str] | None = None  # pending: checked on the first call
    refusal: str | None = None  # why its credentials were refused (told again on each later call)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass
class SessionStore:
    """In-memory bearer tokens: token → principal, with idle and absolute expiry.

    A time-aware LRU cache holds them: each session expires at the deadline `_expires_at` gives it when it
    is stored, and storing it again (on every use, and once its credentials are checked) moves the deadline.
    """

    idle_ttl_s: float = 3600.0
    max_ttl_s: float = 12 * 3600.0
    recheck_s: float = 30.0  # confirm the principal with the Authenticator at most this often
    pending_ttl_s: float = 60.0  # a token whose credentials were never checked lasts this long
    max_sessions: int = 100_000  # Handshake costs nothing to send: a flood meets UNAVAILABLE, not the heap
    clock: Callable[[], float] = time.monotonic
    _sessions: TLRUCache[str, Session] = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._sessions = TLRUCache(self.max_sessions, self._expires_at, timer=self.clock)

    def _expires_at(self, token: str, session: Session, now: float) -> float:
        deadline = min(session.last_used_at + self.idle_ttl_s, session.created_at + self.max_ttl_s)
        if session.principal is None:  # pending, or refused: only until its credentials' short lifetime ends
            deadline = min(deadline, session.created_at + self.pending_ttl_s)
        # Past the deadline, not at it: a session used exactly idle_ttl_s ago is still valid.
        return math.nextafter(deadline, math.inf)

    def open(self, principal: Principal, client_address: str | None = None) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), principal, now, now, client_address, checked_at=now)
        with self._lock:
            self._sessions[session.token] = session
        return session

    def open_pending(self, username: str, password: str) -> Session:
        """A token for credentials to be checked on its first call (where the peer is known)."""
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), None, now, now, credentials=(username, password))
        with self._lock:
            if len(self._sessions) >= self.max_sessions:  # len() drops the expired ones first
                raise flight.FlightUnavailableError("too many sessions open; retry shortly")
            self._sessions[session.token] = session
        return session

    def due(self, session: Session) -> bool:
        """Whether the session's principal must be confirmed again before it is used."""
        return self.clock() - session.checked_at >= self.recheck_s

    def lookup(self, token: str) -> Session | None:
        now = self.clock()
        with self._lock, self._sessions.timer:  # one instant for the check and the renewal
            session = self._sessions.get(token)
            if session is None:
                return None
            session.last_used_at = now
            self._sessions[token] = session  # renews the idle deadline
            return session

    def renew(self, session: Session) -> None:
        """Store the session again after its principal changed (pending → logged in): the deadline follows."""
        with self._lock:
            if session.token in self._sessions:
                self._sessions[session.token] = session

    def revoke(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


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
    def __init__(
        self, factory: BearerAuthMiddlewareFactory, session: Session, issued: bool, forwarded_for: str | None
    ) -> None:
        self.factory = factory
        self.session = session
        self.forwarded_for = forwarded_for
        self._issued = issued

    @property
    def principal(self) -> Principal:
        principal = self.session.principal
        if principal is None:  # pragma: no cover - handlers get the middleware through caller()
            raise flight.FlightUnauthenticatedError("unauthenticated")
        return principal

    @property
    def token(self) -> str:
        return self.session.token

    def sending_headers(self) -> dict[str, str]:
        if self._issued:
            return {"authorization": f"Bearer {self.session.token}"}
        return {}


class BearerAuthMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Basic → a pending Bearer (on Handshake, or on any call that sends Basic); Bearer required
    afterwards. The credentials are checked, and the principal re-checked, in `resolve`."""

    def __init__(
        self, authenticator: Authenticator, sessions: SessionStore, *, trusted_proxies: Sequence[str] = ()
    ) -> None:
        self.authenticator = authenticator
        self.sessions = sessions
        # X-Forwarded-For counts only from these peers (core/net.py: the same rule as HTTP).
        self.trusted = trusted_networks(trusted_proxies)

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str | bytes]]) -> BearerAuthMiddleware:
        authorization = _header(headers, "authorization")
        forwarded = _header(headers, "x-forwarded-for")
        if authorization is not None:
            token = parse_bearer(authorization)
            if token is not None:
                session = self.sessions.lookup(token)
                if session is not None:
                    return BearerAuthMiddleware(self, session, issued=False, forwarded_for=forwarded)
                self._reject(None, "expired or unknown bearer token", None)
            credentials = parse_basic(authorization)
            if credentials is not None:
                session = self.sessions.open_pending(*credentials)
                return BearerAuthMiddleware(self, session, issued=True, forwarded_for=forwarded)
        self._reject(None, "no credentials (Basic on Handshake, then Bearer)", None)

    def resolve(self, middleware: BearerAuthMiddleware, context: flight.ServerCallContext) -> None:
        """Check pending credentials with the caller's address; re-check a principal that is due."""
        session = middleware.session
        with session.lock:
            if session.credentials is not None:
                self._log_in(session, self._address(middleware, context))
            elif session.principal is None:  # its credentials were refused on an earlier call
                self._reject(None, session.refusal or "expired or unknown bearer token", None, record_it=False)
            elif self.sessions.due(session):
                self._recheck(session, session.principal, self._address(middleware, context))

    def _address(self, middleware: BearerAuthMiddleware, context: flight.ServerCallContext) -> str | None:
        try:
            peer = peer_host(context.peer())
        except Exception:  # noqa: BLE001 - no peer known: no address
            peer = None
        return client_address(peer, middleware.forwarded_for, self.trusted)

    def _log_in(self, session: Session, address: str | None) -> None:
        assert session.credentials is not None
        username, password = session.credentials
        session.credentials = None  # checked once, then forgotten
        reason = "bad credentials"
        try:
            principal = self.authenticator.authenticate(username, password, address)
        except LoginRefused as exc:
            principal, reason = None, str(exc)
        except Exception:  # noqa: BLE001 - an identity-layer failure must read as a refusal
            log.exception("flight.authenticator_failed")
            principal = None
        if principal is None:
            session.refusal = reason  # kept until the pending token expires: clients retry with it
            self._reject(username, reason, address)
        session.principal = principal
        session.client_address = address
        session.checked_at = self.sessions.clock()
        self.sessions.renew(session)  # logged in: the pending lifetime no longer applies

    def _recheck(self, session: Session, principal: Principal, address: str | None) -> None:
        refresh = getattr(self.authenticator, "refresh", None)
        if refresh is None:
            return
        try:
            current = refresh(principal)
        except Exception:  # noqa: BLE001 - fail closed, but keep the session for a retry
            log.exception("flight.principal_recheck_failed")
            raise flight.FlightUnavailableError("cannot confirm your session right now; retry shortly") from None
        if current is None:
            self.sessions.revoke(session.token)
            reason = "session ended: the account, its membership or the API key no longer allows it"
            event = QueryEvent(sql="", outcome="denied", reason=reason, client_address=address)
            record(self.authenticator, principal, event)
            raise flight.FlightUnauthenticatedError(f"unauthenticated: {reason}; log in again")
        session.principal = current
        session.checked_at = self.sessions.clock()

    def _reject(self, username: str | None, reason: str, address: str | None, *, record_it: bool = True) -> NoReturn:
        if record_it:
            event = QueryEvent(
                sql="", outcome="unauthenticated", reason=reason, username=username, client_address=address
            )
            record(self.authenticator, None, event)
        raise flight.FlightUnauthenticatedError(f"unauthenticated: {reason}")


def caller(context: flight.ServerCallContext) -> BearerAuthMiddleware:
    """The authenticated session of the current call (the middleware always sets one)."""
    middleware = context.get_middleware("auth")
    if not isinstance(middleware, BearerAuthMiddleware):  # pragma: no cover - middleware misconfigured
        raise flight.FlightUnauthenticatedError("unauthenticated")
    middleware.factory.resolve(middleware, context)
    return middleware
