"""The run record: the electronic batch record of one run, from the operational database.

Every step as it opened and closed (who, when, escalation level), its form values with their labels and units, its
checklist as confirmed, the evidence it links with each file's SHA-256, the signatures given on it with their
meaning, the run's holds, resumptions and escalations. Deviations and CAPA are not recorded by this platform
version (the compliance engine adds them); the record says so rather than leaving them out silently.

`build(session, run_id)` reads it in the caller's organization (row-level security: another organization's run is
not found); `as_table` gives its rows (one per entry, the form a report execution stores and exports);
`run_record_pdf(session, run_id)` renders the PDF a person signs (the auditor's package uses it).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.errors import NotFound


@dataclass(frozen=True)
class Entry:
    """One line of the record."""

    section: str  # run, step, value, checklist, evidence, signature, hold, escalation, event
    step_key: str
    iteration: int
    item: str
    value: str
    unit: str
    actor: str
    at: dt.datetime | None
    detail: str = ""


@dataclass
class RunRecord:
    run_id: uuid.UUID
    protocol: str
    protocol_key: str
    protocol_version: int
    status: str
    status_reason: str | None
    subjects: list[dict[str, Any]]
    parameters: dict[str, Any]
    launched_by: str
    launched_at: dt.datetime
    ended_at: dt.datetime | None
    entries: list[Entry] = field(default_factory=list)


SCHEMA = pa.schema([("section", pa.string()), ("step_key", pa.string()), ("iteration", pa.int64()),
                    ("item", pa.string()), ("value", pa.string()), ("unit", pa.string()), ("actor", pa.string()),
                    ("at", pa.timestamp("us", tz="UTC")), ("detail", pa.string())])


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def build(session: Session, run_id: uuid.UUID | str) -> RunRecord:
    try:
        rid = uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound(f"no run {run_id}") from None
    run = session.execute(text(
        "SELECT id, protocol_key, protocol_version, protocol_title, status, status_reason, subjects, parameters,"
        " launched_by_display, launched_at, ended_at FROM runs WHERE id = :r"), {"r": rid}).first()
    if run is None:
        raise NotFound(f"no run {run_id}")
    rec = RunRecord(rid, run.protocol_title, run.protocol_key, run.protocol_version, run.status, run.status_reason,
                    list(run.subjects or []), dict(run.parameters or {}), run.launched_by_display, run.launched_at,
                    run.ended_at)
    out = rec.entries
    out.append(Entry("run", "", 0, "launched", f"{run.protocol_title} v{run.protocol_version}", "",
                     run.launched_by_display, run.launched_at,
                     _text({"subjects": rec.subjects, "parameters": rec.parameters})))
    tasks = session.execute(text(
        "SELECT t.id, t.step_key, t.iteration, t.kind, t.title, t.status, t.opened_at, t.due_at, t.escalation_level,"
        " t.closed_at, t.closed_by_display, t.spec, f.fields, f.field_values, f.checklist, f.evidence"
        " FROM tasks t LEFT JOIN form_submissions f ON f.task_id = t.id"
        " WHERE t.run_id = :r ORDER BY t.opened_at, t.step_key, t.iteration"), {"r": rid}).all()
    completed = {str(r.task_id): r for r in session.execute(text(
        "SELECT task_id, detail FROM step_events WHERE run_id = :r AND event = 'completed'"), {"r": rid}).all()}
    evidence_ids: set[str] = set()
    for t in tasks:
        done = completed.get(str(t.id))
        detail = dict(done.detail) if done is not None else {}
        for ev in list(t.evidence or []) + list(detail.get("evidence") or []):
            evidence_ids.add(str(ev))
    hashes: dict[str, tuple[str, str]] = {}
    if evidence_ids:
        for row in session.execute(text("SELECT id, sha256, filename FROM evidence_files WHERE id = ANY(:ids)"),
                                   {"ids": [uuid.UUID(e) for e in evidence_ids if _is_uuid(e)]}).all():
            hashes[str(row.id)] = (row.sha256, row.filename)
    signed = session.execute(text(
        "SELECT entity_id, signer_name, meaning, reason, content_hash, signed_at FROM signatures"
        " WHERE entity_type = 'task' AND entity_id = ANY(:ids) ORDER BY signed_at"),
        {"ids": [str(t.id) for t in tasks]}).all()
    signatures: dict[str, list[Any]] = {}
    for s in signed:
        signatures.setdefault(s.entity_id, []).append(s)
    for t in tasks:
        out.append(Entry("step", t.step_key, t.iteration, t.title, t.status, "", t.closed_by_display or "",
                         t.closed_at, _text({"kind": t.kind, "opened_at": t.opened_at.isoformat(),
                                             "due_at": t.due_at.isoformat() if t.due_at else None,
                                             "escalation_level": t.escalation_level})))
        fields = {f.get("key"): f for f in (t.fields or [])}
        for key, value in (t.field_values or {}).items():
            spec = fields.get(key) or {}
            out.append(Entry("value", t.step_key, t.iteration, str(spec.get("label") or key), _text(value),
                             str(spec.get("unit") or ""), t.closed_by_display or "", t.closed_at, key))
        done = completed.get(str(t.id))
        detail = dict(done.detail) if done is not None else {}
        items = {i.get("key"): i.get("text", i.get("key")) for i in ((t.spec or {}).get("checklist") or [])}
        for key in detail.get("checklist") or (t.checklist or []):
            out.append(Entry("checklist", t.step_key, t.iteration, str(items.get(key, key)), "confirmed", "",
                             t.closed_by_display or "", t.closed_at, str(key)))
        for ev in dict.fromkeys(list(t.evidence or []) + list(detail.get("evidence") or [])):
            sha, name = hashes.get(str(ev), ("", ""))
            out.append(Entry("evidence", t.step_key, t.iteration, name or str(ev), sha, "sha256",
                             t.closed_by_display or "", t.closed_at, str(ev)))
        for s in signatures.get(str(t.id), []):
            out.append(Entry("signature", t.step_key, t.iteration, s.meaning, s.signer_name, "", s.signer_name,
                             s.signed_at, _text({"reason": s.reason, "content_hash": s.content_hash})))
    for e in session.execute(text(
            "SELECT step_key, iteration, event, actor_display, occurred_at, detail FROM step_events"
            " WHERE run_id = :r AND event NOT IN ('opened', 'completed') ORDER BY occurred_at, id"), {"r": rid}).all():
        section = "hold" if e.event in ("held", "resumed") else "escalation" if e.event == "escalated" else "event"
        out.append(Entry(section, e.step_key, e.iteration, e.event, _text((e.detail or {}).get("reason") or
                                                                           (e.detail or {}).get("level") or ""),
                         "", e.actor_display, e.occurred_at, _text(e.detail)))
    return rec


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def as_table(rec: RunRecord) -> pa.Table:
    cols: dict[str, list[Any]] = {n: [] for n in SCHEMA.names}
    for e in rec.entries:
        for n in SCHEMA.names:
            cols[n].append(getattr(e, n))
    return pa.table(cols, schema=SCHEMA)


def entries_of(table: pa.Table) -> list[Entry]:
    return [Entry(**{k: row[k] for k in SCHEMA.names}) for row in table.to_pylist()]


def header(rec: RunRecord) -> list[tuple[str, str]]:
    return [("Run", str(rec.run_id)), ("Protocol", f"{rec.protocol} ({rec.protocol_key} v{rec.protocol_version})"),
            ("Status", rec.status + (f" ({rec.status_reason})" if rec.status_reason else "")),
            ("Subjects", ", ".join(f"{s.get('type')} {s.get('id')}" for s in rec.subjects) or "none"),
            ("Parameters", _text(rec.parameters) if rec.parameters else "none"),
            ("Launched", f"{rec.launched_at.isoformat()} by {rec.launched_by}"),
            ("Ended", rec.ended_at.isoformat() if rec.ended_at else "not yet")]


def run_record_pdf(session: Session, run_id: uuid.UUID | str, *, context: Sequence[tuple[str, str]] = ()) -> bytes:
    """The run record of `run_id` (in the session's organization) as a PDF, built now."""
    from domain.reports.render import run_record_document

    rec = build(session, run_id)
    return run_record_document(header(rec), rec.entries, context=context)
