"""Identity rules: organizations, members, login and logout, tokens, API keys.

Every mutation writes its audit entry in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.audit import Severity
from domain.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited, Unauthenticated, conflict_if_taken
from domain.identity import secrets
from domain.identity.models import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    InvitationDecision,
    InvitationRead,
    InvitingOrg,
    LoginRequest,
    LoginResponse,
    MemberCreate,
    MemberRead,
    MemberUpdate,
    MyInvitation,
    OrgRead,
)
from domain.identity.rows import (
    INVITATION_COLUMNS,
    MEMBER_SELECT,
    Account,
    InvitationRow,
    MemberRow,
    Membership,
    PendingInvitation,
)
from domain.roles import SYSTEM_ACTOR, Actor, Caller, RequestContext, Role
from domain.rows import from_row


def create_org(session: Session, *, slug: str, name: str, actor: Actor = SYSTEM_ACTOR) -> OrgRead:
    """Platform-level: runs on the owner connection (CLI, demo seed)."""
    org_id = uuid.uuid4()
    with conflict_if_taken(session, f"organization '{slug}' already exists"):
        session.execute(
            text("INSERT INTO organizations (id, slug, name) VALUES (:id, :slug, :name)"),
            {"id": org_id, "slug": slug, "name": name},
        )
    audit.record(session, org_id=org_id, actor=actor, action="create", entity_type="organization",
                 entity_id=org_id, after={"slug": slug, "name": name})
    from domain.compliance import vocabulary  # here: compliance reads identity (signatures)

    vocabulary.seed(session, org_id)
    return OrgRead(id=org_id, slug=slug, name=name)


def get_org(session: Session, caller: Caller) -> OrgRead:
    row = session.execute(text("SELECT id, slug, name FROM organizations WHERE id = :o"),
                          {"o": caller.org_id}).one()
    return OrgRead(id=row.id, slug=row.slug, name=row.name)


# ---------------------------------------------------------------- members


def _member_row(session: Session, user_id: uuid.UUID) -> MemberRow | None:
    row = session.execute(text(f"{MEMBER_SELECT} WHERE m.user_id = :u"), {"u": user_id}).first()
    return from_row(MemberRow, row) if row else None


def _member_state(row: MemberRow) -> dict[str, object]:
    return {"user_id": str(row.user_id), "email": row.email, "display_name": row.display_name,
            "role": row.role, "active": row.active}


def add_member(
    session: Session, *, org_id: uuid.UUID, actor: Actor, context: RequestContext, data: MemberCreate
) -> MemberRead:
    """Platform level (the CLI's `user create`, the demo seed, tests): create the account if the email is new,
    then the membership with its role, at once. Over the API an admin invites instead (`invite_member`):
    an existing account joins another organization only when its person accepts."""
    existing = session.execute(text("SELECT user_id FROM auth_user_by_email(:e)"), {"e": data.email}).first()
    if existing:
        user_id = existing.user_id
    else:
        user_id = uuid.uuid4()
        session.execute(
            text("INSERT INTO users (id, email, display_name, password_hash) VALUES (:id, :e, :d, :p)"),
            {"id": user_id, "e": data.email, "d": data.display_name, "p": secrets.hash_password(data.password)},
        )
    with conflict_if_taken(session, f"{data.email} is already a member of this organization"):
        session.execute(
            text("INSERT INTO memberships (id, org_id, user_id, role) VALUES (:id, :o, :u, :r)"),
            {"id": uuid.uuid4(), "o": org_id, "u": user_id, "r": data.role.value},
        )
    row = _member_row(session, user_id)
    assert row is not None  # inserted just now
    audit.record(session, org_id=org_id, actor=actor, action="create", entity_type="membership",
                 entity_id=user_id, after=_member_state(row), context=context)
    return MemberRead.model_validate(row, from_attributes=True)


def list_members(session: Session) -> list[MemberRead]:
    rows = session.execute(text(f"{MEMBER_SELECT} ORDER BY u.display_name")).all()
    return [MemberRead.model_validate(from_row(MemberRow, r), from_attributes=True) for r in rows]


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
    assert after is not None  # updated just now
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="update", entity_type="membership",
                 entity_id=user_id, before=_member_state(before), after=_member_state(after),
                 reason=data.reason, context=caller.context)
    return MemberRead.model_validate(after, from_attributes=True)


def deactivate_member(session: Session, caller: Caller, user_id: uuid.UUID, reason: str) -> MemberRead:
    """End a person's membership (the account and its history stay): their sessions here end now, they can no
    longer log in to this organization, and an invitation can bring them back. Not oneself, not the last owner."""
    before = _member_row(session, user_id)
    if before is None:
        raise NotFound("member not found")
    if not before.active:
        raise Conflict(f"{before.display_name} is already deactivated")
    if caller.user_id == user_id:
        raise Conflict("you cannot deactivate yourself: ask another admin")
    if before.role == Role.owner:
        owners = session.execute(
            text("SELECT count(*) FROM memberships WHERE role = 'owner' AND active")
        ).scalar_one()
        if owners <= 1:
            raise Conflict("the organization's last owner cannot be deactivated")
    session.execute(text("UPDATE memberships SET active = false WHERE user_id = :u"), {"u": user_id})
    session.execute(text("UPDATE auth_sessions SET revoked_at = now() WHERE user_id = :u AND revoked_at IS NULL"),
                    {"u": user_id})
    after = _member_row(session, user_id)
    assert after is not None  # updated just now
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="deactivate", entity_type="membership",
                 entity_id=user_id, before=_member_state(before), after=_member_state(after), reason=reason,
                 severity=Severity.notice, context=caller.context)
    return MemberRead.model_validate(after, from_attributes=True)


# ---------------------------------------------------------------- invitations

INVITATION_TTL = dt.timedelta(days=14)


def _invitation(row: InvitationRow) -> InvitationRead:
    expired = row.status == "pending" and row.expires_at <= dt.datetime.now(dt.UTC)
    return InvitationRead(id=row.id, email=row.email, role=Role(row.role), status="expired" if expired else row.status,
                          invited_by=row.invited_by_display, invited_at=row.created_at, expires_at=row.expires_at,
                          decided_at=row.decided_at)


def _invitation_state(inv: InvitationRead) -> dict[str, object]:
    # What the inviting org's log holds about the invitee: the email it typed, never the account's id or name.
    return inv.model_dump(mode="json", exclude={"id"})


def invite_member(session: Session, caller: Caller, data: MemberCreate) -> InvitationRead:
    """An admin adds a person by email: an invitation the person accepts or declines after logging in.

    The answer is the same whether the email is new (the account is created now, with the name and first
    password given) or belongs to an account elsewhere (which keeps its own name and password): the inviting
    organization learns nothing about an account until its person accepts. The same work is done either way
    (a password hash), so the answer's timing does not tell either."""
    new_hash = secrets.hash_password(data.password)
    existing = session.execute(text("SELECT user_id FROM auth_user_by_email(:e)"), {"e": data.email}).first()
    if existing:
        user_id = existing.user_id
        member = session.execute(text("SELECT active FROM memberships WHERE user_id = :u"), {"u": user_id}).first()
        if member is not None and member.active:
            raise Conflict(f"{data.email} is already a member of this organization")
    else:
        user_id = uuid.uuid4()
        session.execute(
            text("INSERT INTO users (id, email, display_name, password_hash) VALUES (:id, :e, :d, :p)"),
            {"id": user_id, "e": data.email, "d": data.display_name, "p": new_hash},
        )
    # An expired invitation is marked so (the person never answered); it does not block a new one.
    session.execute(text("UPDATE invitations SET status = 'expired', decided_at = expires_at"
                         " WHERE user_id = :u AND status = 'pending' AND expires_at <= now()"), {"u": user_id})
    invitation_id = uuid.uuid4()
    with conflict_if_taken(session, f"{data.email} already has a pending invitation to this organization"):
        row = session.execute(
            text("INSERT INTO invitations (id, org_id, user_id, email, role, status, invited_by,"
                 " invited_by_display, expires_at) VALUES (:id, :o, :u, :e, :r, 'pending', :by, :byd,"
                 f" now() + :ttl) RETURNING {INVITATION_COLUMNS}"),
            {"id": invitation_id, "o": caller.org_id, "u": user_id, "e": data.email, "r": data.role.value,
             "by": caller.actor.id, "byd": caller.actor.display, "ttl": INVITATION_TTL},
        ).one()
    out = _invitation(from_row(InvitationRow, row))
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="invite", entity_type="invitation",
                 entity_id=invitation_id, after=_invitation_state(out), context=caller.context)
    return out


def list_invitations(session: Session) -> list[InvitationRead]:
    rows = session.execute(text(f"SELECT {INVITATION_COLUMNS} FROM invitations ORDER BY created_at DESC")).all()
    return [_invitation(from_row(InvitationRow, r)) for r in rows]


def revoke_invitation(session: Session, caller: Caller, invitation_id: uuid.UUID) -> InvitationRead:
    row = session.execute(text(f"SELECT {INVITATION_COLUMNS} FROM invitations WHERE id = :i FOR UPDATE"),
                          {"i": invitation_id}).first()
    if row is None:
        raise NotFound("invitation not found")
    before = _invitation(from_row(InvitationRow, row))
    if before.status != "pending":
        raise Conflict(f"the invitation is {before.status}")
    row = session.execute(
        text(f"UPDATE invitations SET status = 'revoked', decided_at = now() WHERE id = :i "
             f"RETURNING {INVITATION_COLUMNS}"), {"i": invitation_id}).one()
    after = _invitation(from_row(InvitationRow, row))
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="revoke", entity_type="invitation",
                 entity_id=invitation_id, before=_invitation_state(before), after=_invitation_state(after),
                 context=caller.context)
    return after


def _pending_invitations(session: Session, user_id: uuid.UUID) -> list[PendingInvitation]:
    rows = session.execute(text("SELECT * FROM auth_user_invitations(:u)"), {"u": user_id}).all()
    return [from_row(PendingInvitation, r) for r in rows]


def _account(session: Session, email: str) -> Account | None:
    row = session.execute(text("SELECT * FROM auth_user_by_email(:e)"), {"e": email}).first()
    return from_row(Account, row) if row else None


def _memberships(session: Session, user_id: uuid.UUID) -> list[Membership]:
    rows = session.execute(text("SELECT * FROM auth_user_memberships(:u)"), {"u": user_id}).all()
    return [from_row(Membership, r) for r in rows]


def _person(caller: Caller) -> uuid.UUID:
    if caller.user_id is None:
        raise Forbidden("only a person has invitations; an API key has none")
    return caller.user_id


def my_invitations(session: Session, caller: Caller) -> list[MyInvitation]:
    """The caller's own pending invitations, from any organization."""
    return [MyInvitation(id=i.invitation_id, org=InvitingOrg(slug=i.org_slug, name=i.org_name), role=Role(i.role),
                         invited_by=i.invited_by_display, invited_at=i.created_at, expires_at=i.expires_at)
            for i in _pending_invitations(session, _person(caller))]


def _decide(session: Session, invitation: PendingInvitation, user_id: uuid.UUID, display_name: str, accept: bool,
            context: RequestContext) -> None:
    """Record the person's answer in the inviting organization (and, on acceptance, the membership)."""
    status = "accepted" if accept else "declined"
    _set_org(session, invitation.org_id)
    row = session.execute(
        text(f"UPDATE invitations SET status = :s, decided_at = now() WHERE id = :i AND user_id = :u"
             f" AND status = 'pending' AND expires_at > now() RETURNING {INVITATION_COLUMNS}"),
        {"s": status, "i": invitation.invitation_id, "u": user_id},
    ).first()
    if row is None:  # decided, revoked or expired meanwhile
        raise NotFound("invitation not found")
    decided = _invitation(from_row(InvitationRow, row))
    before = _invitation_state(decided.model_copy(update={"status": "pending", "decided_at": None}))
    after = _invitation_state(decided)
    if not accept:
        # Declining reveals nothing either: the entry names the invitation, not the account.
        audit.record(session, org_id=invitation.org_id, actor=Actor("invitee", str(invitation.invitation_id),
                                                                    invitation.email),
                     action="decline", entity_type="invitation", entity_id=invitation.invitation_id, before=before,
                     after=after, context=context)
        return
    person = Actor("user", str(user_id), display_name)
    audit.record(session, org_id=invitation.org_id, actor=person, action="accept", entity_type="invitation",
                 entity_id=invitation.invitation_id, before=before, after=after, context=context)
    # A former member (deactivated) comes back with the invited role.
    session.execute(
        text("INSERT INTO memberships (id, org_id, user_id, role) VALUES (:id, :o, :u, :r) "
             "ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role, active = true"),
        {"id": uuid.uuid4(), "o": invitation.org_id, "u": user_id, "r": invitation.role},
    )
    member = _member_row(session, user_id)
    assert member is not None  # a member now
    audit.record(session, org_id=invitation.org_id, actor=person, action="create", entity_type="membership",
                 entity_id=user_id, after=_member_state(member), reason="invitation accepted", context=context)


def decide_invitation(session: Session, caller: Caller, invitation_id: uuid.UUID, accept: bool) -> InvitationDecision:
    """The invited person accepts or declines, from a session in any of their organizations; the answer is on
    record in the inviting organization and in the one the person acted from."""
    user_id = _person(caller)
    invitation = next((i for i in _pending_invitations(session, user_id) if i.invitation_id == invitation_id), None)
    if invitation is None:  # unknown, another person's, decided or expired: alike
        raise NotFound("invitation not found")
    _decide(session, invitation, user_id, caller.actor.display, accept, caller.context)
    status: Literal["accepted", "declined"] = "accepted" if accept else "declined"
    _set_org(session, caller.org_id)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="accept" if accept else "decline",
                 entity_type="invitation", entity_id=invitation_id, context=caller.context,
                 after={"status": status, "org": invitation.org_slug, "role": invitation.role})
    return InvitationDecision(
        id=invitation_id, org=InvitingOrg(slug=invitation.org_slug, name=invitation.org_name),
        role=Role(invitation.role), status=status,
        next_step=(f"log in with \"org\": \"{invitation.org_slug}\" to work in {invitation.org_name}" if accept
                   else "nothing: the organization sees that the invitation was declined, not who you are"))



# ---------------------------------------------------------------- login


@dataclass(frozen=True)
class LoginLimits:
    """When failed logins and signature passwords lock an account, or an address, out (settings `login_*`)."""

    max_fail: int = 5
    max_fail_addr: int = 20
    window: dt.timedelta = dt.timedelta(minutes=15)


class LockedOut(RateLimited):
    """A 429 for too many failures: which lockout it is, so the refusal can be put on record once per lockout."""

    def __init__(self, message: str, *, scope: str, subject: str, since: dt.datetime, until: dt.datetime,
                 email: str) -> None:
        retry = int((until - dt.datetime.now(dt.UTC)).total_seconds()) + 1
        super().__init__(message, retry_after_s=max(retry, 1))
        self.scope, self.subject, self.since, self.until, self.email = scope, subject, since, until, email


def check_throttle(session: Session, email: str, address: str | None, *, max_fail: int, max_fail_addr: int,
              window: dt.timedelta) -> None:
    """Refuse (429, LockedOut) while the account or the address has too many recent failures (logins and
    signature passwords). The attempts table is not readable by the application role: `login_failures`
    answers the two counts, nothing else."""
    now = dt.datetime.now(dt.UTC)
    row = session.execute(text("SELECT * FROM login_failures(:e, :a, :since)"),
                          {"e": email, "a": address, "since": now - window}).one()
    if row.account_failures >= max_fail:
        raise LockedOut("too many failed logins or signatures for this account; try again later", scope="account",
                        subject=email.lower(), since=row.account_first, until=row.account_first + window,
                        email=email)
    if address and row.address_failures >= max_fail_addr:
        raise LockedOut("too many failed logins from this address; try again later", scope="address",
                        subject=address, since=row.address_first, until=row.address_first + window, email=email)


def record_lockout(session: Session, refusal: LockedOut, context: RequestContext) -> None:
    """Put a lockout refusal on record, once per lockout: the platform's `login_lockouts` table always
    (that is where lockouts of unknown emails and of addresses are), and an entry in the log of each
    organization of the account concerned. Runs in its own transaction: the refused request's rolls back."""
    first = session.execute(
        text("SELECT record_lockout(:scope, :subject, :since, :until, :email, :address)"),
        {"scope": refusal.scope, "subject": refusal.subject, "since": refusal.since, "until": refusal.until,
         "email": refusal.email, "address": context.client_address},
    ).scalar_one()
    if not first:
        return
    user = _account(session, refusal.email)
    if user is None:
        return
    for m in _memberships(session, user.user_id):
        _set_org(session, m.org_id)
        audit.record(session, org_id=m.org_id, actor=Actor("user", str(user.user_id), user.display_name),
                     action="refuse", entity_type="auth_session", entity_id="-", reason=refusal.message,
                     severity=Severity.warning, context=context,
                     after={"locked_out": refusal.scope, "since": refusal.since, "until": refusal.until})


def record_failed_signature(session: Session, caller: Caller) -> None:
    """A wrong signature password counts towards the account's lockout like a failed login (its own
    transaction: the refused signing rolls back; the API audits the refusal itself)."""
    email = session.execute(text("SELECT email FROM users WHERE id = :u"), {"u": caller.user_id}).scalar()
    if email is None:
        return
    session.execute(
        text("INSERT INTO login_attempts (email, client_address, succeeded) VALUES (:e, :a, false)"),
        {"e": email, "a": caller.context.client_address},
    )


class OrganizationNotNamed(Invalid):
    """The password holds, but the login must say which organization it is for (several memberships, or
    only invitations). Not a failed login: it neither counts towards a lockout nor raises an alarm."""

    def __init__(self, message: str, *, slugs: Sequence[str], reasons: list[str] | None = None) -> None:
        super().__init__(message, reasons=reasons)
        self.slugs = list(slugs)  # the organizations to choose from (told only once the password held)


WRONG_CREDENTIALS = "wrong email or password"
NOT_A_MEMBER = "not a member of that organization"
NO_MEMBERSHIP = "no active membership"


@dataclass(frozen=True)
class PasswordCheck:
    user: Account | None
    memberships: Sequence[Membership]
    chosen: Membership | None  # the membership the login is for
    failure: str | None  # why it fails (counts as a failed login); None when it holds or only needs an org


def _check_password(session: Session, email: str, password: str, org_slug: str | None) -> PasswordCheck:
    """The account, its memberships, the membership the login is for, and why it fails.
    One rule for every entry point (HTTP login, Flight SQL). Raises OrganizationNotNamed when the password
    holds for a person in several organizations and none is named."""
    user = _account(session, email)
    ok = secrets.verify_password(user.password_hash if user else None, password)
    memberships = _memberships(session, user.user_id) if user else []
    if not ok or user is None:
        return PasswordCheck(user, memberships, None, WRONG_CREDENTIALS)
    if user.disabled:
        return PasswordCheck(user, memberships, None, "account disabled")
    if org_slug:
        chosen = next((m for m in memberships if m.org_slug == org_slug), None)
        return PasswordCheck(user, memberships, chosen, None if chosen else NOT_A_MEMBER)
    if len(memberships) == 1:
        return PasswordCheck(user, memberships, memberships[0], None)
    if not memberships:
        return PasswordCheck(user, memberships, None, NO_MEMBERSHIP)
    slugs = [m.org_slug for m in memberships]
    raise OrganizationNotNamed("member of several organizations: name one in 'org'", slugs=slugs,
                               reasons=[f"org: name the organization to log in to, one of: {', '.join(slugs)}"])


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
    committed by the caller before it answers 401.

    Naming in `org` an organization whose invitation is pending accepts it (the only way for a person with
    no organization yet, e.g. an account an admin just created, to join)."""
    check_throttle(session, data.email, context.client_address, max_fail=max_fail, max_fail_addr=max_fail_addr,
                   window=lockout)
    check = _check_password(session, data.email, data.password, data.org)
    user, chosen, failure = check.user, check.chosen, check.failure
    # The password holds but no membership fits: an invitation may make one.
    if user is not None and failure in (NOT_A_MEMBER, NO_MEMBERSHIP):
        pending = _pending_invitations(session, user.user_id)
        invitation = next((i for i in pending if i.org_slug == data.org), None) if data.org else None
        if invitation is not None:
            _decide(session, invitation, user.user_id, user.display_name, True, context)
            chosen, failure = Membership(org_id=invitation.org_id, org_slug=invitation.org_slug,
                                         org_name=invitation.org_name, role=invitation.role), None
        elif pending and not data.org:
            slugs = [i.org_slug for i in pending]
            raise OrganizationNotNamed(
                "no organization yet: name the one whose invitation you accept in 'org'", slugs=slugs,
                reasons=[f"org: name the organization whose invitation you accept, one of: {', '.join(slugs)}"])
    if failure is not None or chosen is None:
        record_failed_login(session, data.email, failure or "login failed", context, org_slug=data.org,
                            user=user, memberships=check.memberships)
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
    user: Account | None = None,
    memberships: Sequence[Membership] | None = None,
) -> None:
    """Count the failure for rate limiting and audit it in each org the account belongs to
    (an unknown email belongs to none: it is only counted)."""
    session.execute(
        text("INSERT INTO login_attempts (email, client_address, succeeded) VALUES (:e, :a, false)"),
        {"e": email, "a": context.client_address},
    )
    if user is None:
        user = _account(session, email)
    if user is None:
        return
    if memberships is None:
        memberships = _memberships(session, user.user_id)
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


def touch_session(session: Session, caller: Caller, idle: dt.timedelta, *, use: bool = True) -> bool:
    """A browser session's use: False (and the session revoked, on record) when it was idle for longer than `idle`;
    otherwise its last use is now. The web pages call it on every request; API tokens keep their fixed expiry.
    `use=False`: a page refreshing itself (the live inbox) is checked but is no use by the person: an open page
    left alone still times out."""
    if caller.session_id is None:
        return False
    row = session.execute(
        text("UPDATE auth_sessions SET last_seen_at = CASE WHEN :use THEN now() ELSE last_seen_at END"
             " WHERE id = :id AND revoked_at IS NULL"
             " AND coalesce(last_seen_at, created_at) > now() - :idle RETURNING id"),
        {"id": caller.session_id, "idle": idle, "use": use},
    ).first()
    if row is not None:
        return True
    revoked = session.execute(
        text("UPDATE auth_sessions SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL RETURNING id"),
        {"id": caller.session_id},
    ).first()
    if revoked is not None:
        audit.record(session, org_id=caller.org_id, actor=caller.actor, action="logout", entity_type="auth_session",
                     entity_id=caller.session_id, reason=f"idle for more than {idle}", context=caller.context)
    return False


def resolve_credential(session: Session, token: str, context: RequestContext) -> Caller:
    """Bearer session token or API key → the caller; Unauthenticated otherwise."""
    h = secrets.token_hash(token)
    now = dt.datetime.now(dt.UTC)
    if token.startswith(secrets.API_KEY_PREFIX):
        k = session.execute(text("SELECT * FROM auth_resolve_api_key(:h)"), {"h": h}).first()
        if k is None or k.revoked_at is not None:
            raise Unauthenticated("invalid or revoked API key")
        ctx = replace(context, api_key_id=str(k.key_id))
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
    """Email + password (or an API key as the password) → caller; for non-HTTP entry points (Flight SQL).
    A person in several organizations names one (Flight SQL: `org-slug/email` as the username); raises
    OrganizationNotNamed when they do not. Invitations are accepted over HTTP only."""
    if password.startswith(secrets.API_KEY_PREFIX):
        try:
            return resolve_credential(session, password, RequestContext())
        except Unauthenticated:
            return None
    check = _check_password(session, email, password, org_slug)
    m, user = check.chosen, check.user
    if check.failure is not None or m is None or user is None:
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
