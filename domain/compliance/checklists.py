"""Frameworks and their scoped checklist items, and how they attach to a run's tasks.

A checklist item's scope says which steps it applies to: a tag expression over the run's compliance surface
(any / all / none of), the run having a sample or batch subject, the protocol, the step's kind or key, the role
that does it. `extra_checklist_items` is the completion gate's and the inbox's hook (domain/tasks/service.py):
the items whose scope matches now, so a tag that appears mid-run is required at once. Which items were attached to
which open task is remembered (`compliance_requirements`): `sync_task` puts each one attached or lifted on
record, by the system, when a task opens and whenever the surface of its run changes (`sync_runs`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.compliance import surface as surfaces
from domain.compliance.models import ChecklistItemCreate, ChecklistItemRead, FrameworkCreate, FrameworkRead, Scope
from domain.errors import Invalid, NotFound, conflict_if_taken
from domain.protocols.plan import ChecklistItem, TaskNode
from domain.roles import SYSTEM_ACTOR, Caller
from domain.rows import from_row
from domain.runs.rows import RUN_COLUMNS, RunRow

PREFIX = "compliance_"  # a task's checklist key for an item: compliance_<item key>


def matches(scope: Scope, tags: set[str], *, protocol_key: str, step_key: str, step_kind: str,
            roles: Iterable[str], subject_types: set[str]) -> bool:
    """Whether the item applies to this step of a run whose surface carries `tags`."""
    if scope.any and not tags.intersection(scope.any):
        return False
    if scope.all and not tags.issuperset(scope.all):
        return False
    if scope.none and tags.intersection(scope.none):
        return False
    if scope.entity_type and scope.entity_type not in subject_types:
        return False
    if scope.protocol_key and scope.protocol_key != protocol_key:
        return False
    if scope.step_kind and scope.step_kind != step_kind:
        return False
    if scope.step_key and scope.step_key != step_key:
        return False
    return not (scope.role and scope.role not in set(roles))


# ---------------------------------------------------------------- frameworks and items


def _item_read(r: object) -> ChecklistItemRead:
    return ChecklistItemRead(id=r.id, framework_id=r.framework_id, key=r.key, text=r.text,  # type: ignore[attr-defined]
                             scope=Scope.model_validate(r.scope), archived=r.archived_at is not None)  # type: ignore[attr-defined]


_ITEMS = ("SELECT i.id, i.framework_id, i.key, i.text, i.scope, i.archived_at, f.name AS framework"
          " FROM compliance_checklist_items i JOIN compliance_frameworks f ON f.id = i.framework_id"
          " WHERE i.org_id = current_org()")


def create_framework(session: Session, caller: Caller, data: FrameworkCreate) -> FrameworkRead:
    ident = uuid.uuid4()
    with conflict_if_taken(session, f"framework '{data.key}' exists already"):
        session.execute(text(
            "INSERT INTO compliance_frameworks (id, org_id, key, name, description, created_at, created_by)"
            " VALUES (:i, :o, :k, :n, :d, now(), :by)"),
            {"i": ident, "o": caller.org_id, "k": data.key, "n": data.name, "d": data.description,
             "by": caller.actor.id})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create",
                 entity_type="compliance_framework", entity_id=ident, after=data.model_dump(),
                 context=caller.context)
    return get_framework(session, ident)


def list_frameworks(session: Session) -> list[FrameworkRead]:
    rows = session.execute(text("SELECT id FROM compliance_frameworks WHERE org_id = current_org() ORDER BY key"))
    return [get_framework(session, r.id) for r in rows.all()]


def get_framework(session: Session, framework_id: uuid.UUID) -> FrameworkRead:
    f = session.execute(text("SELECT id, key, name, description FROM compliance_frameworks"
                             " WHERE org_id = current_org() AND id = :i"), {"i": framework_id}).first()
    if f is None:
        raise NotFound(f"no framework {framework_id} in this organization")
    items = session.execute(text(_ITEMS + " AND i.framework_id = :f ORDER BY i.key"), {"f": framework_id}).all()
    return FrameworkRead(id=f.id, key=f.key, name=f.name, description=f.description,
                         items=[_item_read(i) for i in items])


def add_item(session: Session, caller: Caller, framework_id: uuid.UUID, data: ChecklistItemCreate
             ) -> tuple[ChecklistItemRead, list[uuid.UUID]]:
    """A new item of the framework; (it, the open runs whose tasks it may now attach to)."""
    get_framework(session, framework_id)
    known = {r.key for r in session.execute(text("SELECT key FROM compliance_tags WHERE org_id = current_org()"))}
    unknown = sorted({*data.scope.any, *data.scope.all, *data.scope.none} - known)
    if unknown:
        raise Invalid("unknown tags in the scope", reasons=[f"scope: no tag '{t}' in this organization"
                                                            for t in unknown])
    ident = uuid.uuid4()
    with conflict_if_taken(session, f"checklist item '{data.key}' exists already"):
        session.execute(text(
            "INSERT INTO compliance_checklist_items (id, org_id, framework_id, key, text, scope, created_at,"
            " created_by) VALUES (:i, :o, :f, :k, :t, CAST(:s AS jsonb), now(), :by)"),
            {"i": ident, "o": caller.org_id, "f": framework_id, "k": data.key, "t": data.text,
             "s": data.scope.model_dump_json(), "by": caller.actor.id})
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create",
                 entity_type="compliance_checklist_item", entity_id=ident,
                 after={**data.model_dump(mode="json"), "framework_id": str(framework_id)}, context=caller.context)
    row = session.execute(text(_ITEMS + " AND i.id = :i"), {"i": ident}).one()
    runs = [r.id for r in session.execute(text(
        "SELECT id FROM runs WHERE org_id = current_org() AND status IN ('running', 'on_hold')")).all()]
    sync_runs(session, runs, why=f"checklist item '{data.key}' added")
    return _item_read(row), runs


# ---------------------------------------------------------------- attaching to tasks


def _active_items(session: Session) -> list[object]:
    cache = session.info.setdefault("compliance_items", None)
    if cache is None:
        cache = session.info["compliance_items"] = session.execute(
            text(_ITEMS + " AND i.archived_at IS NULL ORDER BY i.key")).all()
    return list(cache)


def _surface(session: Session, run_id: uuid.UUID) -> surfaces.Surface:
    """The run's surface, once per transaction (the inbox asks for each open task of a run)."""
    cache: dict[uuid.UUID, surfaces.Surface] = session.info.setdefault("compliance_surfaces", {})
    if run_id not in cache:
        cache[run_id] = surfaces.of_run(session, run_id)
    return cache[run_id]


def forget(session: Session) -> None:
    """Drop this transaction's cached surfaces and items (after a change to them)."""
    session.info.pop("compliance_surfaces", None)
    session.info.pop("compliance_items", None)


def matching(session: Session, run: RunRow, step: TaskNode) -> list[tuple[object, str]]:
    """(item row, why) for each item whose scope matches the step of the run now."""
    items = _active_items(session)
    if not items:
        return []
    surface = _surface(session, run.id)
    tags = surface.keys(step.key)
    subject_types = {s.get("type", "") for s in run.subjects}
    out = []
    for item in items:
        scope = Scope.model_validate(item.scope)  # type: ignore[attr-defined]
        if matches(scope, tags, protocol_key=run.protocol_key, step_key=step.key, step_kind=step.kind,
                   roles=step.roles, subject_types=subject_types):
            hit = sorted(tags.intersection([*scope.any, *scope.all])) or sorted(tags)
            out.append((item, f"surface: {', '.join(hit) or 'any'} ({item.framework})"))  # type: ignore[attr-defined]
    return out


def extra_checklist_items(session: Session, run: RunRow, step: TaskNode) -> list[ChecklistItem]:
    """The compliance items the step must have confirmed, beyond its own: those whose scope matches now."""
    return [ChecklistItem(key=PREFIX + item.key, text=f"[{item.framework}] {item.text}")  # type: ignore[attr-defined]
            for item, _ in matching(session, run, step)]


def sync_task(session: Session, run: RunRow, task_id: uuid.UUID | str, step: TaskNode, why: str) -> list[str]:
    """Bring the task's remembered requirements in line with what matches now; each item attached or lifted is an
    audit entry by the system. The keys attached now."""
    now = {item.id: (item, reason) for item, reason in matching(session, run, step)}  # type: ignore[attr-defined]
    had = {r.item_id: r for r in session.execute(text(
        "SELECT r.item_id, i.key FROM compliance_requirements r JOIN compliance_checklist_items i ON i.id = r.item_id"
        " WHERE r.task_id = :t"), {"t": str(task_id)}).all()}
    at = dt.datetime.now(dt.UTC)
    attached = []
    for item_id, (item, reason) in now.items():
        if item_id in had:
            continue
        session.execute(text("INSERT INTO compliance_requirements (org_id, task_id, item_id, attached_at, why)"
                             " VALUES (:o, :t, :i, :at, :w) ON CONFLICT DO NOTHING"),
                        {"o": run.org_id, "t": str(task_id), "i": item_id, "at": at, "w": reason})
        attached.append(PREFIX + item.key)  # type: ignore[attr-defined]
        audit.record(session, org_id=run.org_id, actor=SYSTEM_ACTOR, action="attach_requirement", entity_type="task",
                     entity_id=str(task_id), reason=f"{why}: {reason}",
                     after={"item": PREFIX + item.key, "text": item.text, "run_id": str(run.id),  # type: ignore[attr-defined]
                            "step_key": step.key})
    for item_id, r in had.items():
        if item_id not in now:
            session.execute(text("DELETE FROM compliance_requirements WHERE task_id = :t AND item_id = :i"),
                            {"t": str(task_id), "i": item_id})
            audit.record(session, org_id=run.org_id, actor=SYSTEM_ACTOR, action="lift_requirement",
                         entity_type="task", entity_id=str(task_id), reason=f"{why}: no longer in scope",
                         before={"item": PREFIX + r.key}, after={"run_id": str(run.id), "step_key": step.key})
    return attached


def sync_runs(session: Session, run_ids: list[uuid.UUID], *, why: str) -> None:
    """After a change to the surface (a tag, a parent) or the items: every open task of these runs."""
    if not run_ids:
        return
    forget(session)
    runs = {r.id: from_row(RunRow, r) for r in session.execute(text(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": run_ids}).all()}
    tasks = session.execute(text(
        "SELECT id, run_id, spec FROM tasks WHERE run_id = ANY(CAST(:ids AS uuid[])) AND status = 'open'"
        " AND kind = 'task' ORDER BY opened_at, id"), {"ids": run_ids}).all()
    for t in tasks:
        sync_task(session, runs[t.run_id], t.id, TaskNode.model_validate(t.spec), why)
