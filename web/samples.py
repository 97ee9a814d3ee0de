"""The pages of samples and batches: lists (filters, word search, cursor pages), a sample's page (state, where it is
and who holds it, its chain of custody, its lineage as a tree, its trace) with its moves — a status with the reason,
a move or hand-over, children derived by an operation, archive and restore — and a batch's page with its samples
and decisions.

Every action calls the service the API calls (domain/samples/): the same checks, permission matrix and audit
entries as /api/v1/samples and /api/v1/batches.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from domain.errors import DomainError, Invalid
from domain.identity import service as identity
from domain.registry import service as registry
from domain.registry.models import Kind
from domain.registry.service import ItemFilter
from domain.roles import Caller, Permission
from domain.samples import batches, custody, lineage, service, trace
from domain.samples.models import (
    BATCH_TRANSITIONS,
    OPERATIONS,
    SAMPLE_TRANSITIONS,
    SAMPLE_TYPES,
    ArchiveChange,
    BatchStatus,
    BatchStatusChange,
    BatchType,
    Derivation,
    Lineage,
    Move,
    SampleStatus,
    StatusChange,
)
from web.acting import PAGE, acting, new_request_id
from web.app import PREFIX, _caller, _render, _require, _services, posted
from web.compliance import compliance_of
from web.registry import MAX_OPTIONS, PLURAL, attempt, cursor_ok, place, search_ok

router = APIRouter()
TREE_DEPTH = 6  # generations shown each way
TREE_NODES = 300  # nodes one tree shows at most
SAMPLE_STATUSES: tuple[str, ...] = get_args(SampleStatus)
BATCH_TYPES: tuple[str, ...] = get_args(BatchType)
BATCH_STATUSES: tuple[str, ...] = get_args(BatchStatus)


# ------------------------------------------------------------------ lineage as a tree


@dataclass
class Branch:
    id: uuid.UUID
    code: str
    sample_type: str
    status: str
    operation: str = ""
    step_key: str | None = None
    seen: bool = False  # reached before by another path: not repeated
    children: list[Branch] = field(default_factory=list)


def tree(graph: Lineage) -> Branch | None:
    """The graph from its root, each node under the one it was reached from (ancestors: the parents under the
    child; descendants: the children under the parent); a node reached twice is named, not repeated."""
    nodes = {n.id: n for n in graph.nodes}
    up = graph.direction == "ancestors"
    near: dict[uuid.UUID, list[Any]] = {}
    for e in graph.edges:
        near.setdefault(e.child_id if up else e.parent_id, []).append(e)
    root = nodes.get(graph.root)
    if root is None:
        return None
    seen: set[uuid.UUID] = set()
    budget = [TREE_NODES]

    def grow(node_id: uuid.UUID, operation: str = "", step_key: str | None = None) -> Branch:
        n = nodes[node_id]
        b = Branch(n.id, n.code, n.sample_type, n.status, operation, step_key, seen=node_id in seen)
        budget[0] -= 1
        if b.seen:
            return b
        seen.add(node_id)
        for e in sorted(near.get(node_id, []), key=lambda e: e.recorded_at):
            other = e.parent_id if up else e.child_id
            if other in nodes and budget[0] > 0:
                b.children.append(grow(other, e.operation, e.step_key))
        return b

    return grow(root.id)


# ------------------------------------------------------------------ lists


def _choice(value: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise Invalid(f"{name}: one of {', '.join(allowed)}")
    return value


def _uuid(value: str | None, name: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Invalid(f"{name}: not a record's id") from None


@router.get("/samples")
def sample_list(request: Request) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.samples_read)
    params = {key: v[:200] for key, v in request.query_params.items()}
    cursor = params.pop("cursor", None)
    s = _services(request)
    items: list[Any] = []
    next_cursor: str | None = None
    problem: str | None = None
    try:
        with s.sessions.begin(caller.org_id) as session:
            found = service.list_samples(
                session, status=_choice(params.get("status"), SAMPLE_STATUSES, "status"),
                sample_type=_choice(params.get("sample_type"), SAMPLE_TYPES, "sample type"),
                batch_id=_uuid(params.get("batch_id"), "batch"), location_id=_uuid(params.get("location_id"),
                                                                                   "location"),
                archived=params.get("archived") == "1", q=search_ok(params.get("q")), cursor=cursor_ok(cursor),
                limit=PAGE)
            items, next_cursor = found.items, found.next_cursor
            where = _codes(session, {i.location_id for i in items if i.location_id})
    except Invalid as exc:
        problem, where = exc.message, {}
    query = {key: v for key, v in params.items() if v}
    return _render(request, "samples.html", {
        "items": items, "where": where, "params": params, "problem": problem, "statuses": SAMPLE_STATUSES,
        "types": SAMPLE_TYPES, "plural": PLURAL,
        "next": f"?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None,
        "first": f"?{urlencode(query)}" if cursor else None}, status=422 if problem else 200)


def _codes(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The codes of these registry records, in one query."""
    return registry.codes(session, ids) if ids else {}


@router.get("/batches")
def batch_list(request: Request) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.samples_read)
    params = {key: v[:200] for key, v in request.query_params.items()}
    cursor = params.pop("cursor", None)
    s = _services(request)
    items: list[Any] = []
    next_cursor: str | None = None
    problem: str | None = None
    try:
        with s.sessions.begin(caller.org_id) as session:
            found = batches.list_batches(
                session, status=_choice(params.get("status"), BATCH_STATUSES, "status"),
                batch_type=_choice(params.get("batch_type"), BATCH_TYPES, "batch type"),
                archived=params.get("archived") == "1", q=search_ok(params.get("q")), cursor=cursor_ok(cursor),
                limit=PAGE)
            items, next_cursor = found.items, found.next_cursor
    except Invalid as exc:
        problem = exc.message
    query = {key: v for key, v in params.items() if v}
    return _render(request, "batches.html", {
        "items": items, "params": params, "problem": problem, "statuses": BATCH_STATUSES, "types": BATCH_TYPES,
        "plural": PLURAL, "next": f"?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None,
        "first": f"?{urlencode(query)}" if cursor else None}, status=422 if problem else 200)


# ------------------------------------------------------------------ a sample


def _sample_page(request: Request, caller: Caller, sample_id: uuid.UUID, *, message: str | None = None,
                 problem: str | None = None, reasons: list[str] | None = None, errors: dict[str, str] | None = None,
                 values: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
    s = _services(request)
    may_work = caller.can(Permission.samples_work)
    with s.sessions.begin(caller.org_id) as session:
        sample = service.get(session, sample_id)  # NotFound for another organization's (404, on record)
        where = custody.whereabouts(session, sample_id, None)
        ancestors = tree(lineage.graph(session, sample_id, "ancestors", TREE_DEPTH))
        descendants = tree(lineage.graph(session, sample_id, "descendants", TREE_DEPTH))
        story = trace.sample_trace(session, caller.org_id, sample_id)
        batch = batches.row_of(session, sample.batch_id) if sample.batch_id else None
        compliance = compliance_of(session, caller, "sample", sample_id)
        locations = members = []
        if may_work and sample.archived_at is None:
            locations = sorted(((str(i.id), f"{i.code} — {i.name}") for i in registry.list_items(
                session, Kind.location, ItemFilter(), q=None, cursor=None, limit=MAX_OPTIONS).items),
                key=lambda o: o[1])
            members = [(str(m.user_id), m.display_name) for m in identity.list_members(session) if m.active]
    return _render(request, "sample.html", {
        "sample": sample, "where": where, "ancestors": ancestors, "descendants": descendants,
        "trace": list(reversed(story.entries))[:200], "batch": batch, "locations": locations, "members": members,
        "next_states": SAMPLE_TRANSITIONS.get(sample.status, ()), "operations": OPERATIONS, "types": SAMPLE_TYPES,
        "message": message, "problem": problem, "reasons": reasons or [], "errors": errors or {},
        "values": values or {}, "may_work": may_work, "may_manage": caller.can(Permission.samples_manage),
        "may_audit": caller.can(Permission.audit_read), "request_id": new_request_id(), "plural": PLURAL,
        "compliance": compliance},
        status=status)


DONE = {"status": "Status changed.", "moved": "Moved.", "derived": "Children made.", "archived": "Archived.",
        "restored": "Restored."}


@router.get("/samples/{sample_id:uuid}")
def sample_page(request: Request, sample_id: uuid.UUID, done: str | None = None) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.samples_read)
    return _sample_page(request, caller, sample_id, message=DONE.get(done or ""))


async def _refused(request: Request, caller: Caller, sample_id: uuid.UUID, what: str,
                   exc: DomainError | ValidationError,
                   values: dict[str, str]) -> HTMLResponse:
    errors, general = place(exc)
    errors = {f"{what}.{k}": v for k, v in errors.items()}
    message = f"Not done: {exc.message}" if isinstance(exc, DomainError) else "Not done: correct what is marked."
    status = exc.status if isinstance(exc, DomainError) else 422
    return await run_in_threadpool(lambda: _sample_page(request, caller, sample_id, problem=message, reasons=general,
                                                        errors=errors, values=values, status=status))


@router.post("/samples/{sample_id:uuid}/status")
async def sample_status(request: Request, sample_id: uuid.UUID) -> Response:
    caller, form = await posted(request, Permission.samples_work)
    try:
        revision = int(form["revision"]) if form.get("revision", "").isdigit() else None
        data = StatusChange(status=form.get("status", ""), reason=form.get("reason", "").strip()[:5000],  # type: ignore[arg-type]
                            revision=revision)
    except ValidationError as exc:
        return await _refused(request, caller, sample_id, "status", exc, form)
    refused = await attempt(request, caller, lambda session: service.change_status(session, caller, sample_id, data))
    if refused is not None:
        return await _refused(request, caller, sample_id, "status", refused, form)
    return RedirectResponse(f"{PREFIX}/samples/{sample_id}?done=status", status_code=303)


@router.post("/samples/{sample_id:uuid}/move")
async def sample_move(request: Request, sample_id: uuid.UUID) -> Response:
    caller, form = await posted(request, Permission.samples_work)
    try:
        data = Move(to_location_id=form.get("to_location_id") or None, to_holder_id=form.get("to_holder_id") or None,  # type: ignore[arg-type]
                    reason=form.get("reason", "").strip()[:5000])
    except ValidationError as exc:
        return await _refused(request, caller, sample_id, "move", exc, form)
    refused = await attempt(request, caller, lambda session: custody.move(session, caller, sample_id, data))
    if refused is not None:
        return await _refused(request, caller, sample_id, "move", refused, form)
    return RedirectResponse(f"{PREFIX}/samples/{sample_id}?done=moved", status_code=303)


@router.post("/samples/{sample_id:uuid}/derive")
async def sample_derive(request: Request, sample_id: uuid.UUID) -> Response:
    caller, form = await posted(request, Permission.samples_work)
    s = _services(request)
    try:
        count = form.get("count", "").strip()
        data = Derivation(parent_ids=[sample_id], operation=form.get("operation", ""),  # type: ignore[arg-type]
                          count=int(count) if count.isdigit() and len(count) < 6 else count or None,  # type: ignore[arg-type]
                          reason=form.get("reason", "").strip()[:5000] or None)
    except ValidationError as exc:
        return await _refused(request, caller, sample_id, "derive", exc, form)
    who = acting(request, caller, s.settings, form)  # the form's request id: a double submit derives once
    refused = await attempt(request, who, lambda session: lineage.derive(session, who, data))
    if refused is not None:
        return await _refused(request, caller, sample_id, "derive", refused, form)
    return RedirectResponse(f"{PREFIX}/samples/{sample_id}?done=derived", status_code=303)


@router.post("/samples/{sample_id:uuid}/archive")
async def sample_archive(request: Request, sample_id: uuid.UUID) -> Response:
    return await _sample_archive(request, sample_id, restore=False)


@router.post("/samples/{sample_id:uuid}/restore")
async def sample_restore(request: Request, sample_id: uuid.UUID) -> Response:
    return await _sample_archive(request, sample_id, restore=True)


async def _sample_archive(request: Request, sample_id: uuid.UUID, *, restore: bool) -> Response:
    caller, form = await posted(request, Permission.samples_manage)
    what = "restore" if restore else "archive"
    try:
        data = ArchiveChange(reason=form.get("reason", "").strip()[:5000])
    except ValidationError as exc:
        return await _refused(request, caller, sample_id, what, exc, form)
    refused = await attempt(request, caller, lambda session: service.archive(session, caller, sample_id, data,
                                                                             restore=restore))
    if refused is not None:
        return await _refused(request, caller, sample_id, what, refused, form)
    return RedirectResponse(f"{PREFIX}/samples/{sample_id}?done={what}d", status_code=303)


# ------------------------------------------------------------------ a batch


def _batch_page(request: Request, caller: Caller, batch_id: uuid.UUID, *, message: str | None = None,
                problem: str | None = None, reasons: list[str] | None = None, errors: dict[str, str] | None = None,
                status: int = 200) -> HTMLResponse:
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        batch = batches.get(session, batch_id)  # NotFound for another organization's (404, on record)
        story = trace.batch_trace(session, caller.org_id, batch_id)
    decisions = {k: v for k, v in batch.record.items() if k in BATCH_TRANSITIONS and isinstance(v, dict)}
    details = {k: v for k, v in batch.record.items() if k not in decisions}
    return _render(request, "batch.html", {
        "batch": batch, "details": details, "decisions": decisions, "trace": list(reversed(story.entries))[:200],
        "next_states": BATCH_TRANSITIONS.get(batch.status, ()), "message": message, "problem": problem,
        "reasons": reasons or [], "errors": errors or {}, "may_manage": caller.can(Permission.samples_manage),
        "may_audit": caller.can(Permission.audit_read), "plural": PLURAL}, status=status)


@router.get("/batches/{batch_id:uuid}")
def batch_page(request: Request, batch_id: uuid.UUID, done: str | None = None) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.samples_read)
    return _batch_page(request, caller, batch_id, message=DONE.get(done or ""))


async def _batch_refused(request: Request, caller: Caller, batch_id: uuid.UUID, what: str,
                         exc: DomainError | ValidationError) -> HTMLResponse:
    errors, general = place(exc)
    message = f"Not done: {exc.message}" if isinstance(exc, DomainError) else "Not done: correct what is marked."
    status = exc.status if isinstance(exc, DomainError) else 422
    return await run_in_threadpool(lambda: _batch_page(
        request, caller, batch_id, problem=message, reasons=general,
        errors={f"{what}.{k}": v for k, v in errors.items()}, status=status))


@router.post("/batches/{batch_id:uuid}/status")
async def batch_status(request: Request, batch_id: uuid.UUID) -> Response:
    caller, form = await posted(request, Permission.samples_work)
    try:
        data = BatchStatusChange(status=form.get("status", ""), reason=form.get("reason", "").strip()[:5000])  # type: ignore[arg-type]
    except ValidationError as exc:
        return await _batch_refused(request, caller, batch_id, "status", exc)
    refused = await attempt(request, caller, lambda session: batches.change_status(session, caller, batch_id, data))
    if refused is not None:
        return await _batch_refused(request, caller, batch_id, "status", refused)
    return RedirectResponse(f"{PREFIX}/batches/{batch_id}?done=status", status_code=303)


@router.post("/batches/{batch_id:uuid}/archive")
async def batch_archive(request: Request, batch_id: uuid.UUID) -> Response:
    return await _batch_archive(request, batch_id, restore=False)


@router.post("/batches/{batch_id:uuid}/restore")
async def batch_restore(request: Request, batch_id: uuid.UUID) -> Response:
    return await _batch_archive(request, batch_id, restore=True)


async def _batch_archive(request: Request, batch_id: uuid.UUID, *, restore: bool) -> Response:
    caller, form = await posted(request, Permission.samples_manage)
    what = "restore" if restore else "archive"
    try:
        data = ArchiveChange(reason=form.get("reason", "").strip()[:5000])
    except ValidationError as exc:
        return await _batch_refused(request, caller, batch_id, what, exc)
    refused = await attempt(request, caller, lambda session: batches.archive(session, caller, batch_id, data,
                                                                             restore=restore))
    if refused is not None:
        return await _batch_refused(request, caller, batch_id, what, refused)
    return RedirectResponse(f"{PREFIX}/batches/{batch_id}?done={what}d", status_code=303)
