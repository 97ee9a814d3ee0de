"""The compliance engine: regulatory tags and where they are attached, the derived compliance surface of samples,
batches and runs (with provenance), frameworks and scoped checklist items, authorization rules and records,
qualifications, compliance status. Thin handlers over domain/compliance/. A change that reaches open runs' surface
or authorizations (a tag, an authorization signed or revoked, a rule) is committed first, then each run's
workflow is told to check its authorizations again (api/temporal.py `recheck_authorizations`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api import temporal
from api.deps import Permitted, PlatformDep, SessionDep, in_tx, login_limits
from domain.compliance import authorizations, checklists, qualifications, status, surface, tags
from domain.compliance.models import (
    AuthorizationCreate,
    AuthorizationRead,
    AuthorizationSign,
    ChecklistItemCreate,
    ChecklistItemRead,
    ComplianceStatus,
    FrameworkCreate,
    FrameworkRead,
    QualificationCreate,
    QualificationRead,
    RuleCreate,
    RuleRead,
    Surface,
    TagAttach,
    TagCreate,
    TagLinkRead,
    TagRead,
    TargetType,
)
from domain.roles import Caller, Permission
from domain.samples.models import ArchiveChange

router = APIRouter(prefix="/api/v1/compliance", tags=["compliance"])
surface_router = APIRouter(tags=["compliance"])
Reader = Annotated[Caller, Depends(Permitted(Permission.compliance_read))]
Tagger = Annotated[Caller, Depends(Permitted(Permission.compliance_tag))]
Keeper = Annotated[Caller, Depends(Permitted(Permission.compliance_manage))]
Approver = Annotated[Caller, Depends(Permitted(Permission.authorizations_approve))]


def _json(model: Surface | ComplianceStatus) -> Response:
    body = model.to_json() if isinstance(model, Surface) else model.model_dump_json()
    return Response(body, media_type="application/json")


# ---------------------------------------------------------------- tags


@router.get("/tags", response_model=list[TagRead])
def list_tags(caller: Reader, s: SessionDep) -> list[TagRead]:
    """The organization's regulatory tags (the twelve seeded ones and its own), each with its framework."""
    return tags.list_tags(s)


@router.post("/tags", response_model=TagRead, status_code=201)
def create_tag(data: TagCreate, caller: Keeper, s: SessionDep) -> TagRead:
    """Add a tag to the vocabulary (409 if the key is taken)."""
    return tags.create_tag(s, caller, data)


@router.get("/tag-links", response_model=list[TagLinkRead])
def list_links(caller: Reader, s: SessionDep, target_type: TargetType | None = None,
               target_id: str | None = Query(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"),
               tag: str | None = Query(default=None, max_length=40, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$"),
               limit: int = Query(default=200, ge=1, le=1000)) -> list[TagLinkRead]:
    """Where tags are attached, newest first, narrowed to a target or a tag."""
    return tags.links(s, target_type, target_id, tag, limit)


@router.post("/tag-links", response_model=TagLinkRead, status_code=201)
async def attach_tag(data: TagAttach, caller: Tagger, s: SessionDep, p: PlatformDep) -> TagLinkRead:
    """Attach a tag to a strain, plasmid, ingredient, lot, equipment, supplier, protocol (by key), protocol step
    (protocol version id + step key), sample or batch, with the reason. Open runs whose surface it reaches get
    their tasks' checklist items updated (by the system, on record) and check their authorizations again."""
    link, runs = await in_tx(s, _attach, caller, data)
    await temporal.recheck_authorizations(p, runs)
    return link


def _attach(s: object, caller: Caller, data: TagAttach) -> tuple[TagLinkRead, list[uuid.UUID]]:
    link, runs = tags.attach(s, caller, data)  # type: ignore[arg-type]
    checklists.sync_runs(s, runs, why=f"tag '{data.tag}' attached to {data.target_type} {data.target_id}")  # type: ignore[arg-type]
    return link, runs


@router.post("/tag-links/remove", status_code=204)
async def detach_tag(data: TagAttach, caller: Tagger, s: SessionDep, p: PlatformDep) -> Response:
    """Remove a tag from its target, with the reason (the audit trail keeps both)."""
    runs = await in_tx(s, _detach, caller, data)
    await temporal.recheck_authorizations(p, runs)
    return Response(status_code=204)


def _detach(s: object, caller: Caller, data: TagAttach) -> list[uuid.UUID]:
    runs = tags.detach(s, caller, data)  # type: ignore[arg-type]
    checklists.sync_runs(s, runs, why=f"tag '{data.tag}' removed from {data.target_type} {data.target_id}")  # type: ignore[arg-type]
    return runs


# ---------------------------------------------------------------- surfaces and status


@surface_router.get("/api/v1/samples/{sample_id:uuid}/compliance-surface", response_model=Surface)
def sample_surface(sample_id: uuid.UUID, caller: Reader, s: SessionDep) -> Response:
    """The sample's regulatory tags, derived: its own, its batch's, its strains', plasmids' and lots', the protocol
    and step that made it, and all of these through its ancestors; each with the path that brought it."""
    return _json(surface.of_sample(s, sample_id))


@surface_router.get("/api/v1/batches/{batch_id:uuid}/compliance-surface", response_model=Surface)
def batch_surface(batch_id: uuid.UUID, caller: Reader, s: SessionDep) -> Response:
    """The batch's regulatory tags: its own, the run that made it, and its samples' surfaces, with provenance."""
    return _json(surface.of_batch(s, batch_id))


@surface_router.get("/api/v1/runs/{run_id:uuid}/compliance-surface", response_model=Surface)
def run_surface(run_id: uuid.UUID, caller: Reader, s: SessionDep) -> Response:
    """The run's regulatory tags: its protocol's and steps' (a step's for that step only) and its subjects'."""
    return _json(surface.of_run(s, run_id))


@surface_router.get("/api/v1/runs/{run_id:uuid}/compliance-status", response_model=ComplianceStatus)
def run_status(run_id: uuid.UUID, caller: Reader, s: SessionDep) -> Response:
    """compliant / action_needed / on_hold (deviation_open: compliance events), with the reasons."""
    return _json(status.of_run(s, run_id))


@surface_router.get("/api/v1/samples/{sample_id:uuid}/compliance-status", response_model=ComplianceStatus)
def sample_status(sample_id: uuid.UUID, caller: Reader, s: SessionDep) -> Response:
    """compliant / action_needed / on_hold (deviation_open: compliance events), with the reasons."""
    return _json(status.of_sample(s, sample_id))


# ---------------------------------------------------------------- frameworks and checklists


@router.get("/frameworks", response_model=list[FrameworkRead])
def list_frameworks(caller: Reader, s: SessionDep) -> list[FrameworkRead]:
    """Frameworks (NIH Guidelines, BMBL, the institution's own) with their checklist items."""
    return checklists.list_frameworks(s)


@router.post("/frameworks", response_model=FrameworkRead, status_code=201)
def create_framework(data: FrameworkCreate, caller: Keeper, s: SessionDep) -> FrameworkRead:
    return checklists.create_framework(s, caller, data)


@router.get("/frameworks/{framework_id}", response_model=FrameworkRead)
def get_framework(framework_id: uuid.UUID, caller: Reader, s: SessionDep) -> FrameworkRead:
    return checklists.get_framework(s, framework_id)


@router.post("/frameworks/{framework_id}/items", response_model=ChecklistItemRead, status_code=201)
def add_item(framework_id: uuid.UUID, data: ChecklistItemCreate, caller: Keeper, s: SessionDep) -> ChecklistItemRead:
    """A checklist item with its scope (tags any / all / none of, subject type, protocol, step kind or key, role):
    it attaches to every open and future task whose run's surface it matches, and the completion gate requires it
    (checklist key `compliance_<key>`)."""
    return checklists.add_item(s, caller, framework_id, data)[0]


# ---------------------------------------------------------------- authorizations


@router.get("/authorization-rules", response_model=list[RuleRead])
def list_rules(caller: Reader, s: SessionDep) -> list[RuleRead]:
    return authorizations.list_rules(s)


@router.post("/authorization-rules", response_model=RuleRead, status_code=201)
async def create_rule(data: RuleCreate, caller: Keeper, s: SessionDep, p: PlatformDep) -> RuleRead:
    """Which surface needs which authorization, e.g. `recombinant_dna` → `IBC approval`. Open runs check again."""
    rule = await in_tx(s, authorizations.create_rule, caller, data)
    await temporal.recheck_authorizations(p, await in_tx(s, authorizations.open_runs))
    return rule


@router.get("/authorizations", response_model=list[AuthorizationRead])
def list_authorizations(caller: Reader, s: SessionDep) -> list[AuthorizationRead]:
    return authorizations.list_authorizations(s)


@router.post("/authorizations", response_model=AuthorizationRead, status_code=201)
def create_authorization(data: AuthorizationCreate, caller: Keeper, s: SessionDep) -> AuthorizationRead:
    """Record an authorization (IBC approval, institutional permit…) with its scope, issuer and validity dates:
    pending until an approver signs it."""
    return authorizations.create(s, caller, data)


@router.get("/authorizations/{auth_id}", response_model=AuthorizationRead)
def get_authorization(auth_id: uuid.UUID, caller: Reader, s: SessionDep) -> AuthorizationRead:
    return authorizations.get(s, auth_id)


@router.post("/authorizations/{auth_id}/sign", response_model=AuthorizationRead)
async def sign_authorization(auth_id: uuid.UUID, data: AuthorizationSign, caller: Approver, s: SessionDep,
                             p: PlatformDep) -> AuthorizationRead:
    """The approver's e-signature (password re-entered; not whoever recorded it) puts the authorization in force;
    runs on authorization hold that it covers resume by themselves."""
    signed = await in_tx(s, authorizations.sign, caller, auth_id, data, login_limits(p.settings))
    await temporal.recheck_authorizations(p, await in_tx(s, authorizations.open_runs))
    return signed


@router.post("/authorizations/{auth_id}/revoke", response_model=AuthorizationRead)
async def revoke_authorization(auth_id: uuid.UUID, data: ArchiveChange, caller: Approver, s: SessionDep,
                               p: PlatformDep) -> AuthorizationRead:
    """Revoke an authorization, with the reason: the runs it covered go on authorization hold."""
    revoked = await in_tx(s, authorizations.revoke, caller, auth_id, data.reason)
    await temporal.recheck_authorizations(p, await in_tx(s, authorizations.open_runs))
    return revoked


# ---------------------------------------------------------------- qualifications


@router.get("/qualifications", response_model=list[QualificationRead])
def list_qualifications(caller: Reader, s: SessionDep, user_id: uuid.UUID | None = None) -> list[QualificationRead]:
    return qualifications.list_for(s, user_id)


@router.post("/qualifications", response_model=QualificationRead, status_code=201)
def record_qualification(data: QualificationCreate, caller: Keeper, s: SessionDep) -> QualificationRead:
    """A training record of a member: course, completion date, expiry, evidence file."""
    return qualifications.record(s, caller, data)
