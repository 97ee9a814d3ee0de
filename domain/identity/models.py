"""Shapes of identity data, one per direction (create / read)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from domain.limits import Input
from domain.roles import Role


class Strict(Input):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LoginRequest(Strict):
    # Any text: an address that is no account's fails like a wrong password (401), whatever its syntax.
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    org: str | None = Field(
        default=None, max_length=63,
        description="slug of the organization to log in to: needed with several memberships; naming one whose "
                    "invitation is pending accepts it")


class LoginResponse(BaseModel):
    token: str
    token_type: str = "bearer"
    expires_at: dt.datetime
    org: str
    role: Role
    user_id: uuid.UUID
    display_name: str


class OrgRead(BaseModel):
    id: uuid.UUID
    slug: str
    name: str


class MeRead(BaseModel):
    org: OrgRead
    role: Role
    actor_type: str
    actor_id: str
    display_name: str


class MemberCreate(Strict):
    email: EmailStr
    display_name: str = Field(min_length=1, max_length=200,
                              description="the new account's name; an existing account keeps its own")
    password: str = Field(min_length=12, max_length=1024,
                          description="the new account's first password, at least 12 characters; an existing "
                                      "account keeps its own")
    role: Role


class MemberUpdate(Strict):
    role: Role
    reason: str = Field(min_length=1, max_length=2000)


class MemberRead(BaseModel):
    user_id: uuid.UUID
    email: str
    display_name: str
    role: Role
    active: bool


InvitationStatus = Literal["pending", "accepted", "declined", "revoked", "expired"]


class InvitationRead(BaseModel):
    """An invitation as the inviting organization sees it: the email it typed, never who the account is."""

    id: uuid.UUID
    email: str
    role: Role
    status: InvitationStatus
    invited_by: str
    invited_at: dt.datetime
    expires_at: dt.datetime
    decided_at: dt.datetime | None = None


class InvitingOrg(BaseModel):
    slug: str
    name: str


class MyInvitation(BaseModel):
    """An invitation as the invited person sees it."""

    id: uuid.UUID
    org: InvitingOrg
    role: Role
    invited_by: str
    invited_at: dt.datetime
    expires_at: dt.datetime


class InvitationDecision(BaseModel):
    id: uuid.UUID
    org: InvitingOrg
    role: Role
    status: Literal["accepted", "declined"]
    next_step: str


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    role: Role


class ApiKeyRead(BaseModel):
    id: uuid.UUID
    name: str
    role: Role
    key_prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="shown once; only its hash is stored")
