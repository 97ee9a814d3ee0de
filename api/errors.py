"""One error contract: every refusal, whatever raised it, answers `ErrorBody`, and every operation documents it.

Domain errors, request validation, Starlette's own refusals (unknown path, wrong method, unparsable body) and
the routers' documented responses all go through this module, so the shape a client reads is the shape
/openapi.json promises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, Literal, ParamSpec

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import caller_address, platform_of, record_denial, request_context
from domain.audit import Severity
from domain.errors import DomainError, Forbidden, NotFound, RateLimited, Unauthenticated
from domain.identity import service as identity
from domain.identity.service import LockedOut
from domain.roles import Caller, RequestContext
from domain.signatures import SignatureRefused

log = structlog.get_logger("flasktrack.api")


P = ParamSpec("P")


def _in_own_tx(request: Request, caller: Caller | None, work: Callable[Concatenate[Session, P], None],
               *args: P.args, **kwargs: P.kwargs) -> None:
    try:
        with platform_of(request).tx(caller) as session:
            work(session, *args, **kwargs)
    except Exception:  # noqa: BLE001 - the refusal is answered anyway; the log says what was not recorded
        log.exception("could not record a refusal", work=work.__name__)


def _context(request: Request) -> RequestContext:
    try:
        return request_context(request)
    except RequestValidationError:  # a malformed X-Request-ID: still record who and from where
        return RequestContext(client_address=caller_address(request))


Location = Literal["body", "query", "path", "header", "cookie"]


class FieldError(BaseModel):
    """One input problem: where it is and what is wrong."""

    location: Location = Field(description="the part of the request: body, query, path, header or cookie")
    field: str = Field(description="the path inside it, e.g. `values.mass_g`, `steps[2].title`, `limit`, "
                                   "`X-Request-ID`; `body` for the body as a whole (missing, malformed JSON)")
    reason: str


class ErrorBody(BaseModel):
    """Every answer that is not a success: 4xx and 503 alike."""

    detail: str = Field(description="one sentence for a person")
    reasons: list[str] = Field(default=[], description="every reason the request was refused, each prefixed with "
                                                       "the path it concerns where there is one")
    errors: list[FieldError] = Field(default=[], description="input problems, one per field (status 422)")


_DESCRIPTIONS: dict[int, str] = {
    400: "The request could not be read (e.g. its body is not UTF-8).",
    401: "No valid credentials: a bearer token from POST /api/v1/auth/login, or an API key, in `Authorization`.",
    403: "Your role may not do this, or a rule (segregation of duties, a signature) forbids it; on record.",
    404: "No such resource in your organization; on record.",
    409: "The resource is not in a state that allows this (e.g. a run on hold, a version already approved), or "
         "the X-Request-ID was already used for another request; nothing changed.",
    413: "The request body is larger than the limit.",
    422: "The input is invalid: each problem with its location and field path; nothing changed.",
    429: "Too many attempts: wait for the `Retry-After` seconds.",
    503: "A service the platform needs (Temporal, a worker) did not answer; retry with the same X-Request-ID.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a router: each status documented with `ErrorBody`."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}


# What an operation behind authentication may answer besides its success; login and health have their own.
AUTHENTICATED = error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503)
PUBLIC = error_responses(400, 401, 413, 422, 429)


def _field_path(parts: Sequence[Any]) -> str:
    path = ""
    for p in parts:
        path += f"[{p}]" if isinstance(p, int) else (f".{p}" if path else str(p))
    return path


def field_errors(errors: Sequence[Any]) -> list[FieldError]:
    out = []
    for e in errors:
        loc = tuple(e.get("loc") or ("body",))
        location: Location = loc[0] if loc[0] in ("body", "query", "path", "header", "cookie") else "body"
        rest = loc[1:] if loc[0] == location else loc
        if e.get("type") == "json_invalid":
            # FastAPI puts the character offset where the decoder stopped in `loc`: say so in words.
            at = f" at character {rest[0]}" if rest and isinstance(rest[0], int) else ""
            out.append(FieldError(location="body", field="body",
                                  reason=f"malformed JSON{at}: {(e.get('ctx') or {}).get('error', e['msg'])}"))
            continue
        reason = str(e["msg"]).removeprefix("Value error, ")  # pydantic's wording for our own ValueErrors
        if e.get("type") == "missing" and not rest:
            reason = "a JSON body is required" if location == "body" else reason
        out.append(FieldError(location=location, field=_field_path(rest) or location, reason=reason))
    return out


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An `ErrorBody` answer, for what answers before FastAPI's handlers (e.g. the body limit)."""
    return JSONResponse(status_code=status, content=ErrorBody(detail=detail).model_dump(mode="json"), headers=headers)


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _allowed_methods(request: Request) -> str | None:
    """The methods the documented API serves on this path; Starlette's own 405 names only the first matching
    route's, though each route serves one method. Concrete paths win over templated ones, as in OpenAPI."""
    app: FastAPI = request.app
    best: tuple[int, set[str]] | None = None
    for template, operations in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            params = template.count("{")
            methods = {m.upper() for m in operations if m in _METHODS}
            if best is None or params < best[0]:
                best = (params, methods)
            elif params == best[0]:
                best[1].update(methods)
    return ", ".join(sorted(best[1])) if best else None


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        caller = getattr(request.state, "caller", None)
        if isinstance(exc, Forbidden | NotFound) and caller is not None:
            # Every denied action is on record, in its own transaction (the action's own rolled back).
            # Unknown and other-org records answer alike (no existence leak); the attempt is recorded too.
            severity = Severity.warning if isinstance(exc, Forbidden) else Severity.notice
            await run_in_threadpool(record_denial, platform_of(request), caller, request,
                                    ("denied: " if isinstance(exc, Forbidden) else "not found: ") + exc.message,
                                    severity)
        if isinstance(exc, SignatureRefused) and caller is not None:
            # A wrong signature password counts towards the account's lockout, committed on its own.
            await run_in_threadpool(_in_own_tx, request, caller, identity.record_failed_signature, caller)
        if isinstance(exc, LockedOut):
            # The 429 is on record once per lockout (the refused request's transaction rolled back).
            context = caller.context if caller is not None else _context(request)
            await run_in_threadpool(_in_own_tx, request, None, identity.record_lockout, exc, context)
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after_s)
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = "Bearer"
        body = ErrorBody(detail=exc.message, reasons=exc.reasons)
        return JSONResponse(status_code=exc.status, content=body.model_dump(mode="json"), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc.errors())
        body = ErrorBody(detail="invalid input: " + "; ".join(f"{e.field}: {e.reason}" for e in errors)[:500],
                         errors=errors)
        return JSONResponse(status_code=422, content=body.model_dump(mode="json"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        body = ErrorBody(detail=str(exc.detail))
        return JSONResponse(status_code=exc.status_code, content=body.model_dump(mode="json"), headers=headers)
