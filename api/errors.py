"""One mapping from domain errors to HTTP answers (no per-handler not-found blocks)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import record_denial
from domain.audit import Severity
from domain.errors import DomainError, Forbidden, NotFound, RateLimited, Unauthenticated


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        caller = getattr(request.state, "caller", None)
        if isinstance(exc, Forbidden | NotFound) and caller is not None:
            # Every denied action is on record, in its own transaction (the action's own rolled back).
            # Unknown and other-org records answer alike (no existence leak); the attempt is recorded too.
            severity = Severity.warning if isinstance(exc, Forbidden) else Severity.notice
            await run_in_threadpool(record_denial, request.app.state.platform, caller, request,
                                    ("denied: " if isinstance(exc, Forbidden) else "not found: ") + exc.message,
                                    severity)
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after_s)
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = "Bearer"
        body: dict[str, object] = {"detail": exc.message}
        if exc.reasons:
            body["reasons"] = exc.reasons
        return JSONResponse(status_code=exc.status, content=body, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = [
            {"field": ".".join(str(x) for x in e["loc"] if x not in ("body", "query", "path")), "reason": e["msg"]}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": "invalid input", "errors": reasons})
