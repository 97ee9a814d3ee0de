"""Evidence files over HTTP: upload (multipart, streamed), read, list, download.

The upload is read as it streams (domain/evidence/multipart.py): the file goes to a temporary file, hashed and
measured on the way, and is refused (413) the moment it passes `FLASKTRACK_EVIDENCE_MAX_BYTES`; no database
connection is held while it arrives. Its type is read from its bytes (415 when it is not one evidence may have, or
not the type it was sent as). A download streams the stored bytes with their SHA-256 as ETag, on record first.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session

from api.deps import Instant, Permitted, PlatformDep, SessionDep, in_tx
from api.errors import ErrorBody
from domain.evidence import service
from domain.evidence.content import ACCEPTED, ALLOWED, Spool, chunks, content_disposition, served_type
from domain.evidence.models import TARGET_TYPES, TARGETS_DOC, EvidenceFilter, EvidenceRead, TargetType
from domain.evidence.multipart import FILE_FIELD, read_upload
from domain.limits import KEY_PATTERN
from domain.pagination import CURSOR_PATTERN, Page
from domain.roles import Caller, Permission

router = APIRouter(prefix="/api/v1/evidence", tags=["evidence"])
Uploader = Annotated[Caller, Depends(Permitted(Permission.evidence_upload))]
Reader = Annotated[Caller, Depends(Permitted(Permission.evidence_read))]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"  # a task, sample or batch id (a UUID, or a code like S-000123)
SHA256_PATTERN = r"^[0-9a-f]{64}$"
FORM_FIELDS = ("target_type", "target_id", "checklist_item")

UPLOAD_BODY: dict[str, Any] = {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": [FILE_FIELD], "additionalProperties": False, "properties": {
        FILE_FIELD: {"type": "string", "format": "binary",
                     "description": "the file: a photo (JPEG, PNG, HEIC, WebP, TIFF), a PDF, or UTF-8 text or CSV; "
                                    "its type is read from its bytes"},
        "target_type": {"type": "string", "enum": list(TARGET_TYPES), "description": TARGETS_DOC},
        "target_id": {"type": "string", "pattern": ID_PATTERN,
                      "description": "the task, sample or batch (id, or a sample's or batch's code)"},
        "checklist_item": {"type": "string", "pattern": KEY_PATTERN,
                           "description": "with target_type checklist_item: the item's key"}},
        "dependentRequired": {"target_type": ["target_id"], "target_id": ["target_type"],
                              "checklist_item": ["target_type", "target_id"]}},
    "encoding": {FILE_FIELD: {"contentType": ", ".join([*ACCEPTED, "application/octet-stream"])}}}}}

_REFUSED = {"model": ErrorBody}
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": EvidenceRead, "description": "This X-Request-ID uploaded the file before (a retry): the same "
                                                "evidence, nothing new."},
    413: {**_REFUSED, "description": "The file is larger than FLASKTRACK_EVIDENCE_MAX_BYTES (25 MiB unless set): "
                                     "nothing stored."},
    415: {**_REFUSED, "description": "The body is not multipart/form-data, or the file's content is not a type kept "
                                     "as evidence, or not the type it was sent as: nothing stored."},
}
DOWNLOAD_TYPES = sorted({*ALLOWED, "text/csv", "text/tab-separated-values"})


def _target(fields: dict[str, str]) -> tuple[TargetType, str, str | None] | None:
    """The link the form asks for, its fields checked as the document states them (422 naming the field)."""
    errors = [{"type": "extra_forbidden", "loc": ("body", name), "msg": "not a field of this form", "input": None}
              for name in fields if name not in FORM_FIELDS]
    target_type, target_id, item = (fields.get(k) for k in FORM_FIELDS)
    if target_type is not None and target_type not in TARGET_TYPES:
        errors.append({"type": "enum", "loc": ("body", "target_type"),
                       "msg": f"one of {', '.join(TARGET_TYPES)}", "input": target_type})
    if (target_type is None) != (target_id is None) or (item is not None and target_type is None):
        errors.append({"type": "missing", "loc": ("body", "target_id" if target_id is None else "target_type"),
                       "msg": "target_type and target_id go together", "input": None})
    if errors:
        raise RequestValidationError(errors)
    if target_type is None or target_id is None:
        return None
    return target_type, target_id, item  # type: ignore[return-value]  # checked against TARGET_TYPES above


def _nothing(s: Session) -> None:
    """Ends authentication's transaction: no connection is held while the file arrives."""


@router.post("", status_code=201, response_model=EvidenceRead, responses=UPLOAD_RESPONSES,
             openapi_extra={"requestBody": UPLOAD_BODY})
async def upload(request: Request, caller: Uploader, s: SessionDep, p: PlatformDep) -> JSONResponse:
    """Upload one evidence file (multipart/form-data, field `file`), optionally linked to a task, a checklist item
    of a task, a sample or a batch. The file's SHA-256 is computed as it arrives; the bytes are stored once per
    organization (uploading the same bytes again adds an evidence row and its links, not a copy). Its id is what
    a completion's `evidence` (and an `evidence_ref` form field) takes. The upload is on record with the hash.
    The X-Request-ID header is the idempotency key: a retry answers 200 with the first upload."""
    await in_tx(s, _nothing)
    with Spool(p.settings.evidence_max_bytes) as spool:
        form = await read_upload(request.headers.get("content-type"), request.stream(), spool.write)
        target = _target(form.fields)
        up = service.Upload(spool.file, spool.finish(), form.filename, form.file_type)
        evidence, created = await in_tx(s, service.upload, p.objects, caller, up, target)
    return JSONResponse(status_code=201 if created else 200, content=evidence.model_dump(mode="json"))


@router.get("", response_model=Page[EvidenceRead])
def list_evidence(
    caller: Reader, s: SessionDep,
    target_type: TargetType | None = Query(default=None, description="only files linked to this kind of thing"),
    target_id: str | None = Query(default=None, pattern=ID_PATTERN,
                                  description="only files linked to this task, sample or batch (its id)"),
    uploaded_by: str | None = Query(default=None, max_length=128, pattern=r"^[^\s]+$",
                                    description="only files this user or API key (its id) uploaded"),
    sha256: str | None = Query(default=None, pattern=SHA256_PATTERN, description="only uploads of these bytes"),
    since: Instant | None = Query(default=None, description="uploaded at or after (RFC 3339, with its offset)"),
    until: Instant | None = Query(default=None, description="uploaded before (RFC 3339, with its offset)"),
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(default=None, pattern=CURSOR_PATTERN, description="`next_cursor` of the page before"),
) -> Page[EvidenceRead]:
    """The organization's evidence files, newest first, each with its links; follow `next_cursor`."""
    f = EvidenceFilter(target_type=target_type, target_id=target_id, uploaded_by=uploaded_by, sha256=sha256,
                       since=since, until=until)
    return service.list_files(s, f, limit=limit, cursor=cursor)


@router.get("/{evidence_id}", response_model=EvidenceRead)
def get_evidence(evidence_id: uuid.UUID, caller: Reader, s: SessionDep) -> EvidenceRead:
    """One evidence file: its hash, size, type, uploader, and everything it is linked to."""
    return service.get(s, evidence_id)


@router.get("/{evidence_id}/content", response_class=StreamingResponse, responses={200: {
    "description": "The file's bytes, as uploaded, with their type; `ETag` is their SHA-256.",
    "headers": {"ETag": {"schema": {"type": "string"}, "description": "the SHA-256 of the bytes, quoted"},
                "Content-Disposition": {"schema": {"type": "string"}, "description": "attachment, with the file name"}},
    "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in DOWNLOAD_TYPES}}})
def download(evidence_id: uuid.UUID, caller: Reader, s: SessionDep, p: PlatformDep) -> StreamingResponse:
    """Download the file. Each download is on record (audit action `download`) with the SHA-256 of the bytes
    sent, before the first byte is."""
    e, content = service.open_content(s, p.objects, caller, evidence_id)
    return StreamingResponse(chunks(content), media_type=served_type(e.content_type), headers={
        "ETag": f'"{e.sha256}"', "Content-Length": str(e.size_bytes),
        "Content-Disposition": content_disposition(e.filename), "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store"})
