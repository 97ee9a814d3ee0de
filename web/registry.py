"""The registries' pages: each kind's list (filters, word search, cursor pages), a record page, create and edit forms
with the server's own messages beside each field, archive and restore with a reason, the printable label, and the
look-up box that finds a record (registry, sample or batch) by the code typed or scanned from its label.

Every page calls the registry service the API calls (domain/registry/service.py): the same checks, permission
matrix and audit entries as /api/v1/registry.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from domain.errors import DomainError, Invalid, NotFound
from domain.pagination import CURSOR_PATTERN, MAX_SEARCH_LENGTH
from domain.registry import labels
from domain.registry import service as registry
from domain.registry.models import RULES, ArchiveRequest, ItemCreate, ItemRead, Kind, LocationLevel
from domain.registry.service import Change, ItemFilter
from domain.roles import Caller, Permission
from domain.samples import batches
from domain.samples import service as samples
from web.acting import PAGE, field_errors
from web.app import PREFIX, _caller, _render, _require, _services, posted

router = APIRouter()
KINDS = [k.value for k in Kind]
PLURAL = {"species": "Species", "strain": "Strains", "plasmid": "Plasmids", "ingredient": "Ingredients",
          "lot": "Ingredient lots", "equipment": "Equipment", "supplier": "Suppliers", "location": "Storage locations"}
MAX_OPTIONS = 500  # records offered in a choice (a parent, a supplier, a location)


# ------------------------------------------------------------------ what the material pages share


async def attempt(request: Request, caller: Caller, work: Callable[[Session], object]) -> DomainError | None:
    """`work(session)` in the person's organization, in one transaction; the refusal (nothing changed) or None.
    A 403 or 404 goes to the error page, on record as a denial as in the API."""
    s = _services(request)

    def run() -> None:
        with s.sessions.begin(caller.org_id) as session:
            work(session)

    try:
        await run_in_threadpool(run)
    except DomainError as exc:
        if exc.status in (403, 404):
            raise
        return exc
    return None


def place(exc: DomainError | ValidationError, names: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """A refusal's reasons by the form field they name (`attributes.risk_group` → `a.risk_group`), and the others."""
    if isinstance(exc, ValidationError):
        errors = field_errors(exc, names)
        return {_field(k): v for k, v in errors.items()}, []
    errors, general = {}, []
    for reason in exc.reasons:
        where, _, why = reason.partition(": ")
        if why and re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)*", where):
            key = _field(where)
            errors[key] = f"{errors[key]}; {why}" if key in errors else why
        else:
            general.append(reason)
    return errors, general


def _field(where: str) -> str:
    parts = where.split(".")
    return f"a.{parts[1]}" if parts[0] == "attributes" and len(parts) > 1 else parts[0]


def cursor_ok(cursor: str | None) -> str | None:
    if cursor is not None and not re.fullmatch(CURSOR_PATTERN, cursor):
        raise Invalid("this page link is not valid: start from the first page")
    return cursor


def search_ok(q: str | None) -> str | None:
    q = (q or "").strip()
    if len(q) > MAX_SEARCH_LENGTH:
        raise Invalid(f"search for at most {MAX_SEARCH_LENGTH} characters")
    return q or None


# ------------------------------------------------------------------ the kind's attributes as form controls


@dataclass
class AttrField:
    key: str
    label: str
    widget: Literal["text", "number", "date", "checkbox", "select", "list"]
    required: bool
    hint: str = ""
    choices: list[tuple[str, str]] = field(default_factory=list)  # (value, label)
    refers_to: Kind | None = None


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type inside Optional, whether None is allowed)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def attribute_fields(kind: Kind) -> list[AttrField]:
    rules = RULES[kind]
    refs = dict(rules.references)
    out = []
    for key, info in rules.attributes.model_fields.items():
        inner, _ = _unwrap(info.annotation)
        hint = info.description or ""
        label = key.replace("_", " ").capitalize().replace("Ncbi", "NCBI").replace("bp", "(bp)")
        if key == "temperature_c":
            label = "Temperature (°C)"
        widget: Any = "text"
        choices: list[tuple[str, str]] = []
        if inner is bool:
            widget = "checkbox"
        elif inner in (int, float):
            widget = "number"
        elif inner is dt.date:
            widget = "date"
        elif inner is uuid.UUID:
            widget = "select"
        elif isinstance(inner, type) and issubclass(inner, enum.Enum):
            widget, choices = "select", [(str(m.value), str(m.value)) for m in inner]
        elif get_origin(inner) is Literal:
            widget, choices = "select", [(str(a), str(a).replace("_", " ")) for a in get_args(inner)]
        elif get_origin(inner) is list:
            widget = "list"
            item = get_args(inner)[0] if get_args(inner) else str
            allowed = get_args(item) if get_origin(item) is Literal else ()
            hint = "; ".join(filter(None, [hint, "several separated by ;"
                                          + (f" — of: {', '.join(allowed)}" if allowed else "")]))
        out.append(AttrField(key=key, label=label, widget=widget, required=info.is_required(), hint=hint,
                             choices=choices, refers_to=refs.get(key)))
    return out


def _options(session: Session, kind: Kind) -> list[tuple[str, str]]:
    page = registry.list_items(session, kind, ItemFilter(), q=None, cursor=None, limit=MAX_OPTIONS)
    return sorted(((str(i.id), f"{i.code} — {i.name}") for i in page.items), key=lambda o: o[1])


def _attributes(kind: Kind, form: dict[str, str], *, keep_empty: bool) -> dict[str, object]:
    """The attributes a form sends, as typed (the kind's model checks them); an empty one left out, or cleared."""
    out: dict[str, object] = {}
    for f in attribute_fields(kind):
        raw = form.get(f"a.{f.key}", "").strip()
        if f.widget == "checkbox":
            out[f.key] = form.get(f"a.{f.key}") == "on"
        elif f.widget == "list":
            out[f.key] = [x.strip() for x in raw.split(";") if x.strip()]
        elif raw:
            out[f.key] = raw
        elif keep_empty:
            out[f.key] = None
    return out


# ------------------------------------------------------------------ find by code


@router.get("/find")
def find(request: Request, code: str = "", type: str = "") -> Response:  # noqa: A002 - the query's name
    """The record with the code typed or scanned (a label's QR or barcode types it): a sample, a batch or a
    registry record; `type` (sample, batch) narrows it, as a run's subjects name theirs."""
    caller = _caller(request)
    _require(caller, Permission.registry_read)
    wanted = code.strip()
    if not wanted:
        return RedirectResponse(f"{PREFIX}/registry", status_code=303)
    if len(wanted) > 128:
        raise Invalid("a code has at most 128 characters")
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        for ref in dict.fromkeys((wanted, wanted.upper())):
            if type in ("", "sample") and (sample := samples.find(session, ref)) is not None:
                return RedirectResponse(f"{PREFIX}/samples/{sample.id}", status_code=303)
            if type in ("", "batch") and (batch := batches.find(session, ref)) is not None:
                return RedirectResponse(f"{PREFIX}/batches/{batch.id}", status_code=303)
        if type == "":
            try:
                item = registry.lookup(session, wanted)
            except NotFound:
                item = None
            if item is not None:
                return RedirectResponse(f"{PREFIX}/registry/{item.kind}/{item.id}", status_code=303)
    raise NotFound(f"nothing in this organization has the code '{wanted[:64]}'")


# ------------------------------------------------------------------ lists


def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise NotFound(f"no registry of {kind[:40]}")
    return Kind(kind)


FILTERS = {  # the list's filters beyond status and archived, by kind: (query name, label, input type)
    Kind.species: [("risk_group", "Risk group", "number")],
    Kind.strain: [("risk_group", "Risk group", "number")],
    Kind.lot: [("expiry_before", "Expiring before", "date")],
    Kind.equipment: [("calibration_due_before", "Calibration due before", "date"),
                     ("maintenance_due_before", "Maintenance due before", "date")],
    Kind.location: [("level", "Level", "select")],
}


def _item_filter(kind: Kind, params: dict[str, str]) -> ItemFilter:
    """The list's filter from the query; Invalid naming the field a value does not fit."""
    values: dict[str, Any] = {}
    problems = []
    for name, label, widget in FILTERS.get(kind, []):
        raw = params.get(name, "").strip()
        if not raw:
            continue
        try:
            values[name] = (int(raw) if widget == "number" else dt.date.fromisoformat(raw) if widget == "date"
                            else LocationLevel(raw))
        except ValueError:
            problems.append(f"{name}: {label.lower()}: not a valid {'date' if widget == 'date' else 'value'}")
    for name in ("parent_id", "supplier_id"):
        if params.get(name):
            try:
                values[name] = uuid.UUID(params[name])
            except ValueError:
                problems.append(f"{name}: not a record's id")
    if problems:
        raise Invalid("a filter is not valid", reasons=problems)
    archived = params.get("archived", "exclude")
    return ItemFilter(status=params.get("status") or None, archived=archived if archived in ("include", "only")
                      else "exclude", **values)


@router.get("/registry")
def registry_home(request: Request) -> Response:
    caller = _caller(request)
    _require(caller, Permission.registry_read)
    return RedirectResponse(f"{PREFIX}/registry/strain", status_code=303)


@router.get("/registry/{kind}")
def registry_list(request: Request, kind: str) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.registry_read)
    k = _kind(kind)
    params = {key: v[:200] for key, v in request.query_params.items()}
    cursor = params.pop("cursor", None)
    items: list[ItemRead] = []
    next_cursor: str | None = None
    problem: str | None = None
    s = _services(request)
    try:
        f = _item_filter(k, params)
        with s.sessions.begin(caller.org_id) as session:
            found = registry.list_items(session, k, f, q=search_ok(params.get("q")), cursor=cursor_ok(cursor),
                                        limit=PAGE)
        items, next_cursor = found.items, found.next_cursor
    except Invalid as exc:
        problem = "; ".join(exc.reasons) if exc.reasons else exc.message
    query = {key: v for key, v in params.items() if v}
    return _render(request, "registry_list.html", {
        "kind": k, "kinds": KINDS, "plural": PLURAL, "items": items, "params": params, "problem": problem,
        "statuses": RULES[k].statuses, "filters": FILTERS.get(k, []), "levels": [lv.value for lv in LocationLevel],
        "next": f"?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None,
        "first": f"?{urlencode(query)}" if cursor else None,
        "may_write": caller.can(Permission.registry_write)}, status=422 if problem else 200)


# ------------------------------------------------------------------ one record


def _record_page(request: Request, caller: Caller, k: Kind, item_id: uuid.UUID, *, message: str | None = None,
                 problem: str | None = None, errors: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        row = registry.get(session, k, item_id)  # NotFound for another organization's (404, on record)
        item = registry.read(row)
        parent = registry.find(session, row.parent_id) if row.parent_id else None
        held = registry.children(session, item_id, limit=21)
        referenced = {}
        for key, _ in RULES[k].references:
            value = row.attributes.get(key)
            if value:
                referenced[key] = registry.find(session, uuid.UUID(str(value)))
    attributes = [(f, row.attributes.get(f.key)) for f in attribute_fields(k)]
    return _render(request, "registry_item.html", {
        "item": item, "kind": k, "plural": PLURAL, "parent": parent, "held": held[:20], "more_held": len(held) > 20,
        "attributes": attributes, "referenced": referenced, "message": message, "problem": problem,
        "errors": errors or {}, "may_write": caller.can(Permission.registry_write),
        "may_audit": caller.can(Permission.audit_read)}, status=status)


@router.get("/registry/{kind}/{item_id:uuid}")
def record(request: Request, kind: str, item_id: uuid.UUID, done: str | None = None) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.registry_read)
    messages = {"created": "Created.", "updated": "Saved.", "archived": "Archived.", "restored": "Restored."}
    return _record_page(request, caller, _kind(kind), item_id, message=messages.get(done or ""))


@router.get("/registry/{kind}/{item_id:uuid}/label")
def label(request: Request, kind: str, item_id: uuid.UUID) -> Response:
    """The printable label (SVG, 70 × 36 mm): the code as a QR code and a Code 128 barcode."""
    caller = _caller(request)
    _require(caller, Permission.registry_read)
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        row = registry.get(session, _kind(kind), item_id)
    return Response(content=labels.label_svg(row), media_type="image/svg+xml",
                    headers={"Content-Disposition": f'inline; filename="{row.code}.svg"'})


@router.post("/registry/{kind}/{item_id:uuid}/archive")
async def archive(request: Request, kind: str, item_id: uuid.UUID) -> Response:
    return await _archive_or_restore(request, kind, item_id, "archive")


@router.post("/registry/{kind}/{item_id:uuid}/restore")
async def restore(request: Request, kind: str, item_id: uuid.UUID) -> Response:
    return await _archive_or_restore(request, kind, item_id, "restore")


async def _archive_or_restore(request: Request, kind: str, item_id: uuid.UUID, action: str) -> Response:
    caller, form = await posted(request, Permission.registry_write)
    k = _kind(kind)
    try:
        revision = int(form["revision"]) if form.get("revision", "").isdigit() else None
        data = ArchiveRequest(reason=form.get("reason", "")[:5000], revision=revision)
    except ValidationError:
        return await run_in_threadpool(
            lambda: _record_page(request, caller, k, item_id, status=422,
                                 errors={action: "give the reason (up to 2000 characters): it goes on record"}))
    refused = await attempt(request, caller, lambda session: registry.set_archived(
        session, caller, k, item_id, data, archived=action == "archive"))
    if refused is not None:
        return await run_in_threadpool(
            lambda: _record_page(request, caller, k, item_id, status=refused.status,
                                 problem=f"Not {action}d: {refused.message}"))
    return RedirectResponse(f"{PREFIX}/registry/{k}/{item_id}?done={action}d", status_code=303)


# ------------------------------------------------------------------ create and edit


def _edit_page(request: Request, caller: Caller, k: Kind, values: dict[str, str], *, item: ItemRead | None = None,
               errors: dict[str, str] | None = None, general: list[str] | None = None, message: str | None = None,
               status: int = 200) -> HTMLResponse:
    s = _services(request)
    rules = RULES[k]
    fields = attribute_fields(k)
    with s.sessions.begin(caller.org_id) as session:
        parents = _options(session, rules.parent) if rules.parent else []
        for f in fields:
            if f.refers_to is not None:
                f.choices = _options(session, f.refers_to)
    if item is not None:
        parents = [p for p in parents if p[0] != str(item.id)]
    return _render(request, "registry_edit.html", {
        "kind": k, "plural": PLURAL, "item": item, "values": values, "fields": fields, "parents": parents,
        "parent_kind": rules.parent, "parent_required": rules.parent_required, "statuses": rules.statuses,
        "errors": errors or {}, "general": general or [], "message": message}, status=status)


def _values_of(item: ItemRead) -> dict[str, str]:
    values = {"name": item.name, "parent_id": str(item.parent_id or ""), "status": item.status,
              "revision": str(item.revision)}
    for key, v in item.attributes.items():
        if isinstance(v, bool):
            values[f"a.{key}"] = "on" if v else ""
        elif isinstance(v, list):
            values[f"a.{key}"] = "; ".join(str(x) for x in v)
        else:
            values[f"a.{key}"] = "" if v is None else str(v)
    return values


@router.get("/registry/{kind}/new")
def new_form(request: Request, kind: str, parent_id: str = "") -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.registry_write)
    k = _kind(kind)
    return _edit_page(request, caller, k, {"parent_id": parent_id[:36], "status": RULES[k].statuses[0]})


@router.post("/registry/{kind}/new")
async def create(request: Request, kind: str) -> Response:
    caller, form = await posted(request, Permission.registry_write)
    k = _kind(kind)
    values = {key: v[:5000] for key, v in form.items()}
    try:
        data = ItemCreate(name=form.get("name", ""), parent_id=form.get("parent_id") or None,  # type: ignore[arg-type]
                          status=form.get("status") or None, reason=form.get("reason", "").strip() or None,
                          attributes=_attributes(k, form, keep_empty=False))
    except ValidationError as exc:
        errors, general = place(exc)
        return await run_in_threadpool(lambda: _edit_page(request, caller, k, values, errors=errors, general=general,
                                                          message="Not created: correct what is marked.", status=422))
    made: list[uuid.UUID] = []
    refused = await attempt(request, caller, lambda session: made.append(registry.create(session, caller, k, data).id))
    if refused is not None:
        errors, general = place(refused)
        return await run_in_threadpool(lambda: _edit_page(
            request, caller, k, values, errors=errors, general=general, status=refused.status,
            message=f"Not created: {refused.message}."))
    return RedirectResponse(f"{PREFIX}/registry/{k}/{made[0]}?done=created", status_code=303)


@router.get("/registry/{kind}/{item_id:uuid}/edit")
def edit_form(request: Request, kind: str, item_id: uuid.UUID) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.registry_write)
    k = _kind(kind)
    s = _services(request)
    with s.sessions.begin(caller.org_id) as session:
        item = registry.read(registry.get(session, k, item_id))
    return _edit_page(request, caller, k, _values_of(item), item=item)


@router.post("/registry/{kind}/{item_id:uuid}/edit")
async def update(request: Request, kind: str, item_id: uuid.UUID) -> Response:
    caller, form = await posted(request, Permission.registry_write)
    k = _kind(kind)
    values = {key: v[:5000] for key, v in form.items()}
    s = _services(request)

    def current() -> ItemRead:
        with s.sessions.begin(caller.org_id) as session:
            return registry.read(registry.get(session, k, item_id))

    item = await run_in_threadpool(current)
    errors: dict[str, str] = {}
    reason = form.get("reason", "").strip()
    if not reason or len(reason) > 2000:
        errors["reason"] = "say why (up to 2000 characters): it goes on record"
    revision = form.get("revision", "")
    if not revision.isdigit() or not 1 <= int(revision) < 2**31:
        errors["revision"] = "reload the record and make your change again"
    name = form.get("name", "").strip()
    if not 1 <= len(name) <= 200:
        errors["name"] = "1–200 characters"
    parent: uuid.UUID | None = None
    if form.get("parent_id"):
        try:
            parent = uuid.UUID(form["parent_id"])
        except ValueError:
            errors["parent_id"] = "choose one of the list"
    if errors:
        return await run_in_threadpool(lambda: _edit_page(request, caller, k, values, item=item, errors=errors,
                                                          message="Not saved: correct what is marked.", status=422))
    change = Change(revision=int(revision), reason=reason, name=name, parent_id=parent,
                    parent_given=RULES[k].parent is not None, status=form.get("status") or None,
                    attributes=_attributes(k, form, keep_empty=True))
    refused = await attempt(request, caller, lambda session: registry.update(session, caller, k, item_id, change))
    if refused is not None:
        placed, general = place(refused)
        return await run_in_threadpool(lambda: _edit_page(
            request, caller, k, values, item=item, errors=placed, general=general, status=refused.status,
            message=f"Not saved: {refused.message}."))
    return RedirectResponse(f"{PREFIX}/registry/{k}/{item_id}?done=updated", status_code=303)
