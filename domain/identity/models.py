"""Shapes of identity data, one per direction (create / read)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import email_validator
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from domain.limits import Input
from domain.roles import Role

# Reserved names labs really use for their internal mail domains: `.test` (RFC 2606; email-validator's
# `test_environment` flag accepts it), `.local` (mDNS, and many an Active Directory domain) and `.home.arpa`
# (RFC 8375), which the validator's special-use list refuses whatever the flags. `.invalid`, `.localhost` and
# `.onion` stay refused.
INTERNAL_SUFFIXES = (".local", ".home.arpa")


def lab_email(value: str) -> str:
    """The address, normalized (its domain lower-cased), if its syntax is an email address's; ValueError otherwise.
    Deliverability is not checked (no DNS). An internal suffix is checked as `.test` would be: every other rule of
    the syntax still applies."""
    at = value.rfind("@")
    domain = value[at + 1:].lower() if at >= 0 else ""
    suffix = next((s for s in INTERNAL_SUFFIXES if domain.endswith(s) and len(domain) > len(s)), None)
    candidate = value[:at + 1] + domain.removesuffix(suffix) + ".test" if suffix else value
    try:
        checked = email_validator.validate_email(candidate, check_deliverability=False, test_environment=True)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from None
    normalized = str(checked.normalized)
    return normalized.removesuffix(".test") + suffix if suffix else normalized


Email = Annotated[str, Field(max_length=320), AfterValidator(lab_email),
                  WithJsonSchema({"type": "string", "format": "email", "maxLength": 320})]


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
    email: Email
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
