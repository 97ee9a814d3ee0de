"""Protocol authoring: the protocols, a YAML editor showing the compiler's problems where they are (each with its
path, `steps[2].form.fields[0].max: below min 0`, or the YAML's line and column), submit for review, send back
with a reason, approve with an electronic signature (password re-entered, meaning "approved", bound to the
content hash), and a new version from an approved one. The same services as /api/v1/protocols."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import yaml
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from domain.errors import Conflict, DomainError
from domain.identity.service import LoginLimits
from domain.protocols import service
from domain.protocols.models import DraftUpdate, ProtocolCreate, ValidateRequest, VersionCreate, VersionRead
from domain.protocols.plan import Problem
from domain.protocols.service import ProtocolProblems
from domain.roles import Caller, Permission
from domain.signatures import Meaning, SignatureInput
from web.acting import acting, on_record, page_number, page_of
from web.app import PREFIX, Services, _caller, _check_csrf, _form, _render, _require, _services, _text

router = APIRouter()
T = TypeVar("T")
Key = Path(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
Version = Path(ge=1, le=1_000_000)

STARTER = """key: my-protocol
title: My protocol
steps:
  - key: weigh
    kind: task
    title: Weigh the sample
    roles: [technician]
    due: PT2H
    form:
      key: my_protocol_weighing
      fields:
        - {key: mass_g, label: Mass, type: number, unit: g, min: 0, max: 1000}
    checklist:
      - {key: balance_calibrated, text: Balance calibrated today}
"""


def _limits(s: Services) -> LoginLimits:
    """When wrong signature passwords lock an account out: the API's limits (api/deps.py login_limits)."""
    return LoginLimits(max_fail=s.settings.login_max_failures, max_fail_addr=s.settings.login_max_failures_per_address,
                       window=dt.timedelta(minutes=s.settings.login_lockout_minutes))


async def _tx(request: Request, caller: Caller, work: Callable[[Session], T]) -> T:
    s = _services(request)

    def run() -> T:
        with s.sessions.begin(caller.org_id) as session:
            return work(session)

    return await run_in_threadpool(run)


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)


_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def line_of(text: str, path: str) -> int | None:
    """The line of the YAML text a problem's path (`steps[0].form.fields[0].max`) points at, when it is there."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for name, index in _SEGMENT.findall(path):
        if isinstance(node, yaml.MappingNode) and name:
            found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == name), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and index and int(index) < len(node.value):
            node = node.value[int(index)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _located(text: str, problems: list[Problem]) -> list[tuple[int | None, Problem]]:
    return [(line_of(text, p.path), p) for p in problems]


def _problems(exc: DomainError) -> list[Problem]:
    if isinstance(exc, ProtocolProblems):
        return list(exc.problems)
    return [Problem(path=r.partition(":")[0] if ":" in r else "document", message=r.partition(":")[2].strip() or r)
            for r in exc.reasons] or [Problem(path="document", message=exc.message)]


# ------------------------------------------------------------------ list and create


@router.get("/protocols")
async def protocols_page(request: Request, page: int = 1) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.protocols_read)
    found = await _tx(request, caller, service.list_protocols)
    page = page_number(page)
    shown, more = page_of(found, page)
    return _render(request, "protocols.html", {"protocols": shown, "page": page, "more": more})


def _editor(request: Request, *, text: str, problems: list[Problem] | None = None, message: str | None = None,
            version: VersionRead | None = None, checked: bool = False, status: int = 200) -> HTMLResponse:
    return _render(request, "protocol_edit.html", {"text": text, "problems": _located(text, problems or []),
                                                   "message": message,
                                                   "version": version, "checked": checked}, status=status)


@router.get("/protocols/new")
def new_protocol(request: Request) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.protocols_author)
    return _editor(request, text=STARTER)


@router.post("/protocols/new")
async def create(request: Request) -> Response:
    caller = _caller(request)
    form = _text(await _form(request))
    await _check_csrf(request, caller, form)
    _require(caller, Permission.protocols_author)
    text = form.get("yaml", "")
    try:
        data = ProtocolCreate(yaml=text)
    except ValidationError as exc:
        return _editor(request, text=text[:600_000], status=422,
                       problems=[Problem(path="yaml", message=str(e["msg"])) for e in exc.errors()])
    if form.get("action") == "check":
        return _check(request, text)
    who = acting(request, caller, _services(request).settings, form)
    try:
        created = await _tx(request, who, lambda s: service.create_protocol(s, who, data=data))
    except DomainError as exc:
        if exc.status >= 500 or exc.status in (401, 403, 404):
            raise
        return _editor(request, text=text, problems=_problems(exc), message=f"Not saved: {exc.message}",
                       status=exc.status)
    return RedirectResponse(f"{PREFIX}/protocols/{created.protocol_key}/versions/{created.version}?done=saved",
                            status_code=303)


def _check(request: Request, text: str, version: VersionRead | None = None) -> HTMLResponse:
    """Compile without saving: every problem where it is, or that it compiles."""
    result = service.validate(ValidateRequest(yaml=text, version=version.version if version else 1))
    return _editor(request, text=text, problems=result.problems, version=version, checked=True,
                   message=None if result.ok else f"{len(result.problems)} problem(s): nothing was saved.",
                   status=200 if result.ok else 422)


# ------------------------------------------------------------------ one protocol, one version


@router.get("/protocols/{key}")
async def protocol_page(request: Request, key: str = Key, page: int = 1) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.protocols_read)
    found = await _tx(request, caller, lambda s: service.get_protocol(s, key=key))
    page = page_number(page)
    versions, more = page_of(list(reversed(found.versions)), page)
    return _render(request, "protocol.html", {"p": found, "versions": versions, "page": page, "more": more})


async def _version_page(request: Request, caller: Caller, key: str, version: int, *, message: str | None = None,
                        errors: dict[str, str] | None = None, done: str | None = None, status: int = 200
                        ) -> HTMLResponse:
    v = await _tx(request, caller, lambda s: service.get_version(s, key=key, version=version))
    if v.status == "draft" and caller.can(Permission.protocols_author) and v.author.id == caller.user_id \
            and message is None and not errors:
        return _editor(request, text=_yaml(v.definition), problems=v.problems, version=v,
                       message={"saved": "Saved as a draft.", "return": "Sent back to draft."}.get(done or ""))
    mine = caller.user_id is not None and caller.user_id == v.author.id
    return _render(request, "protocol_version.html", {
        "v": v, "document": _yaml(v.definition), "mine": mine, "message": message, "errors": errors or {},
        "done": done, "steps": (v.plan or {}).get("steps") or v.definition.get("steps") or [],
        "may_approve": caller.can(Permission.protocols_approve) and not mine,
        "may_return": v.status == "in_review" and (mine or caller.can(Permission.protocols_approve)),
        "request_id": str(uuid.uuid4())}, status=status)


@router.get("/protocols/{key}/versions/{version}")
async def version_page(request: Request, key: str = Key, version: int = Version, done: str | None = None
                       ) -> HTMLResponse:
    caller = _caller(request)
    _require(caller, Permission.protocols_read)
    return await _version_page(request, caller, key, version,
                               done=done if done in ("saved", "submit", "return", "approve", "new") else None)


async def _acted(request: Request, key: str, permission: Permission) -> tuple[Caller, dict[str, str]]:
    caller = _caller(request)
    form = _text(await _form(request))
    await _check_csrf(request, caller, form)
    _require(caller, permission)
    return acting(request, caller, _services(request).settings, form), form


@router.post("/protocols/{key}/versions/{version}/edit")
async def edit(request: Request, key: str = Key, version: int = Version) -> Response:
    who, form = await _acted(request, key, Permission.protocols_author)
    text = form.get("yaml", "")
    v = await _tx(request, who, lambda s: service.get_version(s, key=key, version=version))
    if form.get("action") == "check":
        return _check(request, text, v)
    try:
        data = DraftUpdate(yaml=text, reason=(form.get("reason") or None))
        await _tx(request, who, lambda s: service.edit_draft(s, who, key=key, version=version, data=data))
    except ValidationError as exc:
        return _editor(request, text=text[:600_000], version=v, status=422,
                       problems=[Problem(path="yaml", message=str(e["msg"])) for e in exc.errors()])
    except DomainError as exc:
        if exc.status >= 500 or exc.status in (401, 403, 404):
            raise
        return _editor(request, text=text, version=v, problems=_problems(exc), message=f"Not saved: {exc.message}",
                       status=exc.status)
    if form.get("action") == "submit":
        return await _submit(request, who, key, version, text, v)
    return RedirectResponse(f"{PREFIX}/protocols/{key}/versions/{version}?done=saved", status_code=303)


async def _submit(request: Request, who: Caller, key: str, version: int, text: str, v: VersionRead) -> Response:
    try:
        await _tx(request, who, lambda s: service.submit_for_review(s, who, key=key, version=version))
    except DomainError as exc:
        if exc.status >= 500 or exc.status in (401, 403, 404):
            raise
        return _editor(request, text=text, version=v, problems=_problems(exc),
                       message=f"Not submitted: {exc.message}", status=exc.status)
    return RedirectResponse(f"{PREFIX}/protocols/{key}/versions/{version}?done=submit", status_code=303)


@router.post("/protocols/{key}/versions/{version}/return")
async def send_back(request: Request, key: str = Key, version: int = Version) -> Response:
    who, form = await _acted(request, key, Permission.protocols_author)
    reason = form.get("reason", "").strip()[:2000]
    if not reason:
        return await _version_page(request, who, key, version, status=422,
                                   errors={"return": "give the reason: the author reads it, and it goes on record"})
    await _tx(request, who, lambda s: service.return_to_draft(s, who, key=key, version=version, reason=reason))
    return RedirectResponse(f"{PREFIX}/protocols/{key}/versions/{version}?done=return", status_code=303)


@router.post("/protocols/{key}/versions/{version}/approve")
async def approve(request: Request, key: str = Key, version: int = Version) -> Response:
    who, form = await _acted(request, key, Permission.protocols_approve)
    s = _services(request)
    shown = form.get("content_hash", "")
    try:
        signature = SignatureInput(password=form.get("password", ""), meaning=Meaning.approved,
                                   reason=form.get("reason", "").strip()[:2000] or None)
    except ValidationError:
        return await _version_page(request, who, key, version, status=422,
                                   errors={"approve": "enter your password to sign"})

    def work(session: Session) -> VersionRead:
        current = service.get_version(session, key=key, version=version)
        if current.content_hash != shown:
            raise Conflict("the version changed since this page showed it; review it again and sign what "
                                   "you see")
        return service.approve(session, who, key=key, version=version, signature=signature, limits=_limits(s))

    try:
        await _tx(request, who, work)
    except DomainError as exc:
        await on_record(request, s.sessions, who, exc)
        return await _version_page(request, who, key, version, status=exc.status,
                                   message=f"Not approved: {exc.message}")
    return RedirectResponse(f"{PREFIX}/protocols/{key}/versions/{version}?done=approve", status_code=303)


@router.post("/protocols/{key}/versions")
async def next_version(request: Request, key: str = Key) -> Response:
    who, form = await _acted(request, key, Permission.protocols_author)
    created = await _tx(request, who, lambda s: service.new_version(s, who, key=key, data=VersionCreate()))
    return RedirectResponse(f"{PREFIX}/protocols/{key}/versions/{created.version}?done=saved", status_code=303)
