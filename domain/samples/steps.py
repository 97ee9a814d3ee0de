"""What a completed step does to material, declared in the protocol (`produces`, `consumes`, `uses`;
domain/protocols): it creates N child samples derived from the samples its form names (in the batch a `batch_ref`
field names, if the step says so), with lineage edges recorded with the run, step and task; it marks the samples it
used up consumed, and those it works with (`uses`) in_use. All of it in the completion's own transaction
(domain/tasks/service.py `complete`), so a step is completed with its material or not at all.

`uses` is for material a rework round may name again: an approval rejected back to an earlier step repeats the
forms that named it, and a consumed sample would be refused there. In use, it stays usable for the whole run; the
run's completion (`finish`, in the completion's transaction) marks it consumed, naming the run.

Child ids derive from the task id: a retried completion activity creates nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.protocols.plan import TaskNode
from domain.roles import Actor
from domain.runs.messages import RunRef
from domain.samples import batches, lineage, service
from domain.samples.models import MAX_PRODUCED, UNUSABLE, Provenance, SampleCreate


def _count(step: TaskNode, values: Mapping[str, object]) -> int:
    p = step.produces
    if p is None:
        return 0
    if p.count_field is None:
        return p.count or 1
    n = values.get(p.count_field)
    return n if isinstance(n, int) and not isinstance(n, bool) else 0


def problems(step: TaskNode, values: Mapping[str, object]) -> list[str]:
    """Why the submission cannot make what the step produces (e.g. too many plates), or nothing."""
    p = step.produces
    if p is None or p.count_field is None:
        return []
    n = values.get(p.count_field)
    if isinstance(n, int) and not isinstance(n, bool) and not 0 <= n <= MAX_PRODUCED:
        return [f"values.{p.count_field}: between 0 and {MAX_PRODUCED} samples per step"]
    return []


def child_id(task_id: str, i: int) -> uuid.UUID:
    return uuid.uuid5(uuid.UUID(task_id), f"produced:{i}")


def apply(session: Session, run: RunRef, *, task_id: str, step: TaskNode, values: Mapping[str, object],
          actor: Actor) -> dict[str, list[str]]:
    """Create what the step produces and consume what it uses up; the codes of both (for the step event)."""
    org_id = uuid.UUID(str(run.org_id))
    prov = Provenance(run_id=uuid.UUID(str(run.run_id)), step_key=step.key, task_id=uuid.UUID(task_id))
    produced: list[str] = []
    consumed: list[str] = []
    p = step.produces
    if p is not None:
        parents = [row for key in p.from_fields if isinstance(values.get(key), str)
                   and (row := service.find(session, str(values[key]))) is not None]
        parent_ids = list(dict.fromkeys(row.id for row in parents))
        person = actor.type == "user"
        holder = (uuid.UUID(actor.id) if person else None, actor.display if person else None)
        batch_ref = values.get(p.batch_field) if p.batch_field else None
        batch = batches.find(session, batch_ref.strip()) if isinstance(batch_ref, str) and batch_ref.strip() else None
        batch_id = batch.id if batch is not None else None
        for i in range(_count(step, values)):
            ident = child_id(task_id, i)
            if session.execute(text("SELECT 1 FROM samples WHERE id = :i"), {"i": ident}).first() is not None:
                continue  # made by this completion before
            name = f"{parents[0].code} {p.operation} {i + 1}" if parents else f"{step.key} {i + 1}"
            data = SampleCreate(sample_type=p.sample_type, name=name[:200],  # type: ignore[arg-type]
                                location_id=parents[0].location_id if parents else None, batch_id=batch_id)
            row = service.insert(session, actor, org_id, ident, data, owner=holder, run_id=prov.run_id,
                                 step_key=step.key)
            if parent_ids:
                lineage.link_edges(session, actor, org_id, ident, parent_ids, p.operation, prov)
            audit.record(session, org_id=org_id, actor=actor, action="create", entity_type="sample", entity_id=ident,
                         reason=f"produced by step '{step.key}' of run {run.run_id}",
                         after={**service._view(row), "parents": [str(x) for x in parent_ids],
                                "operation": p.operation, "task_id": task_id})
            produced.append(row.code)
    for key in step.consumes:
        ref = values.get(key)
        sample = service.find(session, ref) if isinstance(ref, str) else None
        if sample is None or sample.status == "consumed":
            continue
        locked = service.row_of(session, sample.id, lock=True)
        service.set_status(session, actor, org_id, locked, "consumed",
                           f"used up by step '{step.key}' of run {run.run_id}")
        consumed.append(locked.code)
    in_use: list[str] = []
    for key in step.uses:
        ref = values.get(key)
        sample = service.find(session, ref.strip()) if isinstance(ref, str) and ref.strip() else None
        if sample is None or sample.status in UNUSABLE:
            continue  # refused before (form_problems), or used up by this very completion
        if sample.status == "received":
            locked = service.row_of(session, sample.id, lock=True)
            service.set_status(session, actor, org_id, locked, "in_use",
                               f"in use by run {run.run_id} (step '{step.key}') until it completes")
        in_use.append(sample.code)
    return {"produced": produced, "consumed": consumed, "in_use": list(dict.fromkeys(in_use))}


def finish(session: Session, run: RunRef, actor: Actor) -> list[str]:
    """The run completed: the samples its steps had in use (`uses`, recorded in their completion events) are used
    up now. Those consumed, disposed or contaminated meanwhile are left as they are. The codes marked consumed."""
    org_id = uuid.UUID(str(run.org_id))
    codes = session.execute(
        text("SELECT DISTINCT jsonb_array_elements_text(detail->'in_use') FROM step_events WHERE run_id = :r"
             " AND event = 'completed' AND jsonb_typeof(detail->'in_use') = 'array'"), {"r": str(run.run_id)}
    ).scalars().all()
    done: list[str] = []
    for code in sorted(codes):
        sample = service.find(session, code)
        if sample is None or sample.status in UNUSABLE or sample.archived_at is not None:
            continue
        locked = service.row_of(session, sample.id, lock=True)
        service.set_status(session, actor, org_id, locked, "consumed", f"used up by run {run.run_id} (completed)")
        done.append(locked.code)
    return done
