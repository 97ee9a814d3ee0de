"""What the walkthrough reads besides the main pages: the notifications escalations sent to the person's role, an
evidence file's facts (its SHA-256, who uploaded it, what it is evidence of), and a run's history as a file (the
merged timeline of audit entries and Temporal's events, as GET /api/v1/runs/{id}/history answers it)."""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from domain import notifications
from domain.evidence import service as evidence
from domain.roles import Permission
from web.app import _caller, _render, _require, _services

router = APIRouter()


@router.get("/notifications")
def my_notifications(request: Request) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.tasks_read)
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        found = notifications.for_role(session, caller.role.value, limit=100)
    return _render(request, "notifications.html", {"notifications": found})


@router.get("/evidence/{evidence_id:uuid}")
def evidence_page(request: Request, evidence_id: uuid.UUID) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.evidence_read)
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        found = evidence.get(session, evidence_id)  # NotFound for another organization's (404, on record)
    return _render(request, "evidence.html", {"e": found})


@router.get("/runs/{run_id:uuid}/history.json")
async def history_file(request: Request, run_id: uuid.UUID) -> Response:
    caller = _caller(request)
    _require(caller, Permission.runs_history)
    s = _services(request)
    found = await s.runs.history(caller, run_id)
    body = json.dumps(found.model_dump(mode="json"), indent=1)
    return Response(body, media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="run-{run_id}-history.json"'})
