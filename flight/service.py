"""`flasktrack flight`: the Flight SQL server wired to the platform's identity and audit log.

The server itself (flight/server.py) knows only the `Authenticator` protocol; this module
implements it with real accounts and API keys, login throttling, and an audit entry for
every query (who, SQL, rows, duration, outcome) in the caller's organization.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import signal
import uuid

import structlog

from core import metrics
from core.config import Settings
from core.db import TenantSessions, app_url, make_engine
from core.heartbeat import start_heartbeat
from domain.analysis import record_query
from domain.errors import RateLimited
from domain.identity import service as identity
from domain.identity.secrets import API_KEY_PREFIX
from domain.roles import Actor, Caller, RequestContext
from flight.auth import LoginRefused, LoginThrottled, Principal, QueryEvent

log = structlog.get_logger("flasktrack.flight")


def _split_username(username: str) -> tuple[str | None, str]:
    """`email` or `org-slug/email` (for people in several organizations)."""
    if "/" in username:
        org, _, email = username.partition("/")
        return org or None, email
    return None, username


class PlatformAuthenticator:
    """Flight SQL credentials → the same principals as the HTTP API."""

    def __init__(self, sessions: TenantSessions, settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    def authenticate(self, username: str, password: str, client_address: str | None) -> Principal | None:
        org_slug, email = _split_username(username.strip())
        ctx = RequestContext(client_address=client_address, user_agent="flight-sql")
        s = self.settings
        try:
            with self.sessions.begin(None) as session:
                if not password.startswith(API_KEY_PREFIX):
                    identity.check_throttle(session, email, client_address, max_fail=s.login_max_failures,
                                            max_fail_addr=s.login_max_failures_per_address,
                                            window=dt.timedelta(minutes=s.login_lockout_minutes))
                caller = identity.authenticate_password(session, email, password, org_slug)
                if caller is None and not password.startswith(API_KEY_PREFIX):
                    identity.record_failed_login(session, email, "wrong email or password (Flight SQL)", ctx,
                                                 org_slug=org_slug)
        except RateLimited as refusal:
            log.warning("flight login throttled", username=username, client_address=client_address)
            if isinstance(refusal, identity.LockedOut):  # on record once per lockout, as for HTTP's 429
                try:
                    with self.sessions.begin(None) as session:
                        identity.record_lockout(session, refusal, ctx)
                except Exception:  # noqa: BLE001 - the refusal stands; the log says what was not recorded
                    log.exception("could not record a Flight SQL lockout")
            raise LoginThrottled(f"{refusal.message} (in {refusal.retry_after_s} s)") from None
        except identity.OrganizationNotNamed as refusal:  # the password held: not a failed login, nothing to count
            log.info("flight login names no organization of several; use org-slug/email", username=username)
            # The password held, so naming the person's organizations reveals nothing to a stranger.
            raise LoginRefused(
                f"you belong to several organizations: log in as <org-slug>/{email}, "
                f"with <org-slug> one of: {', '.join(refusal.slugs)}"
            ) from None
        return caller_principal(caller) if caller is not None else None

    def refresh(self, principal: Principal) -> Principal | None:
        """The same principal with its current role, or None once it may no longer log in."""
        with self.sessions.begin(uuid.UUID(principal.org_id)) as session:
            role = identity.current_role(session, principal.actor_type, principal.actor_id)
        return dataclasses.replace(principal, role=role.value) if role is not None else None

    def record_query(self, principal: Principal | None, event: QueryEvent) -> None:
        metrics.FLIGHT_QUERIES.labels(event.outcome).inc()
        if principal is None:
            return  # failed logins are recorded by authenticate()
        try:
            org = uuid.UUID(principal.org_id)
            actor = Actor(principal.actor_type, principal.actor_id, principal.display)
            with self.sessions.begin(org) as session:
                record_query(
                    session, org_id=org, actor=actor, sql=event.sql, outcome=event.outcome, rows=event.rows,
                    duration_ms=event.duration_ms, tables=event.tables, reason=event.reason,
                    context=RequestContext(client_address=event.client_address, user_agent="flight-sql",
                                           api_key_id=principal.actor_id if principal.actor_type == "api_key"
                                           else None),
                )
        except Exception:  # noqa: BLE001 - the hook must not raise into the server; the log says why
            log.exception("could not audit a Flight SQL query")


def caller_principal(caller: Caller) -> Principal:
    return Principal(org_id=str(caller.org_id), role=caller.role.value, actor_type=caller.actor.type,
                     actor_id=caller.actor.id, display=caller.actor.display)


def run_flight(settings: Settings) -> None:
    from pyarrow import flight

    from core.tls import ServerCertificate
    from flight.server import run_server

    tls = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        pair = ServerCertificate.from_files(settings.tls_cert_file, settings.tls_key_file)
        tls = [flight.CertKeyPair(pair.cert_pem, pair.key_pem)]
    sessions = TenantSessions(make_engine(app_url(settings), pool_size=4))
    stop_beat = start_heartbeat(sessions, "flight", alive_dir=settings.alive_dir)
    metrics.serve(settings.metrics_host, settings.flight_metrics_port)
    settings_lake = settings.resolved_lake_uri
    log.info("flight sql serving", host=settings.flight_host, port=settings.flight_port, lake=settings_lake,
             tls=tls is not None)
    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        run_server(settings.flight_host, settings.flight_port, settings_lake, PlatformAuthenticator(sessions, settings),
                   storage_options=settings.resolved_lake_storage_options or None,
                   trusted_proxies=settings.trusted_proxies,
                   principal_recheck_s=settings.flight_principal_recheck_s, tls_certificates=tls)
    except KeyboardInterrupt:
        pass
    finally:
        stop_beat.set()
