"""Database connections.

Two roles, on purpose: the *owner* URL runs migrations and platform services that
span organizations (the audit sealer's sweep, the lake sink); the *app* URL is a
role that owns nothing and cannot bypass row-level security, used by the API and
the workflow activities. Every app transaction first sets `flasktrack.org_id`;
the RLS policies compare each row's org_id with it, so a query that forgets its
org filter still sees nothing of another organization.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings


def sqlalchemy_url(url: str) -> str:
    """psycopg 3 driver for any postgres URL."""
    u = make_url(url)
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str | URL) -> str:
    """Plain postgresql:// URL, for psycopg.connect and the embedded server's clients."""
    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


class DatabaseNotConfigured(RuntimeError):
    """No database URL is configured: a service was started outside `flasktrack up` / the CLI, which start the
    embedded server and pass its URL on."""


def owner_url(settings: Settings) -> str:
    """The owner role's URL. Never starts a server: the embedded one is `flasktrack.postgres`'s job."""
    if not settings.database_url:
        raise DatabaseNotConfigured(
            "no database configured: set FLASKTRACK_DATABASE_URL, or start the service through `flasktrack` "
            "(which starts the embedded PostgreSQL)")
    return settings.database_url


def app_url(settings: Settings, owner: str | None = None) -> str:
    if settings.app_database_url:
        return settings.app_database_url
    base = make_url(owner or owner_url(settings))
    return base.set(username=settings.app_db_user, password=settings.app_db_password).render_as_string(
        hide_password=False
    )


def sink_url(settings: Settings, owner: str | None = None) -> str:
    """The lake sink's URL: its own least-privilege role (migration 0020), never the owner."""
    if settings.sink_database_url:
        return settings.sink_database_url
    password = settings.sink_db_password.get_secret_value() if settings.sink_db_password is not None else None
    return make_url(owner or owner_url(settings)).set(username=settings.sink_db_user, password=password
                                                      ).render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        future=True,
    )


class TenantSessions:
    """Sessions bound to one organization. `org_id=None` is allowed only for the
    pre-authentication calls (login), which go through SECURITY DEFINER functions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._factory = sessionmaker(bind=engine, expire_on_commit=False, future=True)

        @event.listens_for(self._factory, "after_begin")
        def _set_org(session: Session, transaction: Any, connection: Any) -> None:
            connection.execute(_SET_ORG, {"org": _org(session)})

    @contextmanager
    def begin(self, org_id: uuid.UUID | str | None) -> Iterator[Session]:
        """One transaction for the given org: commit on success, roll back on error."""
        session = self.open(org_id)
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    def open(self, org_id: uuid.UUID | str | None = None) -> Session:
        """A session whose transactions begin when it is used and end with each `commit()`, every one in the session's
        org (`enter` changes it): for work that waits between transactions without holding a connection (an API
        request waiting on Temporal). Its user ends it: commit or roll back, then close."""
        session = self._factory()
        session.info["org_id"] = org_id
        return session

    @staticmethod
    def enter(session: Session, org_id: uuid.UUID | str) -> None:
        """The session works in `org_id` from now on, its open transaction included: authentication runs before the
        organization is known (SECURITY DEFINER look-ups only), the request's work after it in the same
        transaction."""
        session.info["org_id"] = org_id
        if session.in_transaction():
            session.execute(_SET_ORG, {"org": _org(session)})


_SET_ORG = text("SELECT set_config('flasktrack.org_id', :org, true)")  # true: for this transaction only


def _org(session: Session) -> str:
    org = session.info.get("org_id")
    return str(org) if org else ""
