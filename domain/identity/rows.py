"""Identity's database rows as typed records (domain/rows.py maps them)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from domain.identity.models import InvitationStatus
from domain.rows import columns


@dataclass(frozen=True)
class Account:
    """A person's account as login reads it (auth_user_by_email: readable before any organization is known)."""

    user_id: uuid.UUID
    display_name: str
    password_hash: str
    disabled: bool


@dataclass(frozen=True)
class Membership:
    """An organization a person is an active member of, with their role there (auth_user_memberships)."""

    org_id: uuid.UUID
    org_slug: str
    org_name: str
    role: str


@dataclass(frozen=True)
class PendingInvitation:
    """An invitation waiting for its person's answer, from any organization (auth_user_invitations)."""

    invitation_id: uuid.UUID
    org_id: uuid.UUID
    org_slug: str
    org_name: str
    role: str
    email: str
    invited_by_display: str
    created_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class MemberRow:
    """A member of the session's organization: the account and the membership."""

    user_id: uuid.UUID
    email: str
    display_name: str
    role: str
    active: bool


MEMBER_SELECT = ("SELECT u.id AS user_id, u.email, u.display_name, m.role, m.active FROM memberships m"
                 " JOIN users u ON u.id = m.user_id")


@dataclass(frozen=True)
class InvitationRow:
    """An invitation as the inviting organization sees it."""

    id: uuid.UUID
    email: str
    role: str
    status: InvitationStatus
    invited_by_display: str
    created_at: dt.datetime
    expires_at: dt.datetime
    decided_at: dt.datetime | None


INVITATION_COLUMNS = columns(InvitationRow)
