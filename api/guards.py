"""Checks every request passes before any handler: its body size, and storable query and path values.

The body limit is a pure ASGI middleware: a declared Content-Length over the limit is answered 413 before a
byte is read, and a body streamed without one (chunked) is cut off with 413 as soon as it passes the limit.
Without it a 10 MB run `parameters` became a 10 MB audit entry, and a 10 MB completion reached Temporal,
which refused it (larger than its 4 MiB payload limit) with an answer that blamed Temporal.
"""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from core.config import Settings
from domain.limits import text_problem
from web import PREFIX as WEB_PREFIX
from web.evidence import UPLOAD_PATH as WEB_UPLOAD_PATH


def _too_large(limit: int, setting: str = "FLASKTRACK_MAX_BODY_BYTES") -> str:
    return f"the request body is larger than {limit} bytes ({setting})"


# Evidence uploads (the API's and the task page's) take a file up to `settings.evidence_max_bytes`, plus this much
# for the form around it (boundaries, part headers, a few short fields); the handler refuses a larger file itself.
UPLOAD_OVERHEAD = 64 << 10
UPLOADS = re.compile(rf"^(/api/v1/evidence|{re.escape(WEB_PREFIX)}{WEB_UPLOAD_PATH})$")


def body_limit(scope: Scope, settings: Settings | None) -> tuple[int, str]:
    """The largest body this request may have, and the setting that says so."""
    if settings is None:
        return 1 << 20, "FLASKTRACK_MAX_BODY_BYTES"
    if scope.get("method") == "POST" and UPLOADS.match(scope.get("path", "")):
        return settings.evidence_max_bytes + UPLOAD_OVERHEAD, "FLASKTRACK_EVIDENCE_MAX_BYTES"
    return settings.max_body_bytes, "FLASKTRACK_MAX_BODY_BYTES"


class BodyLimit:
    """413 for a request body over `settings.max_body_bytes` (read per request: tests and deployments set it), or
    over the evidence file limit for an upload (`body_limit`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        platform = getattr(getattr(scope.get("app"), "state", None), "platform", None)
        limit, setting = body_limit(scope, platform.settings if platform is not None else None)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0:
                await error_response(400, "Content-Length is not a number of bytes")(scope, receive, send)
                return
            if size > limit:
                await error_response(413, _too_large(limit, setting))(scope, receive, send)
                return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises an HTTPException met while reading the body: answered 413 by its handler.
                    raise HTTPException(413, _too_large(limit, setting))
            return message

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded, tracked)
        except HTTPException as exc:  # read outside FastAPI's body parsing (e.g. a handler reading the stream)
            if exc.status_code != 413 or started:
                raise
            await error_response(413, str(exc.detail))(scope, receive, send)


JSON = "application/json"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def json_bodies(request: Request) -> None:
    """A body sent to an operation that reads JSON must say it is JSON: a JSON body labelled `text/plain` was read
    as text and answered 422 "Input should be a valid dictionary", which hid what was wrong. 415, naming the media
    type (a body without Content-Type is read as JSON, as FastAPI does)."""
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None:
        return
    content_type = request.headers.get("content-type")
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    if content_type and has_body and not _is_json(content_type):
        raise HTTPException(415, f"the request body must be JSON: send it with Content-Type: {JSON} "
                                 f"(not {content_type.split(';', 1)[0].strip()[:100]})")


def storable_parameters(request: Request) -> None:
    """Every query and path value must be storable text (a NUL in a filter reached SQL and answered 500)."""
    errors = []
    for where, items in (("query", request.query_params.multi_items()), ("path", request.path_params.items())):
        for name, value in items:
            why = text_problem(str(value))
            if why:
                errors.append({"type": "unstorable", "loc": (where, name), "msg": why, "input": value})
    if errors:
        raise RequestValidationError(errors)
