"""The trace of a sample or batch, in time order: its own changes (audit log), every run on it and every step whose
form named it (`sample_ref` / `batch_ref`), each movement and hand-over, each lineage event, each evidence file.

A record is named in runs and forms by its id or its code: both are matched.
"""

from __future__ import annotations

import json
import uuid
from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.audit import service as audit_service
from domain.audit.rows import AUDIT_ROW_COLUMNS, AuditRow
from domain.canonical import parse_ts
from domain.rows import from_row
from domain.samples import batches, service
from domain.samples.models import Trace, TraceEntry

_OWN_ACTIONS = ("create", "update", "status", "archive", "restore")  # moves and links have entries of their own


def _audit(session: Session, org_id: uuid.UUID, kind: str, ident: uuid.UUID) -> list[TraceEntry]:
    audit_service.seal(session, str(org_id), wait=True)  # read what was just written
    rows = session.execute(
        text(f"SELECT {AUDIT_ROW_COLUMNS} FROM audit_log WHERE org_id = current_org()"
             " AND entity_type = :t AND entity_id = :i AND action = ANY(:a) ORDER BY seq"),
        {"t": kind, "i": str(ident), "a": list(_OWN_ACTIONS)}).all()
    out = []
    for r in rows:
        e = audit_service.entry_view(from_row(AuditRow, r))
        after = e["after"] if isinstance(e["after"], dict) else {}
        what = {"create": "registered", "update": "details corrected", "archive": "archived", "restore": "restored",
                "status": f"now {after.get('status')}"}[e["action"]]
        out.append(TraceEntry(at=parse_ts(e["occurred_at"]), kind="created" if e["action"] == "create" else "change",
                              summary=f"{kind} {what}" + (f" — {e['reason']}" if e["reason"] else ""),
                              actor=e["actor"]["display"], detail={"action": e["action"], "before": e["before"],
                                                                   "after": e["after"]}))
    return out


# The forms whose `sample_ref` / `batch_ref` fields named the record: through form_refs (migration 0028), one row
# per such value, by its btree index (org_id, ref_type, ref). Text equality is leakproof, so the index serves under
# row-level security too (a GIN index over the submissions' JSON would not be used as the application role).
FORMS_NAMING = text(
    "SELECT f.run_id, f.step_key, f.task_id, f.submitted_at, f.submitted_by_display, r.field_key AS field"
    " FROM form_refs r JOIN form_submissions f ON f.id = r.submission_id"
    " WHERE r.org_id = current_org() AND r.ref_type = :kind AND r.ref = ANY(:n)")


def _runs_and_steps(session: Session, kind: Literal["sample", "batch"], names: list[str]) -> list[TraceEntry]:
    subjects = [json.dumps([{"type": kind, "id": n}]) for n in names]
    runs = session.execute(
        text("SELECT id, protocol_key, protocol_version, launched_at, launched_by_display, status FROM runs"
             " WHERE org_id = current_org() AND subjects @> ANY(CAST(:s AS jsonb[]))"), {"s": subjects}).all()
    out = [TraceEntry(at=r.launched_at, kind="run", actor=r.launched_by_display, run_id=r.id,
                      summary=f"run of {r.protocol_key} v{r.protocol_version} launched on it (now {r.status})")
           for r in runs]
    if runs:
        events = session.execute(
            text("SELECT run_id, step_key, event, actor_display, occurred_at FROM step_events WHERE run_id = ANY(:r)"
                 " AND event <> 'run_started' ORDER BY occurred_at"), {"r": [r.id for r in runs]}).all()
        out += [TraceEntry(at=e.occurred_at, kind="step", actor=e.actor_display, run_id=e.run_id,
                           step_key=e.step_key or None,
                           summary=f"{e.event}" + (f" step '{e.step_key}'" if e.step_key else "")) for e in events]
    forms = session.execute(FORMS_NAMING, {"kind": kind, "n": names}).all()
    out += [TraceEntry(at=f.submitted_at, kind="step", actor=f.submitted_by_display, run_id=f.run_id,
                       step_key=f.step_key, summary=f"named in step '{f.step_key}' (field {f.field})",
                       detail={"task_id": str(f.task_id), "field": f.field}) for f in forms]
    return out


def _evidence(session: Session, kind: str, names: list[str]) -> list[TraceEntry]:
    rows = session.execute(
        text("SELECT l.linked_at, l.linked_by, l.detail, f.id, f.filename, f.sha256, f.content_type,"
             " f.uploaded_by_display FROM evidence_links l JOIN evidence_files f ON f.id = l.evidence_id"
             " WHERE l.org_id = current_org() AND l.target_type = :t AND l.target_id = ANY(:n)"),
        {"t": kind, "n": names}).all()
    return [TraceEntry(at=r.linked_at, kind="evidence", actor=r.uploaded_by_display,
                       summary=f"evidence file {r.filename} attached",
                       detail={"evidence_id": str(r.id), "sha256": r.sha256, "content_type": r.content_type,
                               "detail": r.detail}) for r in rows]


def sample_trace(session: Session, org_id: uuid.UUID, sample_id: uuid.UUID) -> Trace:
    row = service.row_of(session, sample_id)
    names = [str(row.id), row.code]
    entries = _audit(session, org_id, "sample", row.id) + _runs_and_steps(session, "sample", names)
    entries += _evidence(session, "sample", names)
    for m in session.execute(
            text("SELECT m.moved_at, m.moved_by_display, m.reason, m.run_id, m.step_key, m.to_holder_display,"
                 " l.code AS loc FROM sample_movements m LEFT JOIN registry_items l ON l.id = m.to_location_id"
                 " WHERE m.sample_id = :s"), {"s": row.id}):
        entries.append(TraceEntry(at=m.moved_at, kind="movement", actor=m.moved_by_display, run_id=m.run_id,
                                  step_key=m.step_key, summary=f"at {m.loc or 'no location'}, held by "
                                                               f"{m.to_holder_display or 'nobody'}"
                                                               + (f" — {m.reason}" if m.reason else "")))
    for e in session.execute(
            text("SELECT e.parent_id, e.child_id, e.operation, e.run_id, e.step_key, e.task_id, e.recorded_at,"
                 " p.code AS parent_code, c.code AS child_code FROM lineage_edges e"
                 " JOIN samples p ON p.id = e.parent_id JOIN samples c ON c.id = e.child_id"
                 " WHERE e.parent_id = :s OR e.child_id = :s"), {"s": row.id}):
        summary = (f"{e.child_code} made from it by {e.operation}" if e.parent_id == row.id
                   else f"derived from {e.parent_code} by {e.operation}")
        entries.append(TraceEntry(at=e.recorded_at, kind="lineage", actor=None, run_id=e.run_id, step_key=e.step_key,
                                  summary=summary, detail={"parent_id": str(e.parent_id), "child_id": str(e.child_id),
                                                           "task_id": str(e.task_id) if e.task_id else None}))
    entries.sort(key=lambda t: t.at)
    return Trace(target_type="sample", target_id=row.id, code=row.code, entries=entries)


def batch_trace(session: Session, org_id: uuid.UUID, batch_id: uuid.UUID) -> Trace:
    row = batches.row_of(session, batch_id)
    names = [str(row.id), row.code]
    entries = _audit(session, org_id, "batch", row.id) + _runs_and_steps(session, "batch", names)
    entries += _evidence(session, "batch", names)
    for s in session.execute(text("SELECT code, sample_type, created_at, created_in_run, created_in_step FROM samples"
                                  " WHERE batch_id = :b"), {"b": row.id}):
        entries.append(TraceEntry(at=s.created_at, kind="created", actor=None, run_id=s.created_in_run,
                                  step_key=s.created_in_step,
                                  summary=f"sample {s.code} ({s.sample_type}) in the batch"))
    entries.sort(key=lambda t: t.at)
    return Trace(target_type="batch", target_id=row.id, code=row.code, entries=entries)
