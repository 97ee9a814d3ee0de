"""Login, logout, the current caller, members and API keys."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import CallerDep, Member, Permitted, PlatformDep, SessionDep, request_context
from domain.errors import Unauthenticated
from domain.identity import service
from domain.identity.models import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    InvitationDecision,
    InvitationRead,
    LoginRequest,
    LoginResponse,
    MemberCreate,
    MemberRead,
    MemberUpdate,
    MeRead,
    MyInvitation,
)
from domain.limits import SafeText
from domain.roles import Caller, Permission

router = APIRouter(prefix="/api/v1", tags=["identity"])
MembersReader = Annotated[Caller, Depends(Permitted(Permission.members_read))]
MembersManager = Annotated[Caller, Depends(Permitted(Permission.members_manage))]
KeysManager = Annotated[Caller, Depends(Permitted(Permission.apikeys_manage))]


@router.post("/auth/login", response_model=LoginResponse)
def login(data: LoginRequest, request: Request, p: PlatformDep) -> LoginResponse:
    """Email and password → an opaque bearer token (stored hashed; expires; revoked by logout)."""
    s = p.settings
    with p.tx(None) as session:
        result, failure = service.login(
            session, data, request_context(request), ttl=dt.timedelta(minutes=s.token_ttl_minutes),
            max_fail=s.login_max_failures, max_fail_addr=s.login_max_failures_per_address,
            lockout=dt.timedelta(minutes=s.login_lockout_minutes),
        )
    if result is None:
        # The failed attempt is committed (and audited) above; the answer does not say which part was wrong.
        raise Unauthenticated("login failed")
    return result


@router.post("/auth/logout", status_code=204)
def logout(caller: CallerDep, s: SessionDep) -> None:
    """Revoke the token used for this call."""
    service.logout(s, caller)


@router.get("/me", response_model=MeRead)
def me(caller: Member, s: SessionDep) -> MeRead:
    """Who the token belongs to, in which organization, with which role."""
    org = service.get_org(s, caller)
    return MeRead(org=org, role=caller.role, actor_type=caller.actor.type, actor_id=caller.actor.id,
                  display_name=caller.actor.display)


@router.get("/members", response_model=list[MemberRead])
def list_members(caller: MembersReader, s: SessionDep) -> list[MemberRead]:
    """Members of the caller's organization."""
    return service.list_members(s)


@router.post("/members", response_model=InvitationRead, status_code=201)
def add_member(data: MemberCreate, caller: MembersManager, s: SessionDep) -> InvitationRead:
    """Invite a person by email with a role; they become a member when they accept, after logging in.
    The answer is the same whether the email is new (the account is created with this name and first
    password) or already has an account elsewhere (which keeps its own): nothing about it is revealed."""
    return service.invite_member(s, caller, data)


@router.get("/invitations", response_model=list[InvitationRead])
def list_invitations(caller: MembersReader, s: SessionDep) -> list[InvitationRead]:
    """The organization's invitations, newest first, with their status."""
    return service.list_invitations(s)


@router.delete("/invitations/{invitation_id}", response_model=InvitationRead)
def revoke_invitation(invitation_id: uuid.UUID, caller: MembersManager, s: SessionDep) -> InvitationRead:
    """Withdraw a pending invitation."""
    return service.revoke_invitation(s, caller, invitation_id)


@router.get("/me/invitations", response_model=list[MyInvitation])
def my_invitations(caller: Member, s: SessionDep) -> list[MyInvitation]:
    """Invitations to other organizations waiting for your answer."""
    return service.my_invitations(s, caller)


@router.post("/me/invitations/{invitation_id}/accept", response_model=InvitationDecision)
def accept_invitation(invitation_id: uuid.UUID, caller: Member, s: SessionDep) -> InvitationDecision:
    """Join the inviting organization with the invited role; then log in naming it (`org`) to work there."""
    return service.decide_invitation(s, caller, invitation_id, accept=True)


@router.post("/me/invitations/{invitation_id}/decline", response_model=InvitationDecision)
def decline_invitation(invitation_id: uuid.UUID, caller: Member, s: SessionDep) -> InvitationDecision:
    """Decline; the inviting organization sees that the invitation was declined, not who you are."""
    return service.decide_invitation(s, caller, invitation_id, accept=False)


@router.patch("/members/{user_id}", response_model=MemberRead)
def change_role(user_id: uuid.UUID, data: MemberUpdate, caller: MembersManager, s: SessionDep) -> MemberRead:
    """Change a member's role, with the reason on record."""
    return service.change_member_role(s, caller, user_id, data)


@router.post("/members/{user_id}/deactivate", response_model=MemberRead)
def deactivate_member(user_id: uuid.UUID, caller: MembersManager, s: SessionDep,
                      reason: SafeText = Body(embed=True, min_length=1, max_length=2000)) -> MemberRead:
    """End a membership, with the reason on record: the person's sessions here end and they can no longer log in
    to this organization (an invitation brings them back). Not yourself, not the last owner (409)."""
    return service.deactivate_member(s, caller, user_id, reason)


@router.get("/apikeys", response_model=list[ApiKeyRead])
def list_api_keys(caller: KeysManager, s: SessionDep) -> list[ApiKeyRead]:
    """API keys of the organization (never the keys themselves)."""
    return service.list_api_keys(s)


@router.post("/apikeys", response_model=ApiKeyCreated, status_code=201)
def create_api_key(data: ApiKeyCreate, caller: KeysManager, s: SessionDep) -> JSONResponse:
    """A key for an integration, bound to this organization and one role. Shown once."""
    created = service.create_api_key(s, caller, data)
    return JSONResponse(status_code=201, content=created.model_dump(mode="json"),
                        headers={"Cache-Control": "no-store"})


@router.delete("/apikeys/{key_id}", response_model=ApiKeyRead)
def revoke_api_key(key_id: uuid.UUID, caller: KeysManager, s: SessionDep,
                   reason: SafeText | None = Body(default=None, embed=True, max_length=2000)) -> ApiKeyRead:
    """Revoke a key; calls with it fail from now on."""
    return service.revoke_api_key(s, caller, key_id, reason)
