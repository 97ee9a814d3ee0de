"""The lake's tables: names, typed schemas, column comments, and outbox payloads → Arrow.

Every table is partitioned by the string column `org_id`. Conversion is strict: a value that does
not fit its column (a float for an integer, text in a date, a missing required key) never gets
coerced; the whole row goes to `sink_rejects` with the reason and its original payload instead.
Form tables get their columns from the field definitions carried by each submission; the naming
rule for a field whose type changed between protocol versions is `column_name` (see lake/README.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
import pyarrow as pa

PARTITION = "org_id"
SINK_APP_ID = "flasktrack-sink"  # Delta app transaction of outbox batches; version = batch id
TS = pa.timestamp("us", tz="UTC")

FORM_PREFIX = "form_"
IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,62}")
_DECIMAL = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")

# Form field type → (Arrow storage type, conversion kind).
FIELD_TYPES: dict[str, tuple[pa.DataType, str]] = {
    "number": (pa.float64(), "number"),
    "integer": (pa.int64(), "int"),
    "boolean": (pa.bool_(), "bool"),
    "text": (pa.string(), "str"),
    "choice": (pa.string(), "str"),
    "date": (pa.date32(), "date"),
    "datetime": (TS, "ts"),
    "sample_ref": (pa.string(), "str"),
    "batch_ref": (pa.string(), "str"),
    "evidence_ref": (pa.string(), "str"),
}


def published_app_id(org_id: str) -> str:
    """Delta app transaction recorded on a form table when one of the org's approved protocol versions uses
    the form: the org sees the table from then on, rows or not (lake/catalog.py)."""
    return f"published:{org_id}"


def audit_app_id(org_id: str) -> str:
    """Delta app transaction of one org's audit export; version = last seq included."""
    return f"audit_log:{org_id}"


def form_table_name(form_key: str) -> str:
    return FORM_PREFIX + form_key


class RowError(ValueError):
    """A payload that does not fit its table; the row goes to sink_rejects."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    kind: str  # str | int | bool | number | ts | date | json | hex | bytes_text
    comment: str
    required: bool = False
    key: str | None = None  # payload key when it differs from the column name
    unit: str | None = None
    in_values: bool = False  # a form field: read from payload["values"]

    def arrow_field(self) -> pa.Field:
        meta = {"comment": self.comment}
        if self.unit:
            meta["unit"] = self.unit
        return pa.field(self.name, self.type, nullable=True, metadata=meta)


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([c.arrow_field() for c in self.columns])


def _c(name: str, type_: pa.DataType, kind: str, comment: str, required: bool = False) -> Column:
    return Column(name, type_, kind, comment, required)


_S, _I, _TS = pa.string(), pa.int64(), TS
ORG = _c(PARTITION, _S, "str", "Organization (tenant) id; the partition column", True)

STEP_EVENTS = TableSpec("step_events", "Every step event of every protocol run (started, completed, overdue, "
                        "signed, ...), one row per event, in the order the run engine recorded them.", (
    ORG,
    _c("event_id", _S, "str", "Unique id of this event", True),
    _c("run_id", _S, "str", "The protocol run", True),
    _c("protocol_key", _S, "str", "Protocol the run follows"),
    _c("protocol_version", _I, "int", "Version of that protocol"),
    _c("step_key", _S, "str", "Step of the protocol", True),
    _c("step_kind", _S, "str", "task, approval, timer, parallel or repeat"),
    _c("event", _S, "str", "What happened to the step", True),
    _c("iteration", _I, "int", "Repeat iteration (0 outside repeats)"),
    _c("actor_type", _S, "str", "user, api_key or system"),
    _c("actor_id", _S, "str", "Who caused the event"),
    _c("actor_display", _S, "str", "Their display name at the time"),
    _c("occurred_at", _TS, "ts", "When it happened (UTC)", True),
    _c("detail", _S, "json", "Event details as a JSON object"),
))

RUNS = TableSpec("runs", "Protocol runs: one row per revision of a run (append-only history), so a run "
                 "appears once per change of status; its current state is its row with the highest revision, "
                 "which the view runs_current holds (one row per run).", (
    ORG,
    _c("run_id", _S, "str", "The protocol run", True),
    _c("protocol_key", _S, "str", "Protocol the run follows"),
    _c("protocol_version", _I, "int", "Version of that protocol"),
    _c("status", _S, "str", "Run status at this revision", True),
    _c("launched_by", _S, "str", "Who launched the run"),
    _c("launched_at", _TS, "ts", "When it was launched (UTC)"),
    _c("updated_at", _TS, "ts", "When this revision was recorded (UTC)", True),
    _c("ended_at", _TS, "ts", "When the run ended (UTC); null while running"),
    _c("subjects", _S, "json", "Samples/batches the run is about, JSON list of {type, id}"),
    _c("parameters", _S, "json", "Launch parameters as a JSON object"),
    _c("time_scale", pa.float64(), "number", "Time scale of the run (1 = real time)"),
    _c("revision", _I, "int", "Revision number of the run, increasing", True),
))

SAMPLES = TableSpec("samples", "Samples (cultures, plates, calli, explants, DNA preps, ...): one row per revision "
                    "of a sample, so its history of status, location and holder is kept; its current state is its "
                    "row with the highest revision, which the view samples_current holds.", (
    ORG,
    _c("sample_id", _S, "str", "The sample", True),
    _c("code", _S, "str", "Its human-readable code, e.g. S-000123", True),
    _c("sample_type", _S, "str", "culture, plate, callus, explant, spore_suspension, dna_prep, ..."),
    _c("name", _S, "str", "Its name"),
    _c("status", _S, "str", "received, in_use, consumed, disposed or contaminated, at this revision", True),
    _c("status_reason", _S, "str", "Why it has that status (e.g. why it was disposed)"),
    _c("location_id", _S, "str", "Storage location (registry) at this revision"),
    _c("owner_id", _S, "str", "Member who held it at this revision"),
    _c("batch_id", _S, "str", "Batch it belongs to"),
    _c("attributes", _S, "json", "Free-form details as a JSON object"),
    _c("created_in_run", _S, "str", "Run whose step made it, if any"),
    _c("created_in_step", _S, "str", "That step"),
    _c("archived_at", _TS, "ts", "When it was archived (UTC); null while in use"),
    _c("created_at", _TS, "ts", "When it was registered (UTC)"),
    _c("created_by", _S, "str", "Who registered it"),
    _c("updated_at", _TS, "ts", "When this revision was recorded (UTC)", True),
    _c("revision", _I, "int", "Revision number of the sample, increasing", True),
))

BATCHES = TableSpec("batches", "Batches of samples made together (media, transformation, ...): one row per "
                    "revision with the batch record; the view batches_current holds each batch's latest.", (
    ORG,
    _c("batch_id", _S, "str", "The batch", True),
    _c("code", _S, "str", "Its human-readable code, e.g. B-000007", True),
    _c("batch_type", _S, "str", "media, transformation, culture, plant_line, seed or other"),
    _c("name", _S, "str", "Its name"),
    _c("status", _S, "str", "open, released, rejected or closed, at this revision", True),
    _c("record", _S, "json", "The batch record (recipe, lots, decisions) as a JSON object"),
    _c("created_in_run", _S, "str", "Run whose step made it, if any"),
    _c("created_in_step", _S, "str", "That step"),
    _c("archived_at", _TS, "ts", "When it was archived (UTC)"),
    _c("created_at", _TS, "ts", "When it was opened (UTC)"),
    _c("created_by", _S, "str", "Who opened it"),
    _c("updated_at", _TS, "ts", "When this revision was recorded (UTC)", True),
    _c("revision", _I, "int", "Revision number of the batch, increasing", True),
))

LINEAGE_EDGES = TableSpec("lineage_edges", "Lineage: one row per parent → child derivation of samples, with the "
                          "operation and the run, step and task that did it (append-only).", (
    ORG,
    _c("parent_id", _S, "str", "The parent sample", True),
    _c("child_id", _S, "str", "The child sample", True),
    _c("operation", _S, "str", "aliquot, subculture, passage, pooling, transformation or extraction", True),
    _c("run_id", _S, "str", "Run that did it, if any"),
    _c("step_key", _S, "str", "Step of that run"),
    _c("task_id", _S, "str", "Task (step completion) that did it"),
    _c("recorded_at", _TS, "ts", "When it was recorded (UTC)", True),
    _c("recorded_by", _S, "str", "Who recorded it"),
))

SAMPLE_MOVEMENTS = TableSpec("sample_movements", "Chain of custody: one row per location move or hand-over of a "
                             "sample, with who did it and why (append-only).", (
    ORG,
    _c("movement_id", _S, "str", "The movement", True),
    _c("sample_id", _S, "str", "The sample moved", True),
    _c("from_location_id", _S, "str", "Location before"),
    _c("to_location_id", _S, "str", "Location after"),
    _c("from_holder_id", _S, "str", "Member holding it before"),
    _c("to_holder_id", _S, "str", "Member holding it after"),
    _c("to_holder_display", _S, "str", "Their display name at the time"),
    _c("moved_at", _TS, "ts", "When (UTC)", True),
    _c("moved_by", _S, "str", "Who moved it"),
    _c("moved_by_display", _S, "str", "Their display name at the time"),
    _c("reason", _S, "str", "Why"),
    _c("run_id", _S, "str", "Run it moved for, if any"),
    _c("step_key", _S, "str", "Step of that run"),
))

REGISTRY_ITEMS = TableSpec("registry_items", "The registries (species, strains, plasmids, ingredients, lots, "
                           "equipment, suppliers, storage locations): one row per revision of a record (append-only "
                           "history: created, changed, archived, restored); its current state is its row with the "
                           "highest revision, which the view registry_items_current holds (one row per record).", (
    ORG,
    _c("item_id", _S, "str", "The registry record", True),
    _c("kind", _S, "str", "species, strain, plasmid, ingredient, lot, equipment, supplier or location", True),
    _c("code", _S, "str", "Its human-readable code, e.g. LOT-000012 (what its label encodes)", True),
    _c("name", _S, "str", "Its name", True),
    _c("parent_id", _S, "str", "A strain's species, a lot's ingredient, a location's enclosing location"),
    _c("status", _S, "str", "Status at this revision (lot: available/quarantined/used_up; equipment: in_service/"
                            "out_of_service; supplier: pending/approved/disqualified; else active)", True),
    _c("attributes", _S, "json", "What the kind adds (risk_group, lot_number, expiry_date, calibration_due, level, "
                                 "...) as a JSON object"),
    _c("archived_at", _TS, "ts", "When it was archived (UTC); null while in use"),
    _c("created_at", _TS, "ts", "When the record was created (UTC)"),
    _c("created_by", _S, "str", "Who created it"),
    _c("updated_at", _TS, "ts", "When this revision was recorded (UTC)", True),
    _c("revision", _I, "int", "Revision number of the record, increasing", True),
))

AUDIT_LOG = TableSpec("audit_log", "The sealed, hash-chained audit log: every entry of every org with its "
                      "gapless sequence number, canonical JSON body and chain hashes (verify with "
                      "`flasktrack audit verify`). Exported exactly once from PostgreSQL.", (
    ORG,
    _c("seq", _I, "int", "Gapless position in the org's chain, from 1", True),
    _c("occurred_at", _TS, "ts", "When it happened (UTC)", True),
    _c("actor_type", _S, "str", "user, api_key or system"),
    _c("actor_id", _S, "str", "Who acted"),
    _c("actor_display", _S, "str", "Their display name at the time"),
    _c("action", _S, "str", "What was done (create, update, sign, ...)"),
    _c("entity_type", _S, "str", "Kind of thing acted on"),
    _c("entity_id", _S, "str", "Id of the thing acted on"),
    _c("severity", _S, "str", "info, notice, warning or critical"),
    _c("reason", _S, "str", "Reason given, if any"),
    _c("request_id", _S, "str", "API request that caused it"),
    _c("api_key_id", _S, "str", "API key used, if any"),
    _c("body", _S, "str", "Canonical JSON body (the hashed bytes, UTF-8)"),
    _c("body_hash", _S, "str", "sha256 of body, hex"),
    _c("prev_hash", _S, "str", "chain_hash of the previous entry, hex"),
    _c("chain_hash", _S, "str", "sha256(prev_hash || seq || org || body_hash), hex"),
    _c("sealed_at", _TS, "ts", "When it was linked into the chain (UTC)"),
))

EVIDENCE_FILES = TableSpec("evidence_files", "Evidence files (photos, printouts, instrument exports): one row per "
                           "upload, with the SHA-256 of its bytes (the same bytes uploaded twice are two rows with one "
                           "hash). Append-only; what each file is evidence of is in evidence_links.", (
    ORG,
    _c("evidence_id", _S, "str", "The evidence file (an upload)", True),
    _c("sha256", _S, "str", "SHA-256 of the bytes, hex", True),
    _c("size_bytes", _I, "int", "Size of the file in bytes", True),
    _c("content_type", _S, "str", "Media type, read from the content", True),
    _c("filename", _S, "str", "File name as uploaded (made safe)"),
    _c("uploaded_at", _TS, "ts", "When it was uploaded (UTC)", True),
    _c("uploaded_by", _S, "str", "Who uploaded it (user or API key id)"),
    _c("uploaded_by_display", _S, "str", "Their display name at the time"),
))

EVIDENCE_LINKS = TableSpec("evidence_links", "What each evidence file is evidence of: a task (a step's completion), "
                           "a checklist item of a task, a sample or a batch; one row per link, append-only. Join "
                           "evidence_files on evidence_id, step_events or form tables on target_id = task id.", (
    ORG,
    _c("link_id", _S, "str", "Unique id of this link", True),
    _c("evidence_id", _S, "str", "The evidence file", True),
    _c("sha256", _S, "str", "SHA-256 of the file's bytes, hex"),
    _c("target_type", _S, "str", "task, checklist_item, sample or batch", True),
    _c("target_id", _S, "str", "The task, sample or batch id (a checklist item's task)", True),
    _c("detail", _S, "str", "The checklist item's key, or values.<field> for a form field's reference"),
    _c("linked_at", _TS, "ts", "When it was linked (UTC)", True),
    _c("linked_by", _S, "str", "Who linked it (user or API key id)"),
))

AUTHORIZATIONS = TableSpec("authorizations", "Authorization records (IBC approvals, institutional permits, ...): one "
                           "row per revision (recorded pending, signed into force, revoked); the current state of "
                           "each is authorizations_current.", (
    ORG,
    _c("authorization_id", _S, "str", "The authorization record", True),
    _c("code", _S, "str", "Its human-readable code, e.g. AUTH-000003", True),
    _c("authorization_type", _S, "str", "What it is, e.g. IBC approval (authorization rules name it)", True),
    _c("title", _S, "str", "Its title"),
    _c("issuer", _S, "str", "Who issued it"),
    _c("protocol_keys", _S, "json", "Protocols it covers (empty: every one), a JSON array"),
    _c("tags", _S, "json", "Regulatory tags it covers (empty: every one its type is for), a JSON array"),
    _c("valid_from", _TS, "ts", "Start of validity (UTC)", True),
    _c("valid_until", _TS, "ts", "End of validity (UTC)", True),
    _c("status", _S, "str", "pending, active or revoked", True),
    _c("signature_id", _S, "str", "The approver's e-signature (signatures)"),
    _c("approved_by", _S, "str", "The approver's user id"),
    _c("approved_by_display", _S, "str", "The approver's name at the time"),
    _c("approved_at", _TS, "ts", "When it was signed (UTC)"),
    _c("created_at", _TS, "ts", "When it was recorded (UTC)"),
    _c("created_by", _S, "str", "Who recorded it"),
    _c("revision", _I, "int", "Revision number, increasing", True),
))

QUALIFICATIONS = TableSpec("qualifications", "Training records: one row per course a member completed, with its "
                           "expiry and evidence file. Append-only (a renewal is a new row).", (
    ORG,
    _c("qualification_id", _S, "str", "The training record", True),
    _c("user_id", _S, "str", "The member", True),
    _c("course", _S, "str", "The course, e.g. biosafety_bsl2 (steps require it by this key)", True),
    _c("completed_on", pa.date32(), "date", "When it was completed", True),
    _c("expires_on", pa.date32(), "date", "When it expires (null: never)"),
    _c("evidence_id", _S, "str", "The certificate's evidence file"),
    _c("recorded_at", _TS, "ts", "When it was recorded (UTC)", True),
    _c("recorded_by", _S, "str", "Who recorded it"),
))

SURFACE_SNAPSHOTS = TableSpec("compliance_surfaces", "Snapshots of a run's compliance surface: taken whenever the run "
                              "checks its authorizations (at launch, when its surface or the authorizations change, "
                              "when one expires), with the tags, their provenance and whether it was held.", (
    ORG,
    _c("snapshot_id", _S, "str", "Unique id of the snapshot", True),
    _c("subject_type", _S, "str", "run", True),
    _c("subject_id", _S, "str", "The run", True),
    _c("taken_at", _TS, "ts", "When it was taken (UTC, the workflow's time)", True),
    _c("tags", _S, "json", "The tag keys on the surface, a JSON array", True),
    _c("provenance", _S, "json", "Each tag's shortest path, as people read it: a JSON object tag → text"),
    _c("held", pa.bool_(), "bool", "Whether the run was on authorization hold", True),
    _c("lacking", _S, "json", "What it lacked, a JSON array of reasons"),
))

SINK_REJECTS = TableSpec("sink_rejects", "Outbox rows the sink could not type (malformed payload, unknown "
                         "field type, value that does not fit its column), kept verbatim with the reason; "
                         "nothing the run engine writes is dropped.", (
    ORG,
    _c("outbox_id", _I, "int", "Id of the outbox row", True),
    _c("batch_id", _I, "int", "Sink batch that carried it", True),
    _c("topic", _S, "str", "Outbox topic", True),
    _c("payload", _S, "str", "The payload, JSON", True),
    _c("error", _S, "str", "Why it could not be typed", True),
))

REPORTS = TableSpec("reports", "Report definitions and reports through their lifecycle: one row per change (a "
                    "definition version created; a report created, edited, executed, put in review, finalized), "
                    "append-only; entity says which.", (
    ORG,
    _c("entity", _S, "str", "definition or report", True),
    _c("id", _S, "str", "The definition version or the report", True),
    _c("definition_id", _S, "str", "The definition version", True),
    _c("key", _S, "str", "The definition's key", True),
    _c("version", _I, "int", "The definition's version", True),
    _c("kind", _S, "str", "system or custom"),
    _c("title", _S, "str", "Title"),
    _c("status", _S, "str", "A report's status after the change: created, updated, in_review or finalized"),
    _c("changed_by", _S, "str", "Who made the change"),
    _c("changed_at", _TS, "ts", "When (UTC)", True),
    _c("content_hash", _S, "str", "A finalized report's content hash (signed; in the audit chain)"),
))

REPORT_EXECUTIONS = TableSpec("report_executions", "Every execution of a report: its parameters, row count, "
                              "duration and the Delta version of every lake table it read (append-only).", (
    ORG,
    _c("execution_id", _S, "str", "The execution", True),
    _c("definition_id", _S, "str", "The definition version executed", True),
    _c("definition_key", _S, "str", "Its key", True),
    _c("definition_version", _I, "int", "Its version", True),
    _c("report_id", _S, "str", "The report it belongs to, if any"),
    _c("purpose", _S, "str", "execute, or reproduce (a finalized report read again at its pinned versions)", True),
    _c("parameters", _S, "json", "Parameter values as a JSON object"),
    _c("table_versions", _S, "json", "Delta version of each table read, as a JSON object"),
    _c("row_count", _I, "int", "Rows of the result", True),
    _c("duration_ms", pa.float64(), "number", "How long it took, in milliseconds"),
    _c("result_sha256", _S, "str", "SHA-256 of the result (Parquet, content-addressed)", True),
    _c("executed_by", _S, "str", "Who executed it"),
    _c("executed_by_display", _S, "str", "Their display name at the time"),
    _c("executed_at", _TS, "ts", "When (UTC)", True),
))

REPORT_EXPORTS = TableSpec("report_exports", "Every export or download of a report execution (CSV, JSON lines, "
                           "Parquet, Excel, PDF), append-only.", (
    ORG,
    _c("export_id", _S, "str", "The export", True),
    _c("execution_id", _S, "str", "The execution exported", True),
    _c("report_id", _S, "str", "Its report, if any"),
    _c("format", _S, "str", "csv, jsonl, parquet, xlsx or pdf", True),
    _c("sha256", _S, "str", "SHA-256 of the file handed out", True),
    _c("size_bytes", _I, "int", "Its size in bytes"),
    _c("exported_by", _S, "str", "Who exported it"),
    _c("exported_by_display", _S, "str", "Their display name at the time"),
    _c("exported_at", _TS, "ts", "When (UTC)", True),
))

_B, _D = pa.bool_(), pa.date32()

COMPLIANCE_EVENTS = TableSpec("compliance_events", "Compliance events (deviations, contaminations, incidents, near "
                              "misses, equipment failures): one row per revision, so each event's path open → "
                              "investigating → capa → effectiveness_check → closed is kept; the view "
                              "compliance_events_current holds each event's latest.", (
    ORG,
    _c("event_id", _S, "str", "The event", True),
    _c("code", _S, "str", "Its human-readable code, e.g. CE-000012", True),
    _c("kind", _S, "str", "deviation, contamination, incident, near_miss or equipment_failure", True),
    _c("severity", _S, "str", "low, medium, high or critical", True),
    _c("title", _S, "str", "What happened, in a line"),
    _c("status", _S, "str", "open, investigating, capa, effectiveness_check or closed at this revision", True),
    _c("source", _S, "str", "person, or what raised it: escalation, contamination, gate_override", True),
    _c("reporter_id", _S, "str", "Who raised it (user id, or flasktrack for the platform)"),
    _c("reporter_display", _S, "str", "Their display name at the time"),
    _c("root_cause", _S, "str", "The investigation's root cause"),
    _c("effective", _B, "bool", "Whether the actions were judged effective"),
    _c("closed_at", _TS, "ts", "When it was closed with a signature (UTC)"),
    _c("closed_by", _S, "str", "Who closed it"),
    _c("created_at", _TS, "ts", "When it was raised (UTC)", True),
    _c("updated_at", _TS, "ts", "When this revision was recorded (UTC)", True),
    _c("revision", _I, "int", "Revision number of the event, increasing", True),
))

CAPA_ACTIONS = TableSpec("capa_actions", "Corrective and preventive actions of compliance events: one row per "
                         "revision (created, escalated, done); the view capa_actions_current holds each action's "
                         "latest.", (
    ORG,
    _c("action_id", _S, "str", "The action", True),
    _c("event_id", _S, "str", "The compliance event it belongs to", True),
    _c("kind", _S, "str", "corrective or preventive", True),
    _c("description", _S, "str", "What is to be done"),
    _c("owner_id", _S, "str", "Member who owns it", True),
    _c("owner_display", _S, "str", "Their display name"),
    _c("due_at", _TS, "ts", "When it is due (UTC)", True),
    _c("status", _S, "str", "open or done", True),
    _c("done_at", _TS, "ts", "When it was done (UTC)"),
    _c("done_by", _S, "str", "Who marked it done"),
    _c("escalation_level", _I, "int", "-1 none; 0 owner alerted at the due time; 1 lab managers alerted"),
    _c("created_at", _TS, "ts", "When it was created (UTC)"),
    _c("updated_at", _TS, "ts", "When this revision was recorded (UTC)", True),
    _c("revision", _I, "int", "Revision number of the action, increasing", True),
))

AUDITS = TableSpec("audits", "Formal audits: one row per revision (draft, finalized); a finalized audit never "
                   "changes again and carries the content hash its auditor signed. The view audits_current holds "
                   "each audit's latest.", (
    ORG,
    _c("audit_id", _S, "str", "The audit", True),
    _c("code", _S, "str", "Its human-readable code, e.g. AU-000003", True),
    _c("title", _S, "str", "Its title"),
    _c("framework", _S, "str", "Framework audited against (name or code)", True),
    _c("period_start", _D, "date", "First day of the period audited", True),
    _c("period_end", _D, "date", "Last day of the period audited", True),
    _c("scope_runs", _S, "json", "Runs in scope, JSON list of ids"),
    _c("scope_labs", _S, "json", "Labs in scope, JSON list of names"),
    _c("auditor_id", _S, "str", "The auditor (user id)", True),
    _c("auditor_display", _S, "str", "Their display name"),
    _c("status", _S, "str", "draft or finalized", True),
    _c("outcome", _S, "str", "pass, conditional or fail (once finalized)"),
    _c("content_hash", _S, "str", "SHA-256 the auditor signed, hex"),
    _c("finalized_at", _TS, "ts", "When it was finalized (UTC)"),
    _c("created_at", _TS, "ts", "When it was opened (UTC)"),
    _c("updated_at", _TS, "ts", "When this revision was recorded (UTC)", True),
    _c("revision", _I, "int", "Revision number of the audit, increasing", True),
))

AUDIT_FINDINGS = TableSpec("audit_findings", "Findings of formal audits, one row each (append-only), linked to "
                           "evidence files and, when corrective work follows, to a compliance event.", (
    ORG,
    _c("finding_id", _S, "str", "The finding", True),
    _c("audit_id", _S, "str", "The audit", True),
    _c("number", _I, "int", "Its number in the audit, from 1", True),
    _c("severity", _S, "str", "observation, minor, major or critical", True),
    _c("title", _S, "str", "The finding, in a line"),
    _c("evidence_ids", _S, "json", "Evidence files, JSON list of ids"),
    _c("event_id", _S, "str", "The compliance event tracking the corrective work, if any"),
    _c("created_at", _TS, "ts", "When it was recorded (UTC)", True),
    _c("created_by", _S, "str", "Who recorded it"),
))

ALERTS = TableSpec("alerts", "Alerts (expiring lots, calibrations, authorizations, qualifications; escalations; "
                   "events and CAPA actions past due): one row per revision (raised, read, acknowledged); the view "
                   "alerts_current holds each alert's latest.", (
    ORG,
    _c("alert_id", _S, "str", "The alert", True),
    _c("kind", _S, "str", "lot_expiry, calibration_due, escalation, event_overdue, capa_overdue, "
                          "authorization_expiry, qualification_expiry or other", True),
    _c("severity", _S, "str", "info, notice, warning or critical"),
    _c("subject_type", _S, "str", "What it is about: registry_item, task, compliance_event, capa_action, ...", True),
    _c("subject_id", _S, "str", "Its id", True),
    _c("title", _S, "str", "The alert, in a line"),
    _c("addressed_users", _S, "json", "Members it is addressed to, JSON list of user ids"),
    _c("addressed_roles", _S, "json", "Roles it is addressed to, JSON list"),
    _c("due_at", _TS, "ts", "The date it is about (expiry, due time), UTC"),
    _c("created_at", _TS, "ts", "When it was raised (UTC)", True),
    _c("read_at", _TS, "ts", "When it was first read (UTC)"),
    _c("acknowledged_at", _TS, "ts", "When it was acknowledged (UTC)"),
    _c("acknowledged_by", _S, "str", "Who acknowledged it"),
    _c("emailed_at", _TS, "ts", "When it was emailed (UTC)"),
    _c("revision", _I, "int", "Revision number of the alert, increasing", True),
))

# Outbox topic → the fixed table its payloads become rows of (forms have tables of their own, per form key).
FIXED_TOPICS: dict[str, TableSpec] = {"step_event": STEP_EVENTS, "run": RUNS, "registry_item": REGISTRY_ITEMS,
                                      "sample": SAMPLES, "batch": BATCHES,
                                      "lineage_edge": LINEAGE_EDGES, "sample_movement": SAMPLE_MOVEMENTS,
                                      "evidence_file": EVIDENCE_FILES, "evidence_link": EVIDENCE_LINKS,
                                      "report": REPORTS, "report_execution": REPORT_EXECUTIONS,
                                      "report_export": REPORT_EXPORTS,
                                      "compliance_events": COMPLIANCE_EVENTS, "capa_actions": CAPA_ACTIONS,
                                      "audits": AUDITS, "audit_findings": AUDIT_FINDINGS, "alerts": ALERTS,
                                      "authorization": AUTHORIZATIONS, "qualification": QUALIFICATIONS,
                                      "surface_snapshot": SURFACE_SNAPSHOTS}

FORM_COLUMNS: tuple[Column, ...] = (
    ORG,
    _c("run_id", _S, "str", "The protocol run", True),
    _c("step_key", _S, "str", "Step the form belongs to"),
    _c("iteration", _I, "int", "Repeat iteration (0 outside repeats)"),
    _c("protocol_key", _S, "str", "Protocol the run follows"),
    _c("protocol_version", _I, "int", "Version of that protocol"),
    _c("submission_id", _S, "str", "Unique id of this submission", True),
    _c("submitted_by", _S, "str", "Who submitted it"),
    _c("submitted_by_display", _S, "str", "Their display name at the time"),
    _c("submitted_at", _TS, "ts", "When it was submitted (UTC)", True),
)
FORM_RESERVED = frozenset(c.name for c in FORM_COLUMNS) | {"form_key"}


# ---------------------------------------------------------------- payload → Arrow


def _strings(raw: list[Any]) -> pa.Array:
    return pa.array(raw, pa.string())  # raises on anything but str/None


def _ints(raw: list[Any]) -> pa.Array:
    for v in raw:
        if v is not None and type(v) is not int:  # pyarrow would truncate 1.5 to 1 and accept no bools
            raise RowError(f"expected an integer, got {v!r}")
    return pa.array(raw, pa.int64())


def _bools(raw: list[Any]) -> pa.Array:
    for v in raw:
        if v is not None and type(v) is not bool:
            raise RowError(f"expected true or false, got {v!r}")
    return pa.array(raw, pa.bool_())


def _numbers(raw: list[Any]) -> pa.Array:
    out: list[float | None] = []
    for v in raw:
        if v is None:
            out.append(None)
        elif type(v) is str and _DECIMAL.fullmatch(v) or type(v) in (int, float):
            out.append(float(v))
        else:
            raise RowError(f"expected a decimal number, got {v!r}")
    return pa.array(out, pa.float64())


def _timestamps(raw: list[Any]) -> pa.Array:
    # The cast needs an explicit zone ("Z" or an offset): naive timestamps are refused, not guessed.
    return _strings(raw).cast(TS)


def _dates(raw: list[Any]) -> pa.Array:
    for v in raw:
        if v is not None and (type(v) is not str or len(v) != 10):
            raise RowError(f"expected a date YYYY-MM-DD, got {v!r}")
    return _strings(raw).cast(pa.date32())


def _json(raw: list[Any]) -> pa.Array:
    return pa.array([None if v is None else orjson.dumps(v).decode() for v in raw], pa.string())


CONVERTERS: dict[str, Callable[[list[Any]], pa.Array]] = {
    "str": _strings, "int": _ints, "bool": _bools, "number": _numbers, "ts": _timestamps, "date": _dates,
    "json": _json,
}
_FAILURES = (RowError, ValueError, TypeError, OverflowError, pa.ArrowException)


# Kinds pyarrow reads straight from the row dicts (in C++), as this type; timestamps and dates are read as
# strings and cast (the cast refuses what is not ISO-8601 with a zone, or not a date).
_DIRECT = {"str": pa.string(), "int": pa.int64(), "bool": pa.bool_(), "ts": pa.string(), "date": pa.string()}


def _build(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> pa.Table:
    arrays: dict[int, pa.Array] = {}  # by position: a form field may share a metadata column's name
    for in_values in (False, True):
        cols = [(j, c) for j, c in enumerate(columns) if c.in_values is in_values]
        if not cols:
            continue
        dicts = [r["values"] for r in rows] if in_values else rows
        direct = [(j, c) for j, c in cols if c.kind in _DIRECT]  # keys are unique within one source
        read = pa.Table.from_pylist(dicts, schema=pa.schema([(c.key or c.name, _DIRECT[c.kind]) for _, c in direct]))
        for i, (j, c) in enumerate(direct):
            arr = read.column(i).combine_chunks()
            if c.kind == "int":
                _ints([d.get(c.key or c.name) for d in dicts])  # pyarrow would truncate 1.5 to 1
            elif c.kind == "ts":
                arr = arr.cast(TS)
            elif c.kind == "date":
                _dates(arr.to_pylist())
                arr = arr.cast(pa.date32())
            arrays[j] = arr
        for j, c in cols:
            if c.kind not in _DIRECT:
                arrays[j] = CONVERTERS[c.kind]([d.get(c.key or c.name) for d in dicts])
    for j, c in enumerate(columns):
        if c.required and arrays[j].null_count:
            raise RowError(f"{c.key or c.name} is required")
    return pa.Table.from_arrays([arrays[j] for j in range(len(columns))],
                                schema=pa.schema([c.arrow_field() for c in columns]))


@dataclass
class Typed:
    """Rows typed for one table; `rejected` maps the index of each refused row to the reason."""

    table: pa.Table
    accepted: list[int]
    rejected: dict[int, str] = field(default_factory=dict)


def type_rows(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> Typed:
    """Convert all rows column by column; if any value fails, find the failing rows one by one."""
    try:
        return Typed(_build(columns, rows), list(range(len(rows))))
    except _FAILURES:
        pass
    good: list[int] = []
    bad: dict[int, str] = {}
    for i, r in enumerate(rows):
        try:
            _build(columns, [r])
            good.append(i)
        except _FAILURES as exc:
            bad[i] = str(exc).splitlines()[0][:500] or type(exc).__name__
    return Typed(_build(columns, [rows[i] for i in good]), good, bad)


# ---------------------------------------------------------------- form tables


@dataclass(frozen=True)
class FormField:
    key: str
    label: str
    type: str
    unit: str | None

    @property
    def arrow_type(self) -> pa.DataType:
        return FIELD_TYPES[self.type][0]


def read_fields(payload: dict[str, Any]) -> tuple[FormField, ...]:
    """The submission's field definitions; RowError when one cannot become a column or a value has no field."""
    fields = payload.get("fields")
    if not isinstance(fields, list):
        raise RowError("fields must be a list")
    try:
        spec = tuple((f.get("key"), f.get("type"), f.get("label"), f.get("unit")) for f in fields)
    except AttributeError:
        raise RowError("each field must be an object") from None
    try:
        sig, _ = _signature(spec)  # every submission of a form version carries the same definitions
    except TypeError:  # something unhashable in a label or unit: parse without the cache
        sig, _ = _signature.__wrapped__(spec)
    read_values(payload, sig)
    return sig


def read_values(payload: dict[str, Any], sig: tuple[FormField, ...]) -> None:
    """RowError unless `values` is an object with values only for the form's fields."""
    values = payload.get("values")
    if not isinstance(values, dict):
        raise RowError("values must be an object")
    keys = {f.key for f in sig}
    if not values.keys() <= keys:
        raise RowError(f"values for fields not in the form: {', '.join(sorted(values.keys() - keys))}")


@lru_cache(maxsize=4096)
def _signature(spec: tuple[tuple[Any, Any, Any, Any], ...]) -> tuple[tuple[FormField, ...], frozenset[str]]:
    out: list[FormField] = []
    for key, ftype, label, unit in spec:
        if not isinstance(key, str) or not IDENTIFIER.fullmatch(key):
            raise RowError(f"field key {key!r} is not an identifier like ph_value")
        if ftype not in FIELD_TYPES:
            raise RowError(f"field {key}: unknown type {ftype!r}")
        out.append(FormField(key, label if isinstance(label, str) else key, ftype,
                             unit if isinstance(unit, str) and unit else None))
    keys = frozenset(f.key for f in out)
    if len(keys) != len(out):
        raise RowError("duplicate field keys")
    return tuple(out), keys


def column_name(key: str, field_type: str, taken: dict[str, pa.DataType]) -> str:
    """The type-change rule. A field is stored in the column named by its key while that column's
    Arrow type matches the field's; when the key is a metadata column, or its column already holds
    another type (an earlier protocol version declared the field differently), the field goes to
    `<key>__<field type>` (e.g. `ph__integer`). Nothing is ever coerced into a column of another type."""
    want = FIELD_TYPES[field_type][0]
    if key not in FORM_RESERVED and (key not in taken or taken[key] == want):
        return key
    return f"{key}__{field_type}"


@dataclass
class FormGroup:
    """Accepted submissions of one form sharing the same field definitions."""

    fields: tuple[FormField, ...]
    table: pa.Table  # FORM_COLUMNS + one column per field, named by key
    version_rank: tuple[int, int]  # (protocol_version, position) of the newest submission: whose labels win


def type_form_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[FormGroup], list[int], dict[int, str]]:
    """Type a form's submissions, grouped by their field definitions. Returns the groups, the indices
    accepted (in group order) and the rejected indices with their reasons."""
    rejected: dict[int, str] = {}
    by_sig: dict[tuple[FormField, ...], list[int]] = {}
    seen: dict[int, tuple[FormField, ...]] = {}  # by id() of a `fields` list that rows share (see lake.sink)
    for i, r in enumerate(rows):
        try:
            shared = seen.get(id(r.get("fields")))
            if shared is not None:
                read_values(r, shared)
                sig = shared
            else:
                sig = read_fields(r)
                seen[id(r["fields"])] = sig
            by_sig.setdefault(sig, []).append(i)
        except RowError as exc:
            rejected[i] = str(exc)
    groups: list[FormGroup] = []
    accepted: list[int] = []
    for sig, idx in by_sig.items():
        typed = type_rows(form_columns(sig), [rows[i] for i in idx])
        for j, reason in typed.rejected.items():
            rejected[idx[j]] = reason
        if typed.accepted:
            ok = [idx[j] for j in typed.accepted]
            accepted.extend(ok)
            newest = max(ok, key=lambda i: (_int(rows[i].get("protocol_version")), i))
            groups.append(FormGroup(sig, typed.table, (_int(rows[newest].get("protocol_version")), newest)))
    return groups, accepted, rejected


def form_columns(sig: tuple[FormField, ...]) -> list[Column]:
    return [*FORM_COLUMNS, *(Column(f.key, f.arrow_type, FIELD_TYPES[f.type][1], f.label, unit=f.unit,
                                    in_values=True) for f in sig)]


def published_form(payload: dict[str, Any]) -> FormGroup:
    """A form as an approved protocol version publishes it: its columns, no rows. RowError if malformed."""
    sig = read_fields({**payload, "values": {}})
    return FormGroup(sig, type_rows(form_columns(sig), []).table, (_int(payload.get("protocol_version")), -1))


def _int(v: Any) -> int:
    return v if type(v) is int else -1


@dataclass
class FormWrite:
    table: pa.Table
    column_meta: dict[str, dict[str, str]]  # every field column written → {"comment", "unit", "field_type"}


def assemble_form(groups: Iterable[FormGroup], existing: pa.Schema | None) -> FormWrite:
    """One Arrow table for a batch of a form's submissions against the table's current schema, applying
    the type-change rule; columns absent from a group are null."""
    taken: dict[str, pa.DataType] = {f.name: f.type for f in existing} if existing is not None else {}
    meta: dict[str, tuple[tuple[int, int], dict[str, str]]] = {}
    parts: list[pa.Table] = []
    for g in sorted(groups, key=lambda g: g.version_rank):
        names = [c.name for c in FORM_COLUMNS]
        for f in g.fields:
            name = column_name(f.key, f.type, taken)
            taken.setdefault(name, f.arrow_type)
            names.append(name)
            m = {"comment": f.label, "field_type": f.type, **({"unit": f.unit} if f.unit else {})}
            if name not in meta or meta[name][0] <= g.version_rank:
                meta[name] = (g.version_rank, m)
        parts.append(_strip(g.table.rename_columns(names)))
    table = pa.concat_tables(parts, promote_options="default")
    fields = [pa.field(f.name, f.type, True, metadata=_FORM_META.get(f.name) or meta[f.name][1])
              for f in table.schema]
    return FormWrite(table.cast(pa.schema(fields)), {k: v for k, (_, v) in meta.items()})


_FORM_META = {c.name: c.arrow_field().metadata for c in FORM_COLUMNS}


def _strip(t: pa.Table) -> pa.Table:
    """Without field metadata, so tables whose labels differ concatenate."""
    return t.cast(pa.schema([pa.field(f.name, f.type, True) for f in t.schema]))


def form_description(form_key: str, schema: pa.Schema) -> str:
    """Table comment: what a form table holds, listing its fields by label."""
    parts = []
    for f in schema:
        if f.name in FORM_RESERVED:
            continue
        md = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        unit = f", {md['unit']}" if md.get("unit") else ""
        parts.append(f"{f.name} = {md.get('comment', f.name)} ({md.get('field_type', '?')}{unit})")
    return (f"Form '{form_key}': one row per submitted form, from every protocol and version that uses it. "
            "Fields: " + "; ".join(parts) + ". A field whose type changed between versions is in "
            "<key>__<type>.")
