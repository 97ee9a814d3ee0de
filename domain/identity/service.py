"""Identity rules: organizations, members, login and logout, tokens, API keys.

Every mutation writes its audit entry in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain import audit
from domain.audit import Severity
from domain.errors import Conflict, NotFound, RateLimited, Unauthenticated
from domain.identity import secrets
from domain.identity.models import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    LoginRequest,
    LoginResponse,
    MemberCreate,
    MemberRead,
    MemberUpdate,
    OrgRead,
)
from domain.roles import SYSTEM_ACTOR, Actor, Caller, RequestContext, Role


def create_org(session: Session, *, slug: str, name: str, actor: Actor = SYSTEM_ACTOR) -> OrgRead:
    """Platform-level: runs on the owner connection (CLI, demo seed)."""
    org_id = uuid.uuid4()
    try:
        with session.begin_nested():
            session.execute(
                text("INSERT INTO organizations (id, slug, name) VALUES (:id, :slug, :name)"),
                {"id": org_id, "slug": slug, "name": name},
            )
    except IntegrityError as exc:
        raise Conflict(f"organization '{slug}' already exists") from exc
    audit.record(session, org_id=org_id, actor=actor, action="create", entity_type="organization",
                 entity_id=org_id, after={"slug": slug, "name": name})
    return OrgRead(id=org_id, slug=slug, name=name)


def get_org(session: Session, caller: Caller) -> OrgRead:
    row = session.execute(text("SELECT id, slug, name FROM organizations WHERE id = :o"),
                          {"o": caller.org_id}).one()
    return OrgRead(id=row.id, slug=row.slug, name=row.name)


# ---------------------------------------------------------------- members


def _member_row(session: Session, user_id: uuid.UUID) -> Any:
    return session.execute(
        text("SELECT u.id AS user_id, u.email, u.display_name, m.role, m.active FROM memberships m "
             "JOIN users u ON u.id = m.user_id WHERE m.user_id = :u"),
        {"u": user_id},
    ).first()


def _member_state(row: Any) -> dict[str, Any]:
    return {"user_id": str(row.user_id), "email": row.email, "display_name": row.display_name,
            "role": row.role, "active": row.active}


def add_member(
    session: Session, *, org_id: uuid.UUID, actor: Actor, context: RequestContext, data: MemberCreate
) -> MemberRead:
    """Create the account if the email is new, then the membership with its role."""
    existing = session.execute(text("SELECT user_id FROM auth_user_by_email(:e)"), {"e": data.email}).first()
    if existing:
        user_id = existing.user_id
    else:
        user_id = uuid.uuid4()
        session.execute(
            text("INSERT INTO users (id, email, display_name, password_hash) VALUES (:id, :e, :d, :p)"),
            {"id": user_id, "e": data.email, "d": data.display_name, "p": secrets.hash_password(data.password)},
        )
    try:
        with session.begin_nested():
            session.execute(
                text("INSERT INTO memberships (id, org_id, user_id, role) VALUES (:id, :o, :u, :r)"),
                {"id": uuid.uuid4(), "o": org_id, "u": user_id, "r": data.role.value},
            )
    except IntegrityError as exc:
        raise Conflict(f"{data.email} is already a member of this organization") from exc
    row = _member_row(session, user_id)
    audit.record(session, org_id=org_id, actor=actor, action="create", entity_type="membership",
                 entity_id=user_id, after=_member_state(row), context=context)
    return MemberRead.model_validate(row, from_attributes=True)


def list_members(session: Session) -> list[MemberRead]:
    rows = session.execute(
        text("SELECT u.id AS user_id, u.email, u.display_name, m.role, m.active FROM memberships m "
             "JOIN users u ON u.id = m.user_id ORDER BY u.display_name")
    ).all()
    return [MemberRead.model_validate(r, from_attributes=True) for r in rows]


def change_member_role(
    session: Session, caller: Caller, user_id: uuid.UUID, data: MemberUpdate
) -> MemberRead:
    before = _member_row(session, user_id)
    if before is None:
        raise NotFound("member not found")
    if before.role == Role.owner and data.role != Role.owner:
        owners = session.execute(
            text("SELECT count(*) FROM memberships WHERE role = 'owner' AND active")
        ).scalar_one()
        if owners <= 1:
            raise Conflict("the organization's last owner cannot be demoted")
    session.execute(text("UPDATE memberships SET role = :r WHERE user_id = :u"),
                    {"r": data.role.value, "u": user_id})
    after = _member_row(session, user_id)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="update", entity_type="membership",
                 entity_id=user_id, before=_member_state(before), after=_member_state(after),
                 reason=data.reason, context=caller.context)
    return MemberRead.model_validate(after, from_attributes=True)


# ---------------------------------------------------------------- login


def check_throttle(session: Session, email: str, address: str | None, *, max_fail: int, max_fail_addr: int,
              window: dt.timedelta) -> None:
    """Refuse (429) while the account or the address has too many recent failed logins. The attempts table
    is not readable by the application role: `login_failures` answers the two counts, nothing else."""
    now = dt.datetime.now(dt.UTC)
    row = session.execute(text("SELECT * FROM login_failures(:e, :a, :since)"),
                          {"e": email, "a": address, "since": now - window}).one()
    if row.account_failures >= max_fail:
        retry = int((row.account_first + window - now).total_seconds()) + 1
        raise RateLimited("too many failed logins for this account; try again later", retry_after_s=retry)
    if address and row.address_failures >= max_fail_addr:
        retry = int((row.address_first + window - now).total_seconds()) + 1
        raise RateLimited("too many failed logins from this address; try again later", retry_after_s=retry)


def _check_password(
    session: Session, email: str, password: str, org_slug: str | None
) -> tuple[Any, Sequence[Any], Any, str | None]:
    """The account, its memberships, the membership the login is for, and why it fails (None: it holds).
    One rule for every entry point (HTTP login, Flight SQL)."""
    user = session.execute(text("SELECT * FROM auth_user_by_email(:e)"), {"e": email}).first()
    ok = secrets.verify_password(user.password_hash if user else None, password)
    memberships: Sequence[Any] = (
        session.execute(text("SELECT * FROM auth_user_memberships(:u)"), {"u": user.user_id}).all() if user else []
    )
    if not ok or user is None:
        return user, memberships, None, "wrong email or password"
    if user.disabled:
        return user, memberships, None, "account disabled"
    if not memberships:
        return user, memberships, None, "no active membership"
    if org_slug:
        chosen = next((m for m in memberships if m.org_slug == org_slug), None)
        return user, memberships, chosen, None if chosen else "not a member of that organization"
    if len(memberships) == 1:
        return user, memberships, memberships[0], None
    return user, memberships, None, "member of several organizations: name one in 'org'"


def login(
    session: Session,
    data: LoginRequest,
    context: RequestContext,
    *,
    ttl: dt.timedelta,
    max_fail: int,
    max_fail_addr: int,
    lockout: dt.timedelta,
) -> tuple[LoginResponse | None, str | None]:
    """Returns (response, None) or (None, why it failed). The session is not tenant-bound
    (org unknown yet); this function switches it to the chosen org once the password holds.
    Failures are recorded (attempt row + audit entry in each of the account's orgs) and
    committed by the caller before it answers 401."""
    check_throttle(session, data.email, context.client_address, max_fail=max_fail, max_fail_addr=max_fail_addr,
                   window=lockout)
    user, memberships, chosen, failure = _check_password(session, data.email, data.password, data.org)
    if failure is not None or chosen is None:
        record_failed_login(session, data.email, failure or "login failed", context, org_slug=data.org,
                            user=user, memberships=memberships)
        return None, failure
    assert user is not None
    session.execute(
        text("INSERT INTO login_attempts (email, client_address, succeeded) VALUES (:e, :a, true)"),
        {"e": data.email, "a": context.client_address},
    )
    _set_org(session, chosen.org_id)
    token = secrets.new_session_token()
    session_id = uuid.uuid4()
    expires = dt.datetime.now(dt.UTC) + ttl
    session.execute(
        text("INSERT INTO auth_sessions (id, org_id, user_id, token_hash, expires_at, client_address, user_agent) "
             "VALUES (:id, :o, :u, :h, :x, :a, :ua)"),
        {"id": session_id, "o": chosen.org_id, "u": user.user_id, "h": secrets.token_hash(token), "x": expires,
         "a": context.client_address, "ua": context.user_agent},
    )
    audit.record(session, org_id=chosen.org_id, actor=Actor("user", str(user.user_id), user.display_name),
                 action="login", entity_type="auth_session", entity_id=session_id, context=context,
                 after={"succeeded": True, "role": chosen.role, "expires_at": expires})
    return LoginResponse(token=token, expires_at=expires, org=chosen.org_slug, role=Role(chosen.role),
                         user_id=user.user_id, display_name=user.display_name), None


def record_failed_login(
    session: Session,
    email: str,
    reason: str,
    context: RequestContext,
    *,
    org_slug: str | None = None,
    user: Any = None,
    memberships: Sequence[Any] | None = None,
) -> None:
    """Count the failure for rate limiting and audit it in each org the account belongs to
    (an unknown email belongs to none: it is only counted)."""
    session.execute(
        text("INSERT INTO login_attempts (email, client_address, succeeded) VALUES (:e, :a, false)"),
        {"e": email, "a": context.client_address},
    )
    if user is None:
        user = session.execute(text("SELECT * FROM auth_user_by_email(:e)"), {"e": email}).first()
    if user is None:
        return
    if memberships is None:
        memberships = session.execute(text("SELECT * FROM auth_user_memberships(:u)"), {"u": user.user_id}).all()
    targets = memberships if not org_slug else [m for m in memberships if m.org_slug == org_slug]
    for m in targets:
        _set_org(session, m.org_id)
        audit.record(session, org_id=m.org_id, actor=Actor("user", str(user.user_id), user.display_name),
                     action="login", entity_type="auth_session", entity_id="-", reason=reason,
                     severity=Severity.warning, context=context, after={"succeeded": False})


def _set_org(session: Session, org_id: uuid.UUID) -> None:
    session.execute(text("SELECT set_config('flasktrack.org_id', :o, true)"), {"o": str(org_id)})


def logout(session: Session, caller: Caller) -> None:
    if caller.session_id is None:
        return
    session.execute(text("UPDATE auth_sessions SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL"),
                    {"id": caller.session_id})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="logout", entity_type="auth_session",
                 entity_id=caller.session_id, context=caller.context)


def resolve_credential(session: Session, token: str, context: RequestContext) -> Caller:
    """Bearer session token or API key → the caller; Unauthenticated otherwise."""
    h = secrets.token_hash(token)
    now = dt.datetime.now(dt.UTC)
    if token.startswith(secrets.API_KEY_PREFIX):
        k = session.execute(text("SELECT * FROM auth_resolve_api_key(:h)"), {"h": h}).first()
        if k is None or k.revoked_at is not None:
            raise Unauthenticated("invalid or revoked API key")
        ctx = RequestContext(context.request_id, context.client_address, context.user_agent, str(k.key_id))
        return Caller(org_id=k.org_id, org_slug="", role=Role(k.role),
                      actor=Actor("api_key", str(k.key_id), f"API key {k.name}"), context=ctx)
    s = session.execute(text("SELECT * FROM auth_resolve_session(:h)"), {"h": h}).first()
    if s is None or s.revoked_at is not None or s.expires_at <= now:
        raise Unauthenticated("invalid, expired or revoked token")
    return Caller(org_id=s.org_id, org_slug="", role=Role(s.role),
                  actor=Actor("user", str(s.user_id), s.display_name), user_id=s.user_id,
                  session_id=s.session_id, context=context)


def current_role(session: Session, actor_type: str, actor_id: str) -> Role | None:
    """The role a principal authenticated earlier holds now in the session's org: None once its API
    key is revoked, its account disabled or its membership ended. Long-lived sessions (Flight SQL)
    re-check with this, so such a change takes effect on them too."""
    if actor_type == "api_key":
        role = session.execute(text("SELECT role FROM api_keys WHERE id = CAST(:k AS uuid) AND revoked_at IS NULL"),
                               {"k": actor_id}).scalar()
    elif actor_type == "user":
        role = session.execute(
            text("SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id "
                 "WHERE m.user_id = CAST(:u AS uuid) AND m.active AND NOT u.disabled"), {"u": actor_id}).scalar()
    else:
        role = None
    return Role(role) if role else None


def authenticate_password(session: Session, email: str, password: str, org_slug: str | None) -> Caller | None:
    """Email + password (or an API key as the password) → caller; for non-HTTP entry points (Flight SQL)."""
    if password.startswith(secrets.API_KEY_PREFIX):
        try:
            return resolve_credential(session, password, RequestContext())
        except Unauthenticated:
            return None
    user, _, m, failure = _check_password(session, email, password, org_slug)
    if failure is not None or m is None:
        return None
    return Caller(org_id=m.org_id, org_slug=m.org_slug, role=Role(m.role),
                  actor=Actor("user", str(user.user_id), user.display_name), user_id=user.user_id)


# ---------------------------------------------------------------- API keys


def create_api_key(session: Session, caller: Caller, data: ApiKeyCreate) -> ApiKeyCreated:
    key, prefix = secrets.new_api_key()
    key_id = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    session.execute(
        text("INSERT INTO api_keys (id, org_id, name, role, key_prefix, key_hash, created_by, created_at) "
             "VALUES (:id, :o, :n, :r, :p, :h, :c, :t)"),
        {"id": key_id, "o": caller.org_id, "n": data.name, "r": data.role.value, "p": prefix,
         "h": secrets.token_hash(key), "c": caller.user_id, "t": now},
    )
    out = ApiKeyCreated(id=key_id, name=data.name, role=data.role, key_prefix=prefix, created_at=now,
                        revoked_at=None, key=key)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="api_key",
                 entity_id=key_id, after=out.model_dump(mode="json", exclude={"key"}), context=caller.context)
    return out


def list_api_keys(session: Session) -> list[ApiKeyRead]:
    rows = session.execute(
        text("SELECT id, name, role, key_prefix, created_at, revoked_at FROM api_keys ORDER BY created_at")
    ).all()
    return [ApiKeyRead.model_validate(r, from_attributes=True) for r in rows]


def revoke_api_key(session: Session, caller: Caller, key_id: uuid.UUID, reason: str | None) -> ApiKeyRead:
    row = session.execute(
        text("SELECT id, name, role, key_prefix, created_at, revoked_at FROM api_keys WHERE id = :id FOR UPDATE"),
        {"id": key_id},
    ).first()
    if row is None:
        raise NotFound("API key not found")
    before = ApiKeyRead.model_validate(row, from_attributes=True)
    if before.revoked_at is not None:
        return before
    session.execute(text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"), {"id": key_id})
    after = before.model_copy(update={"revoked_at": dt.datetime.now(dt.UTC)})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="revoke", entity_type="api_key",
                 entity_id=key_id, before=before.model_dump(mode="json"), after=after.model_dump(mode="json"),
                 reason=reason, context=caller.context)
    return after
