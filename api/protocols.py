"""Protocols and their versions: author, validate, submit, approve (e-signature), send back, retire."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from api.deps import Permitted, PlatformDep, SessionDep, login_limits
from domain.protocols import service
from domain.protocols.models import (
    DraftUpdate,
    ProtocolCreate,
    ProtocolDetail,
    ProtocolRead,
    TransitionReason,
    ValidateRequest,
    ValidationResult,
    VersionCreate,
    VersionRead,
    VersionSummary,
)
from domain.roles import Caller, Permission
from domain.signatures import SignatureInput

router = APIRouter(prefix="/api/v1/protocols", tags=["protocols"])
Key = Annotated[str, Path(max_length=64, description="the protocol key, e.g. plant-tissue-subculture")]
Version = Annotated[int, Path(ge=1, le=1_000_000)]
Hash = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{64}$", description="SHA-256 of the canonical definition")]
Reader = Annotated[Caller, Depends(Permitted(Permission.protocols_read))]
Author = Annotated[Caller, Depends(Permitted(Permission.protocols_author))]
Approver = Annotated[Caller, Depends(Permitted(Permission.protocols_approve))]


@router.get("", response_model=list[ProtocolRead])
def list_protocols(caller: Reader, s: SessionDep) -> list[ProtocolRead]:
    """Protocols of the organization with their latest version and the versions approved for use."""
    return service.list_protocols(s)


@router.post("", response_model=VersionRead, status_code=201)
def create_protocol(data: ProtocolCreate, caller: Author, s: SessionDep) -> VersionRead:
    """Create a protocol from a document; answers its draft version 1.

    The document comes inside the JSON body, either as a JSON object in `definition` or as YAML text in `yaml`
    (JSON text works there too), never both. Its `key` names the protocol, unique in the organization (409 if
    taken). Versions move draft → in_review → approved → retired, and in_review → draft when sent back; a
    transition from the wrong state answers 409 naming both states. Only drafts change: an approved version never
    does (start a new one with POST /{key}/versions). Document problems answer 422 with each problem's path in
    `reasons`, e.g. `steps[2].form.fields[0].max: below min 0`; a draft may be saved with content problems
    (listed in `problems`) but is submitted only without any.
    """
    return service.create_protocol(s, caller, data=data)


@router.post("/validate", response_model=ValidationResult)
def validate(data: ValidateRequest, caller: Author) -> ValidationResult:
    """Compile a document without saving anything: every problem with its path, or the execution plan."""
    return service.validate(data)


@router.get("/{key}", response_model=ProtocolDetail)
def get_protocol(key: Key, caller: Reader, s: SessionDep) -> ProtocolDetail:
    """One protocol and all its versions."""
    return service.get_protocol(s, key=key)


@router.get("/{key}/versions", response_model=list[VersionSummary])
def list_versions(key: Key, caller: Reader, s: SessionDep) -> list[VersionSummary]:
    """The protocol's versions, oldest first."""
    return service.list_versions(s, key=key)


@router.post("/{key}/versions", response_model=VersionRead, status_code=201)
def new_version(data: VersionCreate, key: Key, caller: Author, s: SessionDep) -> VersionRead:
    """Start the next draft version: from a document, or a copy of `from_version` (default: the latest)."""
    return service.new_version(s, caller, key=key, data=data)


@router.get("/{key}/versions/by-hash/{content_hash}", response_model=VersionRead)
def get_version_by_hash(key: Key, content_hash: Hash, caller: Reader, s: SessionDep) -> VersionRead:
    """The newest version whose content has this SHA-256 (the hash its approval signature is bound to)."""
    return service.get_version_by_hash(s, key=key, content_hash=content_hash)


@router.get("/{key}/versions/{version}", response_model=VersionRead)
def get_version(key: Key, version: Version, caller: Reader, s: SessionDep) -> VersionRead:
    """One version: its document, its plan once submitted, its approval signature once approved."""
    return service.get_version(s, key=key, version=version)


@router.put("/{key}/versions/{version}", response_model=VersionRead)
def edit_draft(data: DraftUpdate, key: Key, version: Version, caller: Author, s: SessionDep) -> VersionRead:
    """Replace a draft's document (its author only). Any other state answers 409."""
    return service.edit_draft(s, caller, key=key, version=version, data=data)


@router.post("/{key}/versions/{version}/submit", response_model=VersionRead)
def submit(key: Key, version: Version, caller: Author, s: SessionDep) -> VersionRead:
    """Compile the draft and put it in review; 422 with every problem and nothing changed if it does not compile."""
    return service.submit_for_review(s, caller, key=key, version=version)


@router.post("/{key}/versions/{version}/approve", response_model=VersionRead)
def approve(signature: SignatureInput, key: Key, version: Version, caller: Approver, s: SessionDep,
            p: PlatformDep) -> VersionRead:
    """Approve a version in review with an electronic signature: password re-entered, meaning "approved",
    bound to the content hash. Its author may not approve it."""
    return service.approve(s, caller, key=key, version=version, signature=signature, limits=login_limits(p.settings))


@router.post("/{key}/versions/{version}/return", response_model=VersionRead)
def return_to_draft(data: TransitionReason, key: Key, version: Version, caller: Author, s: SessionDep) -> VersionRead:
    """Send a version in review back to draft, with the reason: a reviewer rejects it or its author withdraws it."""
    return service.return_to_draft(s, caller, key=key, version=version, reason=data.reason)


@router.post("/{key}/versions/{version}/retire", response_model=VersionRead)
def retire(data: TransitionReason, key: Key, version: Version, caller: Approver, s: SessionDep) -> VersionRead:
    """Retire an approved version (no new runs use it), with the reason."""
    return service.retire(s, caller, key=key, version=version, reason=data.reason)
