"""The admin's pages: members (invite, change a role with a reason, deactivate), invitations, API keys (a new key
is shown once, never again), and the organization as the platform knows it. Each calls the identity service the
API calls (domain/identity/service.py): the same rules, the same audit entries."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from domain.errors import DomainError
from domain.identity import service as identity
from domain.identity.models import ApiKeyCreate, ApiKeyCreated, MemberCreate, MemberUpdate
from domain.roles import Caller, Permission, Role
from web.app import PREFIX, _caller, _check_csrf, _form, _render, _require, _services, _text

router = APIRouter()
ROLES = [r.value for r in Role]


def _invalid(exc: ValidationError) -> str:
    """The model's complaints in a sentence: which field, what is wrong (never the value sent)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()[:5])


def _members_page(request: Request, caller: Caller, *, status: int = 200, message: str | None = None,
                  problem: str | None = None, invite: dict[str, str] | None = None) -> HTMLResponse:
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        org = identity.get_org(session, caller)
        members = identity.list_members(session)
        invitations = identity.list_invitations(session)
    return _render(request, "admin_members.html", {
        "org": org, "members": members, "invitations": invitations[:50], "roles": ROLES, "message": message,
        "problem": problem, "invite": invite or {}, "may_manage": caller.can(Permission.members_manage),
        "may_keys": caller.can(Permission.apikeys_manage)}, status=status)


@router.get("/admin")
def admin_home(request: Request) -> Response:
    caller = _caller(request)
    _require(caller, Permission.members_read)
    return RedirectResponse(f"{PREFIX}/admin/members", status_code=303)


@router.get("/admin/members")
def members(request: Request, done: str | None = None) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.members_read)
    messages = {"invited": "Invitation sent.", "role": "Role changed.", "deactivated": "Member deactivated.",
                "revoked": "Invitation withdrawn."}
    return _members_page(request, caller, message=messages.get(done or ""))


async def _managed(request: Request, permission: Permission) -> tuple[Caller, dict[str, str]]:
    caller = _caller(request)
    form = _text(await _form(request))
    await _check_csrf(request, caller, form)
    _require(caller, permission)
    return caller, form


async def _act(request: Request, caller: Caller, work: Any) -> str | None:
    """Run `work(session)` in the person's organization; a refusal's message (nothing changed), or None."""
    s = _services(request)

    def run() -> None:
        with s.sessions.begin(caller.org_id) as session:
            work(session)

    try:
        await run_in_threadpool(run)
    except DomainError as exc:
        if exc.status in (403, 404):
            raise  # on record as a denial, as the API's
        return exc.message
    return None


@router.post("/admin/members/invite")
async def invite(request: Request) -> Response:
    caller, form = await _managed(request, Permission.members_manage)
    kept = {k: form.get(k, "") for k in ("email", "display_name", "role")}
    try:
        data = MemberCreate(email=form.get("email", ""), display_name=form.get("display_name", ""),
                            password=form.get("password", ""), role=form.get("role", ""))  # type: ignore[arg-type]
    except ValidationError as exc:
        return _members_page(request, caller, status=422, problem="Not invited: " + _invalid(exc), invite=kept)
    problem = await _act(request, caller, lambda session: identity.invite_member(session, caller, data))
    if problem:
        return _members_page(request, caller, status=409, problem="Not invited: " + problem, invite=kept)
    return RedirectResponse(f"{PREFIX}/admin/members?done=invited", status_code=303)


@router.post("/admin/members/{user_id}/role")
async def change_role(request: Request, user_id: uuid.UUID) -> Response:
    caller, form = await _managed(request, Permission.members_manage)
    try:
        data = MemberUpdate(role=form.get("role", ""), reason=form.get("reason", ""))  # type: ignore[arg-type]
    except ValidationError as exc:
        return _members_page(request, caller, status=422, problem="Role not changed: " + _invalid(exc))
    problem = await _act(request, caller, lambda session: identity.change_member_role(session, caller, user_id, data))
    if problem:
        return _members_page(request, caller, status=409, problem="Role not changed: " + problem)
    return RedirectResponse(f"{PREFIX}/admin/members?done=role", status_code=303)


@router.post("/admin/members/{user_id}/deactivate")
async def deactivate(request: Request, user_id: uuid.UUID) -> Response:
    caller, form = await _managed(request, Permission.members_manage)
    reason = form.get("reason", "").strip()
    if not reason or len(reason) > 2000:
        return _members_page(request, caller, status=422,
                             problem="Not deactivated: reason: say why (at most 2000 characters)")
    problem = await _act(request, caller, lambda session: identity.deactivate_member(session, caller, user_id, reason))
    if problem:
        return _members_page(request, caller, status=409, problem="Not deactivated: " + problem)
    return RedirectResponse(f"{PREFIX}/admin/members?done=deactivated", status_code=303)


@router.post("/admin/invitations/{invitation_id}/revoke")
async def revoke_invitation(request: Request, invitation_id: uuid.UUID) -> Response:
    caller, _form_data = await _managed(request, Permission.members_manage)
    problem = await _act(request, caller, lambda session: identity.revoke_invitation(session, caller, invitation_id))
    if problem:
        return _members_page(request, caller, status=409, problem="Not withdrawn: " + problem)
    return RedirectResponse(f"{PREFIX}/admin/members?done=revoked", status_code=303)


# ------------------------------------------------------------------ API keys


def _keys_page(request: Request, caller: Caller, *, status: int = 200, created: ApiKeyCreated | None = None,
               problem: str | None = None, message: str | None = None) -> HTMLResponse:
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        keys = identity.list_api_keys(session)
    response = _render(request, "admin_keys.html", {"keys": keys, "roles": ROLES, "created": created,
                                                    "problem": problem, "message": message}, status=status)
    response.headers["Cache-Control"] = "no-store"  # a new key is on this page once: never from a cache
    return response


@router.get("/admin/keys")
def keys(request: Request, done: str | None = None) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.apikeys_manage)
    return _keys_page(request, caller, message="Key revoked." if done == "revoked" else None)


@router.post("/admin/keys")
async def create_key(request: Request) -> Response:
    caller, form = await _managed(request, Permission.apikeys_manage)
    try:
        data = ApiKeyCreate(name=form.get("name", ""), role=form.get("role", ""))  # type: ignore[arg-type]
    except ValidationError as exc:
        return _keys_page(request, caller, status=422, problem="No key created: " + _invalid(exc))
    s = _services(request)

    def work() -> ApiKeyCreated:
        with s.sessions.begin(caller.org_id) as session:
            return identity.create_api_key(session, caller, data)

    created = await run_in_threadpool(work)
    # Shown on this answer only (not after a redirect): only its hash is kept.
    return _keys_page(request, caller, created=created)


@router.post("/admin/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: uuid.UUID) -> Response:
    caller, form = await _managed(request, Permission.apikeys_manage)
    reason = form.get("reason", "").strip()[:2000] or None
    problem = await _act(request, caller, lambda session: identity.revoke_api_key(session, caller, key_id, reason))
    if problem:
        return _keys_page(request, caller, status=409, problem="Not revoked: " + problem)
    return RedirectResponse(f"{PREFIX}/admin/keys?done=revoked", status_code=303)
