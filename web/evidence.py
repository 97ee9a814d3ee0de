"""Evidence on the task page: attach a photo or a file (a file input that is also the drop zone; on a phone or a
tablet the camera opens through `accept="image/*" capture`), and download an attached file.

An upload goes through the same service as the API's (domain/evidence: type by content, SHA-256, stored once, on
record). It answers the attached file as a fragment the task page adds to its list (htmx): a hidden `evidence`
input that belongs to the completion form, so the completion takes the file's id and links it to the task in its
own transaction. Without htmx the upload answers the fragment as a page of its own.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from domain.errors import DomainError, Forbidden, NotFound
from domain.evidence import service
from domain.evidence.content import Spool, chunks, content_disposition, served_type
from domain.evidence.models import EvidenceRead
from domain.evidence.multipart import read_upload
from domain.roles import Caller, Permission
from domain.tasks import service as tasks
from web import sessions

UPLOAD_PATH = "/tasks/[^/]+/evidence"  # the pages' upload route, as api/guards.py gives it the upload body limit
PREFIX = "/ui"  # as web/app.py (not imported: it imports this module)
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter()


def _caller(request: Request) -> Caller | None:
    services = request.app.state.services
    caller = sessions.signed_in(request, services.settings, services.sessions)
    if caller is not None:
        request.state.caller = caller
    return caller


def _sign_in(request: Request) -> Response:
    target = f"{PREFIX}/login?next={quote(request.url.path)}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _require(caller: Caller, permission: Permission) -> None:
    if not caller.can(permission):
        raise Forbidden(f"your role ({caller.role}) may not do this ({permission})")


def _fragment(request: Request, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, "_evidence_item.html", {"prefix": PREFIX, **context},
                                      status_code=status)


@router.post("/tasks/{task_id}/evidence")
async def attach(request: Request, task_id: uuid.UUID) -> Response:
    """Keep an uploaded file as evidence for this task's completion (the page adds it to the completion form)."""
    caller = await run_in_threadpool(_caller, request)
    if caller is None:
        return _sign_in(request)
    _require(caller, Permission.evidence_upload)
    services = request.app.state.services

    def task_is_there() -> None:  # NotFound (on record) for a task the person's organization does not have
        with services.sessions.begin(caller.org_id) as s:
            tasks.locate(s, task_id)

    await run_in_threadpool(task_is_there)
    try:
        with Spool(services.settings.evidence_max_bytes) as spool:
            form = await read_upload(request.headers.get("content-type"), request.stream(), spool.write)
            if not sessions.csrf_ok(sessions.session_csrf(request), form.fields.get(sessions.CSRF_FIELD)):
                raise Forbidden("this form has no valid CSRF token (it did not come from a Flask Track page, or the "
                                "session changed): reload the page and send it again")
            up = service.Upload(spool.file, spool.finish(), form.filename, form.file_type)

            def work() -> EvidenceRead:
                with services.sessions.begin(caller.org_id) as s:
                    return service.upload(s, services.objects, caller, up, None)[0]

            evidence = await run_in_threadpool(work)
    except DomainError as exc:
        if isinstance(exc, Forbidden | NotFound) or not request.headers.get("hx-request"):
            raise  # the pages' own refusal page, on record (web/app.py)
        # htmx swaps only a success: the reason goes into the list where the file would have been.
        return _fragment(request, {"refused": exc.message})
    return _fragment(request, {"e": evidence}, status=200 if request.headers.get("hx-request") else 201)


@router.get("/evidence/{evidence_id}/content")
def download(request: Request, evidence_id: uuid.UUID) -> Response:
    """An attached file, on record as every download is (the audit entry names its SHA-256)."""
    caller = _caller(request)
    if caller is None:
        return _sign_in(request)
    _require(caller, Permission.evidence_read)
    services = request.app.state.services
    with services.sessions.begin(caller.org_id) as s:
        e, content = service.open_content(s, services.objects, caller, evidence_id)
    return StreamingResponse(chunks(content), media_type=served_type(e.content_type), headers={
        "ETag": f'"{e.sha256}"', "Content-Length": str(e.size_bytes), "X-Content-Type-Options": "nosniff",
        "Content-Disposition": content_disposition(e.filename), "Cache-Control": "private, no-store"})
