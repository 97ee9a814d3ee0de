"""The auditor's pages: the audit log with its filters, an entry's before/after as a diff, the chain's verification,
exports, and an entity's state at a past instant. Each calls the audit service the API calls
(domain/audit/service.py: the same filters, the same scope per role, the same export lines)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from domain.audit import service as audit
from domain.audit.recorder import Severity
from domain.audit.service import CURSOR_PATTERN, AuditFilter
from domain.errors import Invalid
from domain.roles import Permission
from web.app import PREFIX, _caller, _render, _require, _services

router = APIRouter()
PAGE = 50  # entries per page
SEVERITIES = [s.value for s in Severity]
# What the filters accept (the API's limits, api/audit.py).
LIMITS = {"person": 320, "entity_type": 64, "entity_id": 128, "action": 64, "reason": 200, "since": 40, "until": 40,
          "severity": 16, "cursor": 18, "at": 40}


@dataclass(frozen=True)
class Change:
    """One line of an entry's diff: a field with its value before and after."""

    field: str
    before: str | None  # None: the field was not there
    after: str | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed" if self.before != self.after else "same"


def _shown(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def diff(before: object, after: object) -> list[Change]:
    """Field by field when both sides are records (or absent); otherwise the whole value on each side."""
    if isinstance(before, dict | None) and isinstance(after, dict | None) and (before or after):
        b, a = before or {}, after or {}
        keys = list(b) + [k for k in a if k not in b]
        return [Change(str(k), _shown(b[k]) if k in b else None, _shown(a[k]) if k in a else None) for k in keys]
    if before is None and after is None:
        return []
    return [Change("value", None if before is None else _shown(before), None if after is None else _shown(after))]


def _instant(value: str, what: str) -> dt.datetime | None:
    """A date, or a date and time (the form's datetime-local), read as UTC unless it names its offset."""
    if not value:
        return None
    try:
        instant = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{what}: not a date and time (YYYY-MM-DD HH:MM)", reasons=[f"{what}: not a date"]) from None
    return instant.replace(tzinfo=dt.UTC) if instant.tzinfo is None else instant


def _params(request: Request) -> dict[str, str]:
    """The query's filters, each trimmed and cut to its limit (a longer one cannot match anything the API keeps)."""
    out = {}
    for key, limit in LIMITS.items():
        value = request.query_params.get(key, "").strip()
        if value:
            out[key] = value[:limit]
    return out


def _filter(params: dict[str, str]) -> AuditFilter:
    person = params.get("person")
    severity = params.get("severity")
    if severity is not None and severity not in SEVERITIES:
        raise Invalid("severity: choose one of " + ", ".join(SEVERITIES))
    since, until = _instant(params.get("since", ""), "since"), _instant(params.get("until", ""), "until")
    if since and until and until <= since:
        raise Invalid("until: must come after since")
    return AuditFilter(
        entity_type=params.get("entity_type"), entity_id=params.get("entity_id"),
        actor_id=person if person and "@" in person else None,
        actor_name=person if person and "@" not in person else None,
        action=params.get("action"), since=since, until=until, reason_contains=params.get("reason"),
        severity=severity)


@router.get("/audit")
def audit_log(request: Request) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.audit_read)
    s = _services(request)
    params = _params(request)
    cursor = params.pop("cursor", None)
    entries: list[dict[str, Any]] = []
    next_cursor: str | None = None
    problem: str | None = None
    try:
        f = _filter(params)
        if cursor is not None and not re.fullmatch(CURSOR_PATTERN, cursor):
            raise Invalid("this page link is not valid: start from the first page")
        with s.sessions.begin(caller.org_id) as session:
            entries, next_cursor = audit.query(session, caller, f, limit=PAGE, cursor=cursor)
    except Invalid as exc:
        problem = exc.reasons[0] if exc.reasons else exc.message
    shown = [{**e, "changes": diff(e["before"], e["after"])} for e in entries]
    query = urlencode(params)
    return _render(request, "audit.html", {
        "entries": shown, "params": params, "query": query, "problem": problem, "severities": SEVERITIES,
        "next": f"?{urlencode({**params, 'cursor': next_cursor})}" if next_cursor else None,
        "first": f"?{query}" if cursor else None,
        "may_verify": caller.can(Permission.audit_verify), "may_export": caller.can(Permission.audit_export)},
        status=422 if problem else 200)


@router.get("/audit/verify")
def verify(request: Request) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.audit_verify)
    s = _services(request)
    if s.checkpoints is None:
        raise Invalid("verification is not set up in this process (no checkpoint store)")
    with s.sessions.begin(caller.org_id) as session:
        result = audit.verify_org(session, caller.org_id, store=s.checkpoints, keys=s.public_keys)
    return _render(request, "audit_verify.html", {"result": result, "checked_at": dt.datetime.now(dt.UTC)})


@router.get("/audit/export")
def export(request: Request, format: str = "csv") -> Response:  # noqa: A002 - the query's name, as the API's
    caller = _caller(request)
    _require(caller, Permission.audit_export)
    if format not in ("csv", "jsonl"):
        raise Invalid("format: csv or jsonl")
    s = _services(request)
    params = _params(request)
    params.pop("cursor", None)
    f = _filter(params)
    with s.sessions.begin(caller.org_id) as session:
        f = audit.resolve_filter(session, f)  # an unknown email is refused before the download starts

    def stream() -> Iterator[bytes]:  # a transaction of its own, while the file is sent
        with s.sessions.begin(caller.org_id) as own:
            yield from audit.export_lines(own, caller, f, format)

    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(stream(), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="audit-{caller.org_slug or "log"}.{format}"',
        "Cache-Control": "no-store"})


@router.get("/audit/state")
def entity_state(request: Request) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.audit_read)
    s = _services(request)
    params = _params(request)
    entity_type, entity_id = params.get("entity_type", ""), params.get("entity_id", "")
    at_text = params.get("at", "")
    state: dict[str, Any] | None = None
    problem: str | None = None
    if entity_type and entity_id:
        try:
            at = _instant(at_text, "at") or dt.datetime.now(dt.UTC)
            with s.sessions.begin(caller.org_id) as session:
                state = audit.entity_state(session, caller, entity_type, entity_id, at)
        except Invalid as exc:
            problem = exc.message
    elif request.query_params:
        problem = "name the entity: its type and its id"
    return _render(request, "audit_state.html", {
        "params": params, "state": state, "problem": problem,
        "log_link": f"{PREFIX}/audit?" + urlencode({"entity_type": entity_type, "entity_id": entity_id})},
        status=422 if problem else 200)
