"""Reports: definitions (versioned), reports through their lifecycle, executions pinned to Delta versions, exports.

The rules:
- A definition is a version: its SQL, parameters, layout and chart never change (a database trigger refuses it);
  an edit is the next version of the same key. Custom definitions are seen by their author and by the roles they
  are shared with; system definitions (domain/reports/system.py) by every role that uses reports.
- A report is one definition version with its parameters: created → updated (each execution) → in_review →
  finalized. Finalizing is an electronic signature by someone other than the author (domain/signatures.py) over
  the report's content hash; the result is kept as Parquet, content-addressed, the rendering as PDF, and the
  content hash goes into the audit chain with the finalize entry. A finalized report is locked: a trigger refuses
  every change, for the database owner too.
- An execution records its parameters, row count, duration and the Delta version of every table it read; its rows
  are stored once by their SHA-256 (`reports/<org>/<sha256>.parquet`). Reproducing a finalized report reads the
  pinned versions again (time travel) and compares hashes.
- Every action is an audit entry: create, update (edit), share, execute, review (submitted for review), finalize,
  export, download. Reports, executions and exports reach the lake through the outbox (topics `report`,
  `report_execution`, `report_export`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.storage import ObjectMissing, ObjectStore
from domain import audit
from domain import signatures as esign
from domain.canonical import format_ts
from domain.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from domain.identity.service import LoginLimits
from domain.reports import exports, params, render, run_record
from domain.reports.models import (
    DefinitionCreate,
    DefinitionRead,
    DefinitionUpdate,
    ExecutionRead,
    ExportFormat,
    Layout,
    ParameterSpec,
    ReportCreate,
    ReportRead,
    ReportUpdate,
    ShareUpdate,
)
from domain.reports.rows import DefinitionRow, ExecutionRow, ReportRow
from domain.reports.system import SYSTEM_REPORTS
from domain.roles import SYSTEM_ACTOR, Caller, Permission, Role
from domain.rows import columns, from_row
from domain.runs.records import outbox

MAX_ROWS = 100_000  # an execution's rows (a report is a summary: more is a query for Flight SQL)
_DEF = columns(DefinitionRow, "d")
_REP = columns(ReportRow, "r")
_EXE = columns(ExecutionRow, "e")
MANAGERS = frozenset({Role.owner, Role.admin})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _uuid(value: uuid.UUID | str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"no {what} {value}") from None


# ---------------------------------------------------------------- definitions


def ensure_system(session: Session, org_id: uuid.UUID | str) -> int:
    """The shipped system definitions the organization does not have yet (each version once); how many added."""
    have = {(r.key, r.version) for r in session.execute(
        text("SELECT key, version FROM report_definitions WHERE org_id = :o AND kind = 'system'"), {"o": org_id})}
    added = 0
    for s in SYSTEM_REPORTS:
        if (s.key, s.version) in have:
            continue
        did = uuid.uuid5(uuid.UUID(str(org_id)), f"report-definition:{s.key}:{s.version}")
        new = session.execute(text(
            "INSERT INTO report_definitions (id, org_id, key, version, kind, source, title, description, sql,"
            " parameters, layout, chart, shared_roles, created_by, created_by_display, created_at) VALUES"
            " (:id, :o, :k, :v, 'system', :src, :t, :d, :sql, CAST(:p AS jsonb), CAST(:l AS jsonb),"
            " CAST(:c AS jsonb), '{}', :by, :byd, :at) ON CONFLICT DO NOTHING RETURNING id"),
            {"id": did, "o": org_id, "k": s.key, "v": s.version, "src": s.source, "t": s.title, "d": s.description,
             "sql": s.sql, "p": json.dumps(s.parameters), "l": json.dumps(s.layout),
             "c": json.dumps(s.chart) if s.chart else None, "by": SYSTEM_ACTOR.id,
             "byd": SYSTEM_ACTOR.display, "at": _now()}).first()
        if new is not None:
            added += 1
            audit.record(session, org_id=org_id, actor=SYSTEM_ACTOR, action="create",
                         entity_type="report_definition", entity_id=did,
                         after={"key": s.key, "version": s.version, "kind": "system", "title": s.title})
    return added


def _visible(d: DefinitionRow, caller: Caller) -> bool:
    return (d.kind == "system" or d.created_by == caller.actor.id or caller.role in MANAGERS
            or str(caller.role) in d.shared_roles)


def _read_def(d: DefinitionRow) -> DefinitionRead:
    return DefinitionRead(id=d.id, key=d.key, version=d.version, kind=d.kind,  # type: ignore[arg-type]
                          source=d.source, title=d.title, description=d.description,  # type: ignore[arg-type]
                          sql=d.sql, parameters=[ParameterSpec(**p) for p in d.parameters],
                          layout=Layout(**(d.layout or {})), chart=d.chart, shared_roles=list(d.shared_roles),
                          created_by=d.created_by, created_by_display=d.created_by_display, created_at=d.created_at)


def _definition(session: Session, caller: Caller, definition_id: uuid.UUID | str) -> DefinitionRow:
    did = _uuid(definition_id, "report definition")
    row = session.execute(text(f"SELECT {_DEF} FROM report_definitions d WHERE d.id = :i"), {"i": did}).first()
    if row is None or not _visible(d := from_row(DefinitionRow, row), caller):
        raise NotFound(f"no report definition {definition_id}")
    return d


def _latest(session: Session, caller: Caller, key: str) -> DefinitionRow:
    row = session.execute(text(f"SELECT {_DEF} FROM report_definitions d WHERE d.org_id = :o AND d.key = :k"
                               " ORDER BY d.version DESC LIMIT 1"), {"o": caller.org_id, "k": key}).first()
    if row is None or not _visible(d := from_row(DefinitionRow, row), caller):
        raise NotFound(f"no report definition {key}")
    return d


def list_definitions(session: Session, caller: Caller) -> list[DefinitionRead]:
    """The newest version of every definition the caller may see."""
    ensure_system(session, caller.org_id)
    rows = session.execute(text(
        f"SELECT DISTINCT ON (d.key) {_DEF} FROM report_definitions d WHERE d.org_id = :o AND d.archived_at IS NULL"
        " ORDER BY d.key, d.version DESC"), {"o": caller.org_id}).all()
    return [_read_def(d) for d in (from_row(DefinitionRow, r) for r in rows) if _visible(d, caller)]


def get_definition(session: Session, caller: Caller, definition_id: uuid.UUID | str) -> DefinitionRead:
    return _read_def(_definition(session, caller, definition_id))


def definition_versions(session: Session, caller: Caller, key: str) -> list[DefinitionRead]:
    d = _latest(session, caller, key)
    rows = session.execute(text(f"SELECT {_DEF} FROM report_definitions d WHERE d.org_id = :o AND d.key = :k"
                                " ORDER BY d.version"), {"o": caller.org_id, "k": d.key}).all()
    return [_read_def(from_row(DefinitionRow, r)) for r in rows]


def _insert_definition(session: Session, caller: Caller, *, key: str, version: int, title: str,
                       description: str | None, sql: str, parameters: Sequence[ParameterSpec], layout: Layout,
                       chart: dict[str, Any] | None, shared_roles: Sequence[str]) -> DefinitionRow:
    params.check_declared(sql, parameters)
    did = uuid.uuid4()
    row = session.execute(text(
        "INSERT INTO report_definitions (id, org_id, key, version, kind, source, title, description, sql, parameters,"
        " layout, chart, shared_roles, created_by, created_by_display, created_at) VALUES (:id, :o, :k, :v, 'custom',"
        " 'lake', :t, :d, :sql, CAST(:p AS jsonb), CAST(:l AS jsonb), CAST(:c AS jsonb), :sr, :by, :byd, :at)"
        " ON CONFLICT (org_id, key, version) DO NOTHING RETURNING id"),
        {"id": did, "o": caller.org_id, "k": key, "v": version, "t": title, "d": description, "sql": sql,
         "p": json.dumps([p.model_dump(mode="json") for p in parameters]), "l": layout.model_dump_json(),
         "c": json.dumps(chart) if chart is not None else None, "sr": sorted(set(shared_roles)),
         "by": caller.actor.id, "byd": caller.actor.display, "at": _now()}).first()
    if row is None:
        raise Conflict(f"report definition {key} v{version} exists already")
    d = _definition(session, caller, did)
    outbox(session, caller.org_id, "report", _definition_payload(d))
    return d


def create_definition(session: Session, caller: Caller, data: DefinitionCreate) -> DefinitionRead:
    """A new custom definition (its SQL checked by the sandbox before: the API does it)."""
    if session.execute(text("SELECT 1 FROM report_definitions WHERE org_id = :o AND key = :k"),
                       {"o": caller.org_id, "k": data.key}).first():
        raise Conflict(f"a report definition {data.key} exists already: edit it (a new version)")
    d = _insert_definition(session, caller, key=data.key, version=1, title=data.title, description=data.description,
                           sql=data.sql, parameters=data.parameters, layout=data.layout, chart=data.chart,
                           shared_roles=[str(r) for r in data.shared_roles])
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="report_definition",
                 entity_id=d.id, after=_read_def(d).model_dump(mode="json"), context=caller.context)
    return _read_def(d)


def edit_definition(session: Session, caller: Caller, key: str, data: DefinitionUpdate) -> DefinitionRead:
    """The next version of a custom definition, by its author (or an owner or admin)."""
    old = _latest(session, caller, key)
    if old.kind == "system":
        raise Conflict("a system report changes only with the platform: save a copy under a key of your own")
    if old.created_by != caller.actor.id and caller.role not in MANAGERS:
        raise Forbidden("only the definition's author (or an owner or admin) edits it")
    d = _insert_definition(
        session, caller, key=old.key, version=old.version + 1, title=data.title or old.title,
        description=data.description if data.description is not None else old.description,
        sql=data.sql or old.sql,
        parameters=data.parameters if data.parameters is not None else [ParameterSpec(**p) for p in old.parameters],
        layout=data.layout or Layout(**old.layout), chart=data.chart if data.chart is not None else old.chart,
        shared_roles=old.shared_roles)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="update", entity_type="report_definition",
                 entity_id=d.id, before={"id": str(old.id), "version": old.version, "sql": old.sql},
                 after=_read_def(d).model_dump(mode="json"), reason=data.reason, context=caller.context)
    return _read_def(d)


def share_definition(session: Session, caller: Caller, key: str, data: ShareUpdate) -> DefinitionRead:
    d = _latest(session, caller, key)
    if d.kind == "system":
        raise Conflict("system reports are shared with every role that uses reports")
    if d.created_by != caller.actor.id and caller.role not in MANAGERS:
        raise Forbidden("only the definition's author (or an owner or admin) shares it")
    roles = sorted({str(r) for r in data.shared_roles})
    session.execute(text("UPDATE report_definitions SET shared_roles = :r WHERE org_id = :o AND key = :k"),
                    {"r": roles, "o": caller.org_id, "k": d.key})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="share", entity_type="report_definition",
                 entity_id=d.id, before={"shared_roles": list(d.shared_roles)}, after={"shared_roles": roles},
                 reason=data.reason, context=caller.context)
    return _read_def(_definition(session, caller, d.id))


def _definition_payload(d: DefinitionRow) -> dict[str, Any]:
    return {"entity": "definition", "id": str(d.id), "org_id": str(d.org_id), "definition_id": str(d.id),
            "key": d.key, "version": d.version, "kind": d.kind, "title": d.title, "status": None,
            "changed_by": d.created_by, "changed_at": format_ts(d.created_at), "content_hash": None}


# ---------------------------------------------------------------- reports


def _report_row(session: Session, caller: Caller, report_id: uuid.UUID | str) -> tuple[ReportRow, DefinitionRow]:
    rid = _uuid(report_id, "report")
    row = session.execute(text(f"SELECT {_REP} FROM reports r WHERE r.id = :i"), {"i": rid}).first()
    if row is None:
        raise NotFound(f"no report {report_id}")
    r = from_row(ReportRow, row)
    try:
        d = _definition(session, caller, r.definition_id)
    except NotFound:
        raise NotFound(f"no report {report_id}") from None
    return r, d


def _read_report(session: Session, r: ReportRow, d: DefinitionRow) -> ReportRead:
    sig = None
    if r.signature_id is not None:
        s = session.execute(text("SELECT id, signer_id, signer_name, meaning, reason, entity_type, entity_id,"
                                 " content_hash, signed_at FROM signatures WHERE id = :i"), {"i": r.signature_id}).one()
        sig = esign.Signature(**s._mapping)
    return ReportRead(id=r.id, definition_id=d.id, definition_key=d.key, definition_version=d.version, title=r.title,
                      parameters=r.parameters, status=r.status, locked=r.status == "finalized",  # type: ignore[arg-type]
                      author_id=r.author_id, author_display=r.author_display, created_at=r.created_at,
                      updated_at=r.updated_at, execution_id=r.execution_id, submitted_at=r.submitted_at,
                      finalized_at=r.finalized_at, finalized_by=r.finalized_by, signature=sig,
                      content_hash=r.content_hash, pdf_sha256=r.pdf_sha256)


def get_report(session: Session, caller: Caller, report_id: uuid.UUID | str) -> ReportRead:
    return _read_report(session, *_report_row(session, caller, report_id))


def list_reports(session: Session, caller: Caller, *, limit: int = 100) -> list[ReportRead]:
    """The organization's reports the caller may see (those of the definitions they see), newest first."""
    rows = session.execute(text(f"SELECT {_REP}, {columns(DefinitionRow, 'd', prefix='d_')} FROM reports r"
                                " JOIN report_definitions d ON d.id = r.definition_id WHERE r.org_id = :o"
                                " ORDER BY r.updated_at DESC, r.id LIMIT :n"), {"o": caller.org_id, "n": limit}).all()
    out = []
    for row in rows:
        d = from_row(DefinitionRow, row, prefix="d_")
        if _visible(d, caller):
            out.append(_read_report(session, from_row(ReportRow, row), d))
    return out


def _report_payload(r: ReportRow, d: DefinitionRow, actor: str, at: dt.datetime) -> dict[str, Any]:
    return {"entity": "report", "id": str(r.id), "org_id": str(r.org_id), "definition_id": str(d.id), "key": d.key,
            "version": d.version, "kind": d.kind, "title": r.title, "status": r.status, "changed_by": actor,
            "changed_at": format_ts(at), "content_hash": r.content_hash}


def create_report(session: Session, caller: Caller, data: ReportCreate) -> ReportRead:
    d = _definition(session, caller, data.definition_id)
    values = params.resolve([ParameterSpec(**p) for p in d.parameters], data.parameters)
    rid, at = uuid.uuid4(), _now()
    session.execute(text(
        "INSERT INTO reports (id, org_id, definition_id, title, parameters, status, author_id, author_display,"
        " created_at, updated_at) VALUES (:id, :o, :d, :t, CAST(:p AS jsonb), 'created', :a, :ad, :at, :at)"),
        {"id": rid, "o": caller.org_id, "d": d.id, "t": data.title or d.title, "p": json.dumps(values),
         "a": caller.actor.id, "ad": caller.actor.display, "at": at})
    r, _ = _report_row(session, caller, rid)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="report",
                 entity_id=rid, after={"definition": f"{d.key} v{d.version}", "title": r.title,
                                       "parameters": values}, context=caller.context)
    outbox(session, caller.org_id, "report", _report_payload(r, d, caller.actor.id, at))
    return _read_report(session, r, d)


def _open_for_change(r: ReportRow) -> None:
    if r.status == "finalized":
        raise Conflict("the report is finalized and locked: nothing changes it any more")
    if r.status == "in_review":
        raise Conflict("the report is in review: it changes no more unless the review sends it back")


def update_report(session: Session, caller: Caller, report_id: uuid.UUID | str, data: ReportUpdate) -> ReportRead:
    r, d = _report_row(session, caller, report_id)
    _open_for_change(r)
    if r.author_id != caller.actor.id:
        raise Forbidden("only the report's author edits it")
    values = r.parameters if data.parameters is None else \
        params.resolve([ParameterSpec(**p) for p in d.parameters], data.parameters)
    at = _now()
    session.execute(text("UPDATE reports SET title = :t, parameters = CAST(:p AS jsonb), updated_at = :at,"
                         " status = 'updated', execution_id = CASE WHEN :same THEN execution_id END,"
                         " revision = revision + 1 WHERE id = :i"),
                    {"t": data.title or r.title, "p": json.dumps(values), "at": at, "i": r.id,
                     "same": values == r.parameters})
    new, _ = _report_row(session, caller, r.id)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="update", entity_type="report",
                 entity_id=r.id, before={"title": r.title, "parameters": r.parameters},
                 after={"title": new.title, "parameters": new.parameters}, reason=data.reason, context=caller.context)
    outbox(session, caller.org_id, "report", _report_payload(new, d, caller.actor.id, at))
    return _read_report(session, new, d)


# ---------------------------------------------------------------- executions


@dataclass(frozen=True)
class Plan:
    """What one execution runs: the definition version, its checked parameters, the SQL with them bound, and the
    Delta versions to read (a reproduction) or none (now)."""

    definition: DefinitionRow
    report_id: uuid.UUID | None
    parameters: dict[str, Any]
    sql: str
    pinned: dict[str, int] | None
    purpose: str
    expected_sha256: str | None = None


def plan_execution(session: Session, caller: Caller, report_id: uuid.UUID | str) -> Plan:
    r, d = _report_row(session, caller, report_id)
    _open_for_change(r)
    specs = [ParameterSpec(**p) for p in d.parameters]
    values = params.resolve(specs, r.parameters)
    return Plan(d, r.id, values, params.bind(d.sql, specs, values) if d.source == "lake" else "", None, "execute")


def plan_reproduction(session: Session, caller: Caller, report_id: uuid.UUID | str) -> Plan:
    r, d = _report_row(session, caller, report_id)
    if r.status != "finalized" or r.execution_id is None:
        raise Conflict("only a finalized report is reproduced (it pins the table versions it read)")
    e = _execution(session, caller, r.execution_id)
    specs = [ParameterSpec(**p) for p in d.parameters]
    return Plan(d, r.id, dict(e.parameters), params.bind(d.sql, specs, e.parameters) if d.source == "lake" else "",
                dict(e.table_versions), "reproduce", e.result_sha256)


def run_record_result(session: Session, caller: Caller, plan: Plan) -> tuple[pa.Table, float]:
    """A run-record definition's rows, read from the operational database in the caller's organization."""
    if not caller.can(Permission.runs_read):
        raise Forbidden(f"your role ({caller.role}) may not read runs ({Permission.runs_read}): the run record is "
                        "the record of a run")
    started = dt.datetime.now(dt.UTC)
    run_id = plan.parameters.get("run_id")
    try:
        rec = run_record.build(session, str(run_id))
    except NotFound as exc:
        raise Invalid(exc.message, reasons=[f"parameters.run_id: no run {run_id} in this organization"]) from None
    return run_record.as_table(rec), (dt.datetime.now(dt.UTC) - started).total_seconds() * 1000


def result_key(org_id: uuid.UUID | str, sha: str) -> str:
    return f"reports/{org_id}/{sha}.parquet"


def record_execution(session: Session, objects: ObjectStore, caller: Caller, plan: Plan, table: pa.Table,
                     versions: dict[str, int], duration_ms: float) -> tuple[ExecutionRead, pa.Table]:
    """Store the rows (content-addressed Parquet), record the execution and its audit entry; the report moves to
    `updated` with this execution as its latest (not for a reproduction)."""
    data = exports.result_bytes(table)
    sha = exports.sha256(data)
    key = result_key(caller.org_id, sha)
    objects.put_once(key, io.BytesIO(data))
    eid, at = uuid.uuid4(), _now()
    d = plan.definition
    session.execute(text(
        "INSERT INTO report_executions (id, org_id, definition_id, report_id, purpose, parameters, table_versions,"
        " row_count, duration_ms, result_sha256, result_key, executed_by, executed_by_display, executed_at) VALUES"
        " (:id, :o, :d, :r, :p, CAST(:pa AS jsonb), CAST(:tv AS jsonb), :n, :ms, :sha, :k, :by, :byd, :at)"),
        {"id": eid, "o": caller.org_id, "d": d.id, "r": plan.report_id, "p": plan.purpose,
         "pa": json.dumps(plan.parameters), "tv": json.dumps(versions), "n": table.num_rows, "ms": duration_ms,
         "sha": sha, "k": key, "by": caller.actor.id, "byd": caller.actor.display, "at": at})
    if plan.report_id is not None and plan.purpose == "execute":
        session.execute(text("UPDATE reports SET status = 'updated', execution_id = :e, updated_at = :at,"
                             " revision = revision + 1 WHERE id = :r"), {"e": eid, "at": at, "r": plan.report_id})
    after = {"definition": f"{d.key} v{d.version}", "purpose": plan.purpose, "parameters": plan.parameters,
             "table_versions": versions, "rows": table.num_rows, "duration_ms": round(duration_ms, 3),
             "result_sha256": sha, "report_id": str(plan.report_id) if plan.report_id else None}
    if plan.expected_sha256 is not None:
        after["reproduces"] = sha == plan.expected_sha256
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="execute", entity_type="report_execution",
                 entity_id=eid, after=after, context=caller.context)
    outbox(session, caller.org_id, "report_execution", {
        "execution_id": str(eid), "org_id": str(caller.org_id), "definition_id": str(d.id), "definition_key": d.key,
        "definition_version": d.version, "report_id": str(plan.report_id) if plan.report_id else None,
        "purpose": plan.purpose, "parameters": plan.parameters, "table_versions": versions,
        "row_count": table.num_rows, "duration_ms": duration_ms, "result_sha256": sha, "executed_by": caller.actor.id,
        "executed_by_display": caller.actor.display, "executed_at": format_ts(at)})
    return _read_execution(_execution(session, caller, eid), d), table


def _execution(session: Session, caller: Caller, execution_id: uuid.UUID | str) -> ExecutionRow:
    eid = _uuid(execution_id, "execution")
    row = session.execute(text(f"SELECT {_EXE} FROM report_executions e WHERE e.id = :i"), {"i": eid}).first()
    if row is None:
        raise NotFound(f"no execution {execution_id}")
    e = from_row(ExecutionRow, row)
    try:
        _definition(session, caller, e.definition_id)
    except NotFound:
        raise NotFound(f"no execution {execution_id}") from None
    return e


def _read_execution(e: ExecutionRow, d: DefinitionRow) -> ExecutionRead:
    return ExecutionRead(id=e.id, definition_id=d.id, definition_key=d.key, definition_version=d.version,
                         report_id=e.report_id, purpose=e.purpose, parameters=e.parameters,  # type: ignore[arg-type]
                         table_versions=e.table_versions, row_count=e.row_count, duration_ms=e.duration_ms,
                         result_sha256=e.result_sha256, executed_by=e.executed_by,
                         executed_by_display=e.executed_by_display, executed_at=e.executed_at)


def get_execution(session: Session, caller: Caller, execution_id: uuid.UUID | str) -> ExecutionRead:
    e = _execution(session, caller, execution_id)
    return _read_execution(e, _definition(session, caller, e.definition_id))


def list_executions(session: Session, caller: Caller, report_id: uuid.UUID | str) -> list[ExecutionRead]:
    r, d = _report_row(session, caller, report_id)
    rows = session.execute(text(f"SELECT {_EXE} FROM report_executions e WHERE e.report_id = :r"
                                " ORDER BY e.executed_at DESC LIMIT 200"), {"r": r.id}).all()
    return [_read_execution(from_row(ExecutionRow, x), d) for x in rows]


def load_result(objects: ObjectStore, e: ExecutionRow | ExecutionRead, org_id: uuid.UUID | str) -> pa.Table:
    try:
        with objects.open(result_key(org_id, e.result_sha256)) as f:
            data = f.read()
    except ObjectMissing:
        raise Unavailable(f"the stored result of execution {e.id} is missing from the object store") from None
    if exports.sha256(data) != e.result_sha256:
        raise Unavailable(f"the stored result of execution {e.id} does not match its hash")
    return exports.read_result(data)


# ---------------------------------------------------------------- review and finalize


def submit_for_review(session: Session, caller: Caller, report_id: uuid.UUID | str, reason: str | None
                      ) -> ReportRead:
    r, d = _report_row(session, caller, report_id)
    _open_for_change(r)
    if r.execution_id is None:
        raise Conflict("execute the report before submitting it for review: a review is of an execution's rows")
    at = _now()
    session.execute(text("UPDATE reports SET status = 'in_review', submitted_at = :at, updated_at = :at,"
                         " revision = revision + 1 WHERE id = :i"), {"at": at, "i": r.id})
    new, _ = _report_row(session, caller, r.id)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="review", entity_type="report",
                 entity_id=r.id, before={"status": r.status}, after={"status": "in_review",
                                                                      "execution_id": str(r.execution_id)},
                 reason=reason, context=caller.context)
    outbox(session, caller.org_id, "report", _report_payload(new, d, caller.actor.id, at))
    return _read_report(session, new, d)


def content_of(d: DefinitionRow, e: ExecutionRow, title: str) -> dict[str, Any]:
    """What a finalize signs: the definition version, the parameters, the table versions and the result's hash."""
    return {"report_definition": {"id": str(d.id), "key": d.key, "version": d.version,
                                  "sql_sha256": hashlib.sha256(d.sql.encode()).hexdigest()},
            "title": title, "parameters": e.parameters, "table_versions": e.table_versions,
            "execution_id": str(e.id), "row_count": e.row_count, "result_sha256": e.result_sha256}


def content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def context_pairs(d: DefinitionRow, e: ExecutionRow | ExecutionRead) -> list[tuple[str, str]]:
    return [("Definition", f"{d.title} ({d.key} v{d.version})"),
            ("Parameters", json.dumps(e.parameters, sort_keys=True) if e.parameters else "none"),
            ("Table versions", ", ".join(f"{k}@v{v}" for k, v in sorted(e.table_versions.items()))
             or ("operational database" if d.source == "run_record" else "none")),
            ("Executed", f"{format_ts(e.executed_at)} by {e.executed_by_display}"),
            ("Rows", str(e.row_count)), ("Result SHA-256", e.result_sha256)]


def render_pdf(d: DefinitionRow, e: ExecutionRow | ExecutionRead, table: pa.Table, title: str,
               signature: Sequence[tuple[str, str]] | None = None) -> bytes:
    if d.source == "run_record":
        entries = run_record.entries_of(table)
        run_id = str(e.parameters.get("run_id", ""))
        head = [("Run", run_id)] + [(x.item, x.value) for x in entries if x.section == "run"][:1]
        return render.run_record_document(head, [x for x in entries if x.section != "run"],
                                          context=[*context_pairs(d, e), *(signature or [])], created=e.executed_at)
    layout = Layout(**(d.layout or {}))
    headings = [(c.name, f"{c.label or c.name}" + (f" ({c.unit})" if c.unit else "")) for c in layout.columns]
    return render.report_document(title, context_pairs(d, e), table, columns=headings or None,
                                  chart=render.chart_png(d.chart, table), chart_wanted=d.chart is not None,
                                  max_rows=layout.max_rows_in_pdf, signature=signature, created=e.executed_at)


def finalize(session: Session, objects: ObjectStore, caller: Caller, report_id: uuid.UUID | str,
             signature: esign.SignatureInput, limits: LoginLimits) -> ReportRead:
    """The reviewer's signature over the report's content hash; PDF stored; the report locked."""
    r, d = _report_row(session, caller, report_id)
    if r.status == "finalized":
        raise Conflict("the report is finalized already")
    if r.status != "in_review" or r.execution_id is None:
        raise Conflict("submit the report for review first: only a report in review is finalized")
    if caller.actor.id == r.author_id:
        raise Forbidden("the reviewer who finalizes a report cannot be its author")
    e = _execution(session, caller, r.execution_id)
    content = content_of(d, e, r.title)
    chash = content_hash(content)
    sig = esign.verify(session, caller, signature, entity_type="report", entity_id=str(r.id), content_hash=chash,
                       limits=limits)
    table = load_result(objects, e, caller.org_id)
    pdf = render_pdf(d, e, table, r.title, signature=[
        ("Signed by", sig.signer_name), ("Meaning", sig.meaning.value), ("Reason", sig.reason or ""),
        ("Signed at", format_ts(sig.signed_at)), ("Content SHA-256", chash)])
    pdf_sha = exports.sha256(pdf)
    pdf_key = f"reports/{caller.org_id}/{pdf_sha}.pdf"
    objects.put_once(pdf_key, io.BytesIO(pdf))
    esign.record(session, sig, org_id=caller.org_id, actor=caller.actor, context=caller.context)
    at = _now()
    session.execute(text(
        "UPDATE reports SET status = 'finalized', finalized_at = :at, finalized_by = :by, signature_id = :s,"
        " content_hash = :h, pdf_sha256 = :ps, pdf_key = :pk, updated_at = :at, revision = revision + 1"
        " WHERE id = :i"), {"at": at, "by": caller.actor.id, "s": sig.id, "h": chash, "ps": pdf_sha, "pk": pdf_key,
                            "i": r.id})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="finalize", entity_type="report",
                 entity_id=r.id, before={"status": r.status},
                 after={"status": "finalized", "content_hash": chash, "content": content, "pdf_sha256": pdf_sha,
                        "signature_id": str(sig.id), "meaning": sig.meaning.value},
                 reason=signature.reason, context=caller.context)
    new, _ = _report_row(session, caller, r.id)
    outbox(session, caller.org_id, "report", _report_payload(new, d, caller.actor.id, at))
    return _read_report(session, new, d)


# ---------------------------------------------------------------- exports


@dataclass(frozen=True)
class Export:
    data: bytes
    media_type: str
    filename: str
    record: dict[str, Any]


def export(session: Session, objects: ObjectStore, caller: Caller, execution_id: uuid.UUID | str,
           fmt: ExportFormat) -> Export:
    """An execution's rows as a file with its context (a finalized report's PDF for `pdf`); on record."""
    e = _execution(session, caller, execution_id)
    d = _definition(session, caller, e.definition_id)
    at = _now()
    context: dict[str, Any] = {
        "definition": {"id": str(d.id), "key": d.key, "version": d.version, "title": d.title},
        "execution_id": str(e.id), "parameters": e.parameters, "table_versions": e.table_versions,
        "executed_by": e.executed_by_display, "executed_at": format_ts(e.executed_at), "row_count": e.row_count,
        "result_sha256": e.result_sha256, "exported_by": caller.actor.display, "exported_at": format_ts(at)}
    action = "export"
    if fmt == "pdf":
        rep = session.execute(text("SELECT id, pdf_key, pdf_sha256 FROM reports WHERE execution_id = :e AND"
                                   " status = 'finalized'"), {"e": e.id}).first()
        if rep is None:
            raise Conflict("a PDF is kept for a finalized report: this execution is not one")
        try:
            with objects.open(rep.pdf_key) as f:
                data = f.read()
        except ObjectMissing:
            raise Unavailable("the finalized report's PDF is missing from the object store") from None
        action = "download"
        context["report_id"] = str(rep.id)
    else:
        table = load_result(objects, e, caller.org_id)
        if fmt == "csv":
            data = exports.to_csv(table, context)
        elif fmt == "jsonl":
            data = exports.to_jsonl(table, context)
        elif fmt == "parquet":
            data = exports.to_parquet(table, context)
        else:
            data = exports.to_xlsx(table, context, d.title)
    sha = exports.sha256(data)
    xid = uuid.uuid4()
    session.execute(text(
        "INSERT INTO report_exports (id, org_id, execution_id, report_id, format, sha256, size_bytes, exported_by,"
        " exported_by_display, exported_at) VALUES (:id, :o, :e, :r, :f, :sha, :n, :by, :byd, :at)"),
        {"id": xid, "o": caller.org_id, "e": e.id, "r": e.report_id, "f": fmt, "sha": sha, "n": len(data),
         "by": caller.actor.id, "byd": caller.actor.display, "at": at})
    record = {"export_id": str(xid), "execution_id": str(e.id), "format": fmt, "sha256": sha, "size_bytes": len(data),
              "definition": f"{d.key} v{d.version}", "table_versions": e.table_versions}
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action=action, entity_type="report_export",
                 entity_id=xid, after=record, context=caller.context)
    outbox(session, caller.org_id, "report_export", {
        "export_id": str(xid), "org_id": str(caller.org_id), "execution_id": str(e.id),
        "report_id": str(e.report_id) if e.report_id else None, "format": fmt, "sha256": sha,
        "size_bytes": len(data), "exported_by": caller.actor.id, "exported_by_display": caller.actor.display,
        "exported_at": format_ts(at)})
    stamp = e.executed_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Export(data, exports.MEDIA_TYPES[fmt], f"{d.key}-v{d.version}-{stamp}.{fmt}", record)


# ---------------------------------------------------------------- the lake's retention


def pinned_versions(session: Session) -> dict[str, int]:
    """table → the oldest Delta version a finalized report read (platform services, owner connection: every
    organization's reports pin the shared tables)."""
    return {r.table_name: int(r.version) for r in session.execute(
        text("SELECT table_name, version FROM report_pinned_versions")).all()}
