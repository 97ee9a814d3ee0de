"""Formal audits over HTTP (/api/v1/audits; the audit log is /api/v1/audit): an auditor scopes one, records
findings, and finalizes it with an outcome and their signature, after which it cannot change."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from api.deps import Permitted, PlatformDep, SessionDep, login_limits
from api.paging import CursorQuery
from domain.inspections import service
from domain.inspections.models import AuditCreate, AuditDetail, AuditFinalize, AuditRead, FindingCreate
from domain.pagination import Page
from domain.roles import Caller, Permission

router = APIRouter(prefix="/api/v1/audits", tags=["audits"])
Reader = Annotated[Caller, Depends(Permitted(Permission.audits_read))]
Auditor = Annotated[Caller, Depends(Permitted(Permission.audits_conduct))]
Limit = Query(default=50, ge=1, le=500)
CREATED: dict[int | str, dict[str, Any]] = {
    200: {"description": "What this X-Request-ID created before (a retry): nothing new."}}


@router.post("", response_model=AuditDetail, status_code=201, responses=CREATED)
def create_audit(data: AuditCreate, caller: Auditor, s: SessionDep) -> JSONResponse:
    """Open an audit (status `draft`, code `AU-000001`) with you as its auditor: the framework it checks against,
    the period, the runs and labs it covers. Retrying with the same X-Request-ID returns it (200)."""
    audit, created = service.create(s, caller, data)
    return JSONResponse(status_code=201 if created else 200, content=audit.model_dump(mode="json"))


@router.get("", response_model=Page[AuditRead])
def list_audits(caller: Reader, s: SessionDep, status: Literal["draft", "finalized"] | None = None,
                cursor: str | None = CursorQuery, limit: int = Limit) -> Page[AuditRead]:
    """The organization's audits, newest first."""
    return service.list_audits(s, status=status, cursor=cursor, limit=limit)


@router.get("/{audit_id:uuid}", response_model=AuditDetail)
def get_audit(audit_id: uuid.UUID, caller: Reader, s: SessionDep) -> AuditDetail:
    """The audit, its findings and, once finalized, the auditor's signature and the content hash it signed."""
    return service.get(s, audit_id)


@router.post("/{audit_id:uuid}/findings", response_model=AuditDetail, status_code=201)
def add_finding(audit_id: uuid.UUID, data: FindingCreate, caller: Auditor, s: SessionDep) -> AuditDetail:
    """Record a finding of a draft audit (its auditor only), linked to evidence files and, when corrective work
    follows, to a compliance event. A finalized audit takes none (409)."""
    return service.add_finding(s, caller, audit_id, data)


@router.post("/{audit_id:uuid}/finalize", response_model=AuditDetail)
def finalize_audit(audit_id: uuid.UUID, data: AuditFinalize, caller: Auditor, s: SessionDep,
                   p: PlatformDep) -> AuditDetail:
    """Finalize the audit with its outcome (pass, conditional, fail) and your signature (password re-entered):
    from then on it cannot change, and its content hash is in the audit log."""
    return service.finalize(s, caller, audit_id, data, login_limits(p.settings))
