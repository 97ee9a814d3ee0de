"""The audit log over HTTP: query, verify, export, an entity's past state."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse

from api.deps import Instant, Member, Permitted, PlatformDep, SessionDep
from domain.audit import packages, service
from domain.audit.models import PackageCreate, PackageRead
from domain.audit.service import CURSOR_PATTERN, AuditFilter
from domain.errors import Conflict
from domain.evidence.content import chunks
from domain.roles import Caller, Permission

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
AuditReader = Annotated[Caller, Depends(Permitted(Permission.audit_read))]
Verifier = Annotated[Caller, Depends(Permitted(Permission.audit_verify))]
Exporter = Annotated[Caller, Depends(Permitted(Permission.audit_export))]


def audit_filter(
    entity_type: str | None = Query(default=None, max_length=64),
    entity_id: str | None = Query(default=None, max_length=128),
    actor: str | None = Query(default=None, max_length=320,
                              description="actor id (user or API key id), or a member's email"),
    actor_name: str | None = Query(default=None, max_length=200,
                                   description="text contained in the actor's recorded name (a person, an API key)"),
    action: str | None = Query(default=None, max_length=64),
    since: Instant | None = Query(default=None, description="occurred at or after (RFC 3339, with its offset)"),
    until: Instant | None = Query(default=None, description="occurred before (RFC 3339, with its offset)"),
    reason: str | None = Query(default=None, max_length=200, description="text contained in the reason"),
    severity: Literal["info", "notice", "warning", "critical"] | None = None,
) -> AuditFilter:
    return AuditFilter(entity_type=entity_type, entity_id=entity_id, actor_id=actor, actor_name=actor_name,
                       action=action, since=since, until=until, reason_contains=reason, severity=severity)


@router.get("")
def list_entries(
    caller: AuditReader,
    s: SessionDep,
    f: AuditFilter = Depends(audit_filter),
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(default=None, pattern=CURSOR_PATTERN, description="`next_cursor` of the page before"),
) -> dict[str, Any]:
    """Entries newest first, filtered; follow `next_cursor` for the next page."""
    items, nxt = service.query(s, caller, f, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": nxt}


@router.get("/verify")
def verify(caller: Verifier, s: SessionDep, p: PlatformDep) -> dict[str, Any]:
    """Recompute the org's whole chain and check it against the signed checkpoints."""
    r = service.verify_org(s, caller.org_id, store=p.checkpoints, keys=p.public_keys)
    first = r.first_problem
    return {
        "status": "ok" if r.ok else "tampered",
        "org_id": r.org_id,
        "verified": r.count,
        "head_seq": r.head_seq,
        "head_hash": r.head_hash.hex(),
        "first_bad_seq": first.seq if first else None,
        "problems": [{"seq": x.seq, "what": x.what} for x in r.problems],
    }


@router.post("/checkpoints")
def checkpoint(caller: Exporter, s: SessionDep, p: PlatformDep) -> Response:
    """Sign the org's current chain head now; export up to its `size` (`to_seq`) to verify the file offline
    with `flasktrack audit verify --file EXPORT --checkpoint CHECKPOINT`."""
    cp = service.checkpoint_now(s, caller, p.signing_key, p.checkpoints)  # seals what is pending first
    if cp is None:
        raise Conflict("the audit log of this organization is empty: nothing to sign")
    return Response(content=cp.to_json(), media_type="application/json")


@router.get("/public-key", response_class=Response,
            responses={200: {"content": {"application/x-pem-file": {}},
                             "description": "the Ed25519 public key (PEM) that checks signed checkpoints"}})
def public_key(caller: Member, p: PlatformDep) -> Response:
    """The public half of the key that signs audit checkpoints, to verify an export offline:
    `flasktrack audit verify --file EXPORT --checkpoint CHECKPOINT --public-key THIS.pem`. Public by nature;
    any member of the organization may fetch it. Compare its key id with the checkpoints' `key_id`."""
    key = p.signing_key
    return Response(content=key.public_pem, media_type="application/x-pem-file",
                    headers={"X-Key-Id": key.key_id,
                             "Content-Disposition": f'attachment; filename="{key.key_id}.pub.pem"'})


@router.get("/export", response_class=StreamingResponse, responses={200: {
    "description": "The entries, oldest first: one canonical JSON object per line (`jsonl`, verifiable offline), "
                   "or CSV with a header row (`csv`).",
    "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}}}}})
def export(
    caller: Exporter,
    s: SessionDep,
    p: PlatformDep,
    fmt: Literal["jsonl", "csv"] = Query(default="jsonl", alias="format"),
    to_seq: int | None = Query(default=None, ge=1, description="last seq to include (a checkpoint's size)"),
    f: AuditFilter = Depends(audit_filter),
) -> StreamingResponse:
    """Stream the log oldest first (JSONL verifies offline with a checkpoint; CSV for reading)."""
    f = service.resolve_filter(s, f)  # a filter that cannot match is refused before the stream starts

    def stream() -> Iterator[bytes]:  # sent after the request's transaction: one of its own
        with p.tx(caller) as own:
            yield from service.export_lines(own, caller, f, fmt, to_seq=to_seq)

    media = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
    return StreamingResponse(stream(), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="audit.{fmt}"'})


@router.get("/entities/{entity_type}/{entity_id}/state")
def entity_state(entity_type: str, entity_id: str,
                 at: Annotated[Instant, Query(description="RFC 3339 instant, with its offset")],
                 caller: AuditReader, s: SessionDep) -> dict[str, Any]:
    """The entity's whole state at a past instant, folded from every entry about it up to then (refusals are
    not state); 404 for an entity this organization's log does not know."""
    return service.entity_state(s, caller, entity_type, entity_id, at)


@router.post("/packages", status_code=201, response_model=PackageRead)
def create_package(body: PackageCreate, caller: Exporter, s: SessionDep, p: PlatformDep) -> PackageRead:
    """An auditor's package for a run, a sample, a batch, any entity or a period: the matching entries with their
    inclusion proofs in the Merkle tree a fresh signed checkpoint signs, the evidence manifest (files optional), the
    applied filters, all in one zip signed by the checkpoint key. Verify it offline with
    `flasktrack audit verify-package FILE --public-key KEY`. On record (audit action `create`)."""
    return packages.create(s, caller, body, key=p.signing_key, store=p.checkpoints, objects=p.objects)


@router.get("/packages/{package_id}", response_class=StreamingResponse, responses={200: {
    "description": "The package's zip archive; `ETag` is its SHA-256.",
    "headers": {"ETag": {"schema": {"type": "string"}, "description": "the SHA-256 of the archive, quoted"}},
    "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}})
def download_package(package_id: uuid.UUID, caller: Exporter, s: SessionDep, p: PlatformDep) -> StreamingResponse:
    """Download a package's archive. Each download is on record (audit action `download`) before the first byte is
    sent."""
    meta, content = packages.open_archive(s, caller, p.objects, package_id)
    return StreamingResponse(chunks(content), media_type="application/zip", headers={
        "ETag": f'"{meta.sha256}"', "Content-Length": str(meta.size_bytes),
        "Content-Disposition": f'attachment; filename="audit-package-{meta.id}.zip"',
        "Cache-Control": "private, no-store"})
