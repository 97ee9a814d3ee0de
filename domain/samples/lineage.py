"""Lineage: a sample derives from one or more parents by a named operation, recorded with the run, step and task
that did it. The graph is acyclic: an edge whose child is already an ancestor of its parent is refused, checked in
the database (a recursive query) inside the writing transaction. Edge writes of one organization take one
transaction-scoped advisory lock first, so two concurrent links cannot each pass the check and close a cycle
together; reads never wait on it.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.errors import Conflict, Invalid, NotFound
from domain.roles import Actor, Caller
from domain.runs import records
from domain.samples import service
from domain.samples.models import (
    MAX_DEPTH,
    ChildSpec,
    Derivation,
    Lineage,
    LineageEdge,
    LineageNode,
    ParentLink,
    Provenance,
    SampleCreate,
)
from domain.samples.rows import SampleRow

MAX_EDGES = 5_000  # one answer's edges; a wider graph answers `truncated` (ask a smaller depth)

_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended('lineage:' || CAST(:o AS text), 0))")

# Is :child among the ancestors of any of :parents (or one of them)? Walks up from the parents.
_CYCLE = text(
    "WITH RECURSIVE up(id) AS (SELECT unnest(CAST(:parents AS uuid[]))"
    " UNION SELECT e.parent_id FROM lineage_edges e JOIN up ON e.child_id = up.id)"
    " SELECT EXISTS (SELECT 1 FROM up WHERE id = :child)"
)

# The graph around :root in one statement: the root's row, then one row per edge reached (at its least depth) with
# the node it leads to. `near`/`far` are the edge's columns towards and away from the root. The walk carries the
# edges' columns, so nothing is read twice; UNION (not ALL) keeps one row per edge and depth however many paths
# lead to it, so a graph of many diamonds costs edges × depth at most, never paths.
_GRAPH = """
WITH RECURSIVE walk(parent_id, child_id, operation, run_id, step_key, task_id, recorded_at, depth) AS (
  SELECT e.parent_id, e.child_id, e.operation, e.run_id, e.step_key, e.task_id, e.recorded_at, 1
  FROM lineage_edges e WHERE e.{near} = :root
  UNION
  SELECT e.parent_id, e.child_id, e.operation, e.run_id, e.step_key, e.task_id, e.recorded_at, w.depth + 1
  FROM walk w JOIN lineage_edges e ON e.{near} = w.{far} WHERE w.depth < :depth
), reached AS (
  SELECT DISTINCT ON (parent_id, child_id) * FROM walk ORDER BY parent_id, child_id, depth LIMIT :cap
)
SELECT s.id, s.code, s.sample_type, s.status, 0 AS depth, NULL::uuid AS parent_id, NULL::uuid AS child_id,
       NULL AS operation, NULL::uuid AS run_id, NULL AS step_key, NULL::uuid AS task_id,
       NULL::timestamptz AS recorded_at
FROM samples s WHERE s.id = :root
UNION ALL
SELECT s.id, s.code, s.sample_type, s.status, r.depth, r.parent_id, r.child_id, r.operation, r.run_id, r.step_key,
       r.task_id, r.recorded_at
FROM reached r JOIN samples s ON s.id = r.{far}
"""
GRAPH = {"ancestors": text(_GRAPH.format(near="child_id", far="parent_id")),
         "descendants": text(_GRAPH.format(near="parent_id", far="child_id"))}


def edge_payload(org_id: uuid.UUID, parent: uuid.UUID, child: uuid.UUID, operation: str, prov: Provenance,
                 actor: Actor, at: object) -> dict[str, object]:
    """The `lineage_edge` outbox payload."""
    return {"org_id": org_id, "parent_id": parent, "child_id": child, "operation": operation, "run_id": prov.run_id,
            "step_key": prov.step_key, "task_id": prov.task_id, "recorded_at": at, "recorded_by": actor.id}


def _usable_parents(session: Session, parent_ids: list[uuid.UUID]) -> list[SampleRow]:
    if len(set(parent_ids)) != len(parent_ids):
        raise Invalid("a parent is listed twice", reasons=["parent_ids: each parent once"])
    parents = []
    for pid in parent_ids:
        row = service.find(session, str(pid))
        if row is None:
            raise NotFound(f"no sample {pid}")
        parents.append(row)
    problems = [why for p in parents if (why := service.unusable_reason(p))]
    if problems:
        raise Invalid("a parent cannot be used", reasons=problems)
    return parents


def _check_provenance(session: Session, prov: Provenance) -> None:
    if prov.run_id is not None and session.execute(text("SELECT 1 FROM runs WHERE id = :r"),
                                                   {"r": prov.run_id}).first() is None:
        raise Invalid("no such run", reasons=[f"run_id: no run {prov.run_id} in this organization"])
    if prov.task_id is not None and session.execute(
            text("SELECT 1 FROM tasks WHERE id = :t AND (CAST(:r AS uuid) IS NULL OR run_id = :r)"),
            {"t": prov.task_id, "r": prov.run_id}).first() is None:
        raise Invalid("no such task", reasons=[f"task_id: no task {prov.task_id} of that run"])


def link_edges(session: Session, actor: Actor, org_id: uuid.UUID, child: uuid.UUID, parents: list[uuid.UUID],
               operation: str, prov: Provenance) -> list[uuid.UUID]:
    """Record child ← each parent (skipping edges already there); Conflict if one would close a cycle.
    The parents that were linked now."""
    session.execute(_LOCK, {"o": str(org_id)})
    if child in parents:
        raise Conflict(f"sample {child} cannot derive from itself")
    if session.execute(_CYCLE, {"parents": parents, "child": child}).scalar_one():
        raise Conflict(f"sample {child} is already an ancestor of a parent: the link would make a cycle")
    at = records.now()
    linked = []
    for parent in parents:
        new = session.execute(
            text("INSERT INTO lineage_edges (org_id, parent_id, child_id, operation, run_id, step_key, task_id,"
                 " recorded_at, recorded_by) VALUES (:o, :p, :c, :op, :r, :s, :t, :at, :by)"
                 " ON CONFLICT (parent_id, child_id) DO NOTHING RETURNING parent_id"),
            {"o": org_id, "p": parent, "c": child, "op": operation, "r": prov.run_id, "s": prov.step_key,
             "t": prov.task_id, "at": at, "by": actor.id}).first()
        if new is not None:
            linked.append(parent)
            records.outbox(session, org_id, "lineage_edge",
                           edge_payload(org_id, parent, child, operation, prov, actor, at))
    return linked


def link(session: Session, caller: Caller, child_id: uuid.UUID, data: ParentLink) -> Lineage:
    """Record that an existing sample derives from these parents; its ancestors as they are now."""
    child = service.row_of(session, child_id, lock=True)
    if child.archived_at is not None:
        raise Conflict(f"sample {child.code} is archived: restore it first")
    parents = _usable_parents(session, data.parent_ids)
    _check_provenance(session, data)
    linked = link_edges(session, caller.actor, caller.org_id, child.id, [p.id for p in parents], data.operation, data)
    if linked:
        audit.record(session, org_id=caller.org_id, actor=caller.actor, action="derive", entity_type="sample",
                     entity_id=child.id, reason=data.reason, context=caller.context,
                     after={"parents": [str(p) for p in linked], "operation": data.operation,
                            "run_id": records.jsonable(data.run_id), "step_key": data.step_key,
                            "task_id": records.jsonable(data.task_id)})
    return graph(session, child.id, "ancestors", 1)


def derive(session: Session, caller: Caller, data: Derivation) -> tuple[list[uuid.UUID], bool]:
    """New children of the parents by the operation; (their ids, whether made now: False for a retried request)."""
    request_id = caller.context.request_id or str(uuid.uuid4())
    specs: list[ChildSpec | None] = [*data.children] or [None] * (data.count or 0)
    ids = [uuid.uuid5(caller.org_id, f"derive:{request_id}:{i}") for i in range(len(specs))]
    if session.execute(text("SELECT 1 FROM samples WHERE id = :i"), {"i": ids[0]}).first() is not None:
        return ids, False
    parents = _usable_parents(session, data.parent_ids)
    _check_provenance(session, data)
    first = parents[0]
    for i, (child_id, spec) in enumerate(zip(ids, specs, strict=True)):
        create = SampleCreate(
            sample_type=(spec.sample_type if spec and spec.sample_type else first.sample_type),  # type: ignore[arg-type]
            name=spec.name if spec and spec.name else f"{first.code} {data.operation} {i + 1}"[:200],
            location_id=spec.location_id if spec and spec.location_id else first.location_id,
            batch_id=spec.batch_id if spec else None, attributes=spec.attributes if spec else {})
        owner = (caller.user_id, caller.actor.display if caller.user_id else None)
        row = service.insert(session, caller.actor, caller.org_id, child_id, create, owner=owner,
                             run_id=data.run_id, step_key=data.step_key)
        link_edges(session, caller.actor, caller.org_id, child_id, [p.id for p in parents], data.operation, data)
        audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="sample",
                     entity_id=child_id, reason=data.reason, context=caller.context,
                     after={**service._view(row), "parents": [str(p.id) for p in parents],
                            "operation": data.operation, "task_id": records.jsonable(data.task_id)})
    return ids, True


def graph(session: Session, root: uuid.UUID, direction: Literal["ancestors", "descendants"],
          depth: int = MAX_DEPTH) -> Lineage:
    """The sample's ancestors or descendants up to `depth` generations: nodes (code, type, status, least depth)
    and edges (operation, run, step, task), from one recursive query."""
    rows = session.execute(GRAPH[direction], {"root": root, "depth": depth, "cap": MAX_EDGES}).all()
    if not any(r.depth == 0 for r in rows):
        raise NotFound(f"no sample {root}")
    nodes: dict[uuid.UUID, LineageNode] = {}
    edges = []
    for r in rows:
        if r.id not in nodes or nodes[r.id].depth > r.depth:
            nodes[r.id] = LineageNode(id=r.id, code=r.code, sample_type=r.sample_type, status=r.status, depth=r.depth)
        if r.parent_id is not None:
            edges.append(LineageEdge(parent_id=r.parent_id, child_id=r.child_id, operation=r.operation,
                                     run_id=r.run_id, step_key=r.step_key, task_id=r.task_id,
                                     recorded_at=r.recorded_at))
    return Lineage(root=root, direction=direction, depth=depth, nodes=list(nodes.values()), edges=edges,
                   truncated=len(edges) >= MAX_EDGES)
