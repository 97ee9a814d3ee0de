"""Browser sessions: the identity service's session token in an HttpOnly cookie, an idle timeout, CSRF tokens.

- The cookie holds the same session token POST /api/v1/auth/login answers (domain/identity), so a logout, an
  expiry, a disabled account or an ended membership ends a browser session exactly as it ends an API one.
- Idle timeout: every page touches the session (`identity.touch_session`); one idle for longer than
  `web_idle_minutes` is revoked, on record, and the person logs in again.
- CSRF: every POST form carries a token the server checks. Signed in, it is derived from the session token
  (a synchronizer token a page of another site cannot read or compute); on the login form, where there is no
  session yet, it is a double-submit token: a random cookie and the same value in the form.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid

from starlette.requests import Request
from starlette.responses import Response

from core.config import Settings
from core.db import TenantSessions
from core.net import address_behind
from domain.errors import Unauthenticated
from domain.identity import service as identity
from domain.roles import Caller, RequestContext

SESSION_COOKIE = "ft_session"
LOGIN_CSRF_COOKIE = "ft_login_csrf"
CSRF_FIELD = "csrf_token"
POLL_HEADER = "x-flasktrack-poll"  # sent by a page that refreshes itself (the live inbox)


def request_context(request: Request, settings: Settings, request_id: str | None = None) -> RequestContext:
    """Who asks and from where, as the API records it (X-Forwarded-For only from a trusted proxy)."""
    peer = request.client.host if request.client else None
    address = address_behind(peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies)
    return RequestContext(request_id=request_id or getattr(request.state, "request_id", None) or str(uuid.uuid4()),
                          client_address=address, user_agent=(request.headers.get("user-agent") or "")[:512] or None)


def signed_in(request: Request, settings: Settings, sessions: TenantSessions) -> Caller | None:
    """The person whose live session cookie came with the request, or None (no cookie, expired, revoked, idle)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token or len(token) > 256:
        return None
    context = request_context(request, settings)
    try:
        with sessions.begin(None) as s:
            caller = identity.resolve_credential(s, token, context)
    except Unauthenticated:
        return None
    if caller.session_id is None:  # an API key is no browser session
        return None
    with sessions.begin(caller.org_id) as s:
        # A page refreshing itself (htmx polling, hx-headers POLL_HEADER) is not the person's use of the session.
        alive = identity.touch_session(s, caller, dt.timedelta(minutes=settings.web_idle_minutes),
                                       use=POLL_HEADER not in request.headers)
    return caller if alive else None


def set_session_cookie(request: Request, response: Response, token: str, expires_at: dt.datetime) -> None:
    response.set_cookie(SESSION_COOKIE, token, expires=expires_at, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=request.url.scheme == "https")


def session_csrf(request: Request) -> str:
    """The CSRF token of the signed-in person's forms: derived from the session token, so it ends with it."""
    token = request.cookies.get(SESSION_COOKIE, "")
    return hmac.new(token.encode(), b"flasktrack web csrf", hashlib.sha256).hexdigest()


def login_csrf(request: Request) -> tuple[str, bool]:
    """The login form's double-submit token: (the cookie's value, False), or (a new value, True) to be set."""
    value = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if len(value) == 43:
        return value, False
    return secrets.token_urlsafe(32), True


def set_login_csrf(request: Request, response: Response, value: str) -> None:
    response.set_cookie(LOGIN_CSRF_COOKIE, value, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def csrf_ok(expected: str, sent: object) -> bool:
    return bool(expected) and isinstance(sent, str) and hmac.compare_digest(expected, sent)
