"""The system reports every organization has (seeded on first use, versioned like protocols: a change here ships as
a new version of the same key; the versions an organization had stay as they were).

Each is SQL over the organization's lake tables (the run record reads the operational database instead: it is the
record of one run, as signed). A report's SQL names tables that exist once the organization has the data (a form's
table once a protocol using the form is approved or a form is submitted); before that, executing it says which
table does not exist yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SystemReport:
    key: str
    version: int
    title: str
    description: str
    sql: str
    parameters: list[dict[str, Any]] = field(default_factory=list)
    layout: dict[str, Any] = field(default_factory=dict)
    chart: dict[str, Any] | None = None
    source: str = "lake"


SINCE_UNTIL = [
    {"name": "since", "type": "date", "label": "From (inclusive)", "required": False},
    {"name": "until", "type": "date", "label": "Until (exclusive)", "required": False},
]


def _period(column: str) -> str:
    return f"($since IS NULL OR {column} >= $since) AND ($until IS NULL OR {column} < $until)"


def _cols(*spec: tuple[str, str] | tuple[str, str, str] | tuple[str, str, str, str]) -> dict[str, Any]:
    out = []
    for s in spec:
        c: dict[str, Any] = {"name": s[0], "label": s[1]}
        if len(s) > 2:
            c["unit"] = s[2]
        if len(s) > 3:
            c["format"] = s[3]
        out.append(c)
    return {"columns": out}


RUN_RECORD = SystemReport(
    "run-record", 1, "Run record (electronic batch record)",
    "The record of one run: every step with its values and units, checklists, who and when, signatures with their "
    "meaning, evidence with its SHA-256, holds and escalations. Read from the operational database.",
    "-- built from the operational database: runs, tasks, form submissions, signatures, evidence, step events",
    [{"name": "run_id", "type": "string", "label": "Run id", "required": True}],
    _cols(("section", "Section"), ("step_key", "Step"), ("iteration", "#"), ("item", "Item"), ("value", "Value"),
          ("unit", "Unit"), ("actor", "By"), ("at", "At")),
    source="run_record")

OPS_RUNS = SystemReport(
    "operations-runs", 1, "Runs by status and protocol",
    "How many runs each protocol has in each status (each run's current state), launched in the period.",
    "SELECT protocol_key, status, count(*) AS runs, min(launched_at) AS first_launched, max(launched_at) AS "
    "last_launched\nFROM runs_current\nWHERE " + _period("launched_at") + "\nGROUP BY ALL\nORDER BY protocol_key, "
    "status",
    SINCE_UNTIL, _cols(("protocol_key", "Protocol"), ("status", "Status"), ("runs", "Runs")),
    {"mark": "bar", "encoding": {"x": {"field": "protocol_key", "type": "nominal", "title": "Protocol"},
                                 "y": {"field": "runs", "type": "quantitative", "title": "Runs"},
                                 "color": {"field": "status", "type": "nominal"}}})

OPS_ESCALATIONS = SystemReport(
    "operations-escalations", 1, "Overdue tasks and escalations by level",
    "Escalations fired in the period by level and step, and how many of those tasks are still open (overdue).",
    "WITH esc AS (\n  SELECT run_id, step_key, iteration, protocol_key,\n"
    "         coalesce(TRY_CAST(json_extract_string(detail, '$.level') AS BIGINT), 1) AS level, occurred_at\n"
    "  FROM step_events WHERE event = 'escalated' AND " + _period("occurred_at") + "\n),\n"
    "closed AS (\n  SELECT DISTINCT run_id, step_key, iteration FROM step_events\n"
    "  WHERE event IN ('completed', 'approved', 'rejected', 'cancelled')\n)\n"
    "SELECT esc.protocol_key, esc.step_key, esc.level, count(*) AS escalations,\n"
    "       count(*) FILTER (WHERE closed.run_id IS NULL) AS still_open\n"
    "FROM esc LEFT JOIN closed USING (run_id, step_key, iteration)\nGROUP BY ALL\nORDER BY level DESC, escalations "
    "DESC, protocol_key, step_key",
    SINCE_UNTIL, _cols(("protocol_key", "Protocol"), ("step_key", "Step"), ("level", "Level"),
                       ("escalations", "Escalations"), ("still_open", "Still open (overdue)")),
    {"mark": "bar", "encoding": {"x": {"field": "level", "type": "ordinal", "title": "Escalation level"},
                                 "y": {"aggregate": "sum", "field": "escalations", "type": "quantitative"},
                                 "color": {"field": "protocol_key", "type": "nominal"}}})

OPS_CYCLE = SystemReport(
    "operations-cycle-times", 1, "Cycle times per step",
    "From a step's opening to its completion or decision, in minutes, per protocol and step, for steps closed in "
    "the period.",
    "WITH o AS (SELECT run_id, step_key, iteration, protocol_key, min(occurred_at) AS opened_at FROM step_events\n"
    "           WHERE event = 'opened' GROUP BY ALL),\n"
    "c AS (SELECT run_id, step_key, iteration, min(occurred_at) AS closed_at FROM step_events\n"
    "      WHERE event IN ('completed', 'approved', 'rejected') GROUP BY ALL)\n"
    "SELECT o.protocol_key, o.step_key, count(*) AS closed,\n"
    "       round(avg(epoch(c.closed_at - o.opened_at)) / 60, 1) AS mean_minutes,\n"
    "       round(median(epoch(c.closed_at - o.opened_at)) / 60, 1) AS median_minutes,\n"
    "       round(max(epoch(c.closed_at - o.opened_at)) / 60, 1) AS max_minutes\n"
    "FROM o JOIN c USING (run_id, step_key, iteration)\nWHERE " + _period("c.closed_at") + "\nGROUP BY ALL\n"
    "ORDER BY o.protocol_key, o.step_key",
    SINCE_UNTIL, _cols(("protocol_key", "Protocol"), ("step_key", "Step"), ("closed", "Closed"),
                       ("mean_minutes", "Mean", "min"), ("median_minutes", "Median", "min"),
                       ("max_minutes", "Max", "min")),
    {"mark": "bar", "encoding": {"y": {"field": "step_key", "type": "nominal", "title": "Step"},
                                 "x": {"field": "median_minutes", "type": "quantitative", "title": "Median (min)"},
                                 "color": {"field": "protocol_key", "type": "nominal"}}})

OPS_WORKLOAD = SystemReport(
    "operations-workload", 1, "Workload per person",
    "Steps each person completed or decided, per month.",
    "SELECT actor_display AS person, strftime(date_trunc('month', occurred_at), '%Y-%m') AS month,\n"
    "       count(*) FILTER (WHERE event = 'completed') AS completed,\n"
    "       count(*) FILTER (WHERE event IN ('approved', 'rejected')) AS decided\n"
    "FROM step_events\nWHERE event IN ('completed', 'approved', 'rejected') AND actor_type <> 'system' AND "
    + _period("occurred_at") + "\nGROUP BY ALL\nORDER BY month, person",
    SINCE_UNTIL, _cols(("person", "Person"), ("month", "Month"), ("completed", "Completed"), ("decided", "Decided")),
    {"mark": "bar", "encoding": {"x": {"field": "month", "type": "ordinal"},
                                 "y": {"field": "completed", "type": "quantitative", "title": "Steps completed"},
                                 "color": {"field": "person", "type": "nominal"}}})

TC_CONTAMINATION = SystemReport(
    "science-tc-contamination", 1, "Tissue culture contamination rate",
    "Contaminated vessels discarded at the shoot count over vessels subcultured, per plant line (the run's first "
    "subject), medium batch, operator (who subcultured) and month of the subculture.",
    "SELECT coalesce(json_extract_string(r.subjects, '$[0].id'), 'unknown') AS line,\n"
    "       coalesce(s.media_batch, 'unknown') AS medium,\n"
    "       s.submitted_by_display AS operator,\n"
    "       strftime(date_trunc('month', s.submitted_at), '%Y-%m') AS month,\n"
    "       CAST(sum(s.vessels) AS BIGINT) AS vessels,\n"
    "       CAST(sum(c.contaminated_vessels) AS BIGINT) AS contaminated_vessels,\n"
    "       round(sum(c.contaminated_vessels) / sum(s.vessels), 4) AS contamination_rate\n"
    "FROM form_plant_subculture s\n"
    "JOIN form_shoot_count c ON c.run_id = s.run_id AND c.iteration = s.iteration\n"
    "LEFT JOIN runs_current r ON r.run_id = s.run_id\n"
    "WHERE " + _period("s.submitted_at") + "\nGROUP BY ALL\nORDER BY month, line, medium, operator",
    SINCE_UNTIL, _cols(("line", "Plant line"), ("medium", "Medium batch"), ("operator", "Operator"),
                       ("month", "Month"), ("vessels", "Vessels"), ("contaminated_vessels", "Contaminated"),
                       ("contamination_rate", "Contamination rate", "", ".1%")),
    {"mark": "bar", "encoding": {"x": {"field": "month", "type": "ordinal", "title": "Month"},
                                 "y": {"field": "contamination_rate", "type": "quantitative",
                                       "aggregate": "mean", "title": "Contamination rate",
                                       "axis": {"format": ".0%"}},
                                 "color": {"field": "operator", "type": "nominal"},
                                 "xOffset": {"field": "operator"}}})

FUNGAL_PASSAGES = SystemReport(
    "science-fungal-passages", 1, "Fungal passage history and growth",
    "Every passage of each isolate: parent and new culture, plates, colony diameter at the growth check, "
    "contamination and sporulation.",
    "SELECT i.parent_culture AS parent_culture, i.new_culture AS new_culture, i.iteration + 1 AS passage,\n"
    "       i.submitted_at AS inoculated_at, i.submitted_by_display AS operator, i.plates,\n"
    "       g.colony_diameter_mm, g.contaminated, g.sporulating, i.run_id\n"
    "FROM form_fungal_inoculation i\n"
    "LEFT JOIN form_fungal_growth_check g ON g.run_id = i.run_id AND g.iteration = i.iteration\n"
    "WHERE " + _period("i.submitted_at") + "\nORDER BY i.run_id, passage",
    SINCE_UNTIL, _cols(("parent_culture", "Parent culture"), ("new_culture", "New culture"), ("passage", "Passage"),
                       ("inoculated_at", "Inoculated"), ("operator", "Operator"), ("plates", "Plates"),
                       ("colony_diameter_mm", "Colony diameter", "mm"), ("contaminated", "Contaminated"),
                       ("sporulating", "Sporulating")),
    {"mark": {"type": "line", "point": True},
     "encoding": {"x": {"field": "passage", "type": "ordinal", "title": "Passage"},
                  "y": {"field": "colony_diameter_mm", "type": "quantitative", "title": "Colony diameter (mm)"},
                  "color": {"field": "run_id", "type": "nominal", "legend": None}}})

AGRO_EFFICIENCY = SystemReport(
    "science-agro-efficiency", 1, "Agrobacterium transformation efficiency",
    "Leaf discs with kanamycin-resistant shoots over discs put on selection, per strain and construct (plasmid).",
    "SELECT c.strain, coalesce(c.construct, 'unknown') AS construct, count(DISTINCT c.run_id) AS runs,\n"
    "       CAST(sum(p.discs_plated) AS BIGINT) AS discs_plated,\n"
    "       CAST(sum(g.discs_with_shoots) AS BIGINT) AS discs_with_shoots,\n"
    "       round(sum(g.discs_with_shoots) / nullif(sum(p.discs_plated), 0), 4) AS efficiency\n"
    "FROM form_agro_culture c\n"
    "JOIN form_selection_plating p ON p.run_id = c.run_id\n"
    "JOIN form_regeneration_score g ON g.run_id = c.run_id AND g.iteration = p.iteration\n"
    "WHERE " + _period("c.submitted_at") + "\nGROUP BY ALL\nORDER BY c.strain, construct",
    SINCE_UNTIL, _cols(("strain", "Strain"), ("construct", "Construct"), ("runs", "Runs"),
                       ("discs_plated", "Discs on selection"), ("discs_with_shoots", "Discs with shoots"),
                       ("efficiency", "Efficiency", "", ".1%")),
    {"mark": "bar", "encoding": {"x": {"field": "strain", "type": "nominal"},
                                 "y": {"field": "efficiency", "type": "quantitative", "axis": {"format": ".0%"}},
                                 "color": {"field": "construct", "type": "nominal"},
                                 "xOffset": {"field": "construct"}}})

AUDIT_ACTIVITY = SystemReport(
    "audit-activity", 1, "Audit activity",
    "Audit entries by actor, action and entity type in the period, with how many were denied or refused.",
    "SELECT coalesce(actor_display, actor_id) AS actor, action, entity_type, count(*) AS entries,\n"
    "       count(*) FILTER (WHERE action IN ('deny', 'refuse')) AS denied_or_refused,\n"
    "       min(occurred_at) AS first_at, max(occurred_at) AS last_at\n"
    "FROM audit_log\nWHERE " + _period("occurred_at") + "\nGROUP BY ALL\nORDER BY entries DESC, actor, action",
    SINCE_UNTIL, _cols(("actor", "Actor"), ("action", "Action"), ("entity_type", "Entity type"),
                       ("entries", "Entries"), ("denied_or_refused", "Denied or refused")),
    {"mark": "bar", "encoding": {"y": {"field": "actor", "type": "nominal"},
                                 "x": {"aggregate": "sum", "field": "entries", "type": "quantitative"},
                                 "color": {"field": "action", "type": "nominal"}}})

AUDIT_DENIALS = SystemReport(
    "audit-denials", 1, "Denied and refused actions",
    "Every denied (403) or refused (409/422) action in the period, newest first.",
    "SELECT seq, occurred_at, coalesce(actor_display, actor_id) AS actor, action, entity_type, entity_id, reason,\n"
    "       request_id\nFROM audit_log\nWHERE action IN ('deny', 'refuse') AND " + _period("occurred_at") +
    "\nORDER BY seq DESC",
    SINCE_UNTIL, _cols(("seq", "Seq"), ("occurred_at", "At"), ("actor", "Actor"), ("action", "Action"),
                       ("entity_type", "Entity type"), ("entity_id", "Entity"), ("reason", "Reason")))

# Compliance (domain/compliance, domain/events, domain/inspections). Ageing and expiry count whole days up to `as_of`
# (today when not given: give a date to make a finalized report mean the same day whenever it is re-read).
AS_OF = {"name": "as_of", "type": "date", "label": "As of (default: today, UTC)", "required": False}
_AS_OF = "coalesce($as_of, current_date)"
WITHIN = {"name": "within_days", "type": "integer", "label": "Expiring within (days)", "required": False,
          "default": 90}
SEVERITY_ORDER = ["critical", "high", "major", "medium", "minor", "low", "observation"]


def _days(day: str) -> str:
    """Whole days from `day` (a DATE expression) to the report's as-of date."""
    return f"date_diff('day', {day}, {_AS_OF})"


def _left(day: str) -> str:
    """Whole days from the report's as-of date to `day` (negative once past)."""
    return f"date_diff('day', {_AS_OF}, {day})"


COMPLIANCE_OPEN_EVENTS = SystemReport(
    "compliance-open-events", 1, "Open deviations and other compliance events",
    "Every compliance event not yet closed (deviations, contaminations, incidents, near misses, equipment failures), "
    "with its status and age in days on the as-of date, oldest first.",
    "SELECT code, kind, severity, status, title, CAST(created_at AS DATE) AS raised_on,\n"
    f"       {_days('CAST(created_at AS DATE)')} AS age_days,\n"
    f"       CASE WHEN {_days('CAST(created_at AS DATE)')} <= 7 THEN '0-7 days'\n"
    f"            WHEN {_days('CAST(created_at AS DATE)')} <= 30 THEN '8-30 days'\n"
    f"            WHEN {_days('CAST(created_at AS DATE)')} <= 90 THEN '31-90 days' ELSE 'over 90 days' END AS age,\n"
    "       reporter_display AS raised_by\n"
    "FROM compliance_events_current\n"
    f"WHERE status <> 'closed' AND CAST(created_at AS DATE) <= {_AS_OF} AND ($kind IS NULL OR kind = $kind)\n"
    "ORDER BY age_days DESC, code",
    [AS_OF, {"name": "kind", "type": "string", "label": "Kind", "required": False,
             "choices": ["deviation", "contamination", "incident", "near_miss", "equipment_failure"]}],
    _cols(("code", "Event"), ("kind", "Kind"), ("severity", "Severity"), ("status", "Status"), ("title", "What"),
          ("raised_on", "Raised", "", "date"), ("age_days", "Age", "days"), ("raised_by", "Raised by")),
    {"mark": "bar", "encoding": {
        "x": {"field": "age", "type": "ordinal", "title": "Open for",
              "sort": ["0-7 days", "8-30 days", "31-90 days", "over 90 days"]},
        "y": {"aggregate": "count", "type": "quantitative", "title": "Open events"},
        "color": {"field": "severity", "type": "nominal", "sort": SEVERITY_ORDER}}})

COMPLIANCE_CAPA_AGEING = SystemReport(
    "compliance-capa-ageing", 1, "CAPA ageing",
    "Every corrective or preventive action still open, with its event, owner, due date, age and days past due on "
    "the as-of date and how far it has escalated; most overdue first.",
    "SELECT e.code AS event_code, e.kind AS event_kind, e.severity AS event_severity, a.kind, a.description,\n"
    "       coalesce(a.owner_display, a.owner_id) AS owner, CAST(a.due_at AS DATE) AS due_on,\n"
    f"       {_days('CAST(coalesce(a.created_at, a.updated_at) AS DATE)')} AS age_days,\n"
    f"       greatest({_days('CAST(a.due_at AS DATE)')}, 0) AS days_overdue,\n"
    f"       CASE WHEN CAST(a.due_at AS DATE) < {_AS_OF} THEN 'overdue' ELSE 'not yet due' END AS state,\n"
    "       CASE coalesce(a.escalation_level, -1) WHEN -1 THEN 'none' WHEN 0 THEN 'owner alerted'\n"
    "            ELSE 'lab managers alerted' END AS escalation\n"
    "FROM capa_actions_current a JOIN compliance_events_current e USING (event_id)\n"
    f"WHERE a.status = 'open' AND CAST(coalesce(a.created_at, a.updated_at) AS DATE) <= {_AS_OF}\n"
    "ORDER BY days_overdue DESC, due_on, event_code, a.kind",
    [AS_OF],
    _cols(("event_code", "Event"), ("event_kind", "Event kind"), ("kind", "Action"), ("description", "What"),
          ("owner", "Owner"), ("due_on", "Due", "", "date"), ("age_days", "Age", "days"),
          ("days_overdue", "Overdue", "days"), ("escalation", "Escalation")),
    {"mark": "bar", "encoding": {
        "y": {"field": "owner", "type": "nominal", "title": "Owner"},
        "x": {"aggregate": "count", "type": "quantitative", "title": "Open actions"},
        "color": {"field": "state", "type": "nominal", "sort": ["overdue", "not yet due"],
                  "scale": {"domain": ["overdue", "not yet due"], "range": ["#d62728", "#9ecae1"]}}}})

_EXPIRY_STATE = ("CASE WHEN {d} < 0 THEN 'expired' WHEN {d} <= 30 THEN 'within 30 days' "
                 "ELSE 'within the window' END")

COMPLIANCE_AUTH_EXPIRY = SystemReport(
    "compliance-authorization-expiry", 1, "Authorization expiry",
    "Authorization records (IBC approvals, permits, ...) in force or awaiting signature that have expired or expire "
    "within the window, on the as-of date; soonest first. A run whose surface needs one waits on hold once it "
    "lapses.",
    "SELECT code, authorization_type, title, issuer, status, CAST(valid_until AS DATE) AS valid_until,\n"
    f"       {_left('CAST(valid_until AS DATE)')} AS days_left,\n"
    "       " + _EXPIRY_STATE.format(d=_left('CAST(valid_until AS DATE)')) + " AS state\n"
    "FROM authorizations_current\n"
    f"WHERE status IN ('active', 'pending') AND {_left('CAST(valid_until AS DATE)')} <= "
    "coalesce($within_days, 90)\nORDER BY days_left, code",
    [AS_OF, WITHIN],
    _cols(("code", "Record"), ("authorization_type", "Type"), ("title", "Title"), ("issuer", "Issuer"),
          ("status", "Status"), ("valid_until", "Valid until", "", "date"), ("days_left", "Days left", "days"),
          ("state", "State")),
    {"mark": "bar", "encoding": {
        "y": {"field": "code", "type": "nominal", "title": "Authorization", "sort": {"field": "days_left"}},
        "x": {"field": "days_left", "type": "quantitative", "title": "Days left"},
        "color": {"field": "state", "type": "nominal", "sort": ["expired", "within 30 days", "within the window"]}}})

COMPLIANCE_QUAL_EXPIRY = SystemReport(
    "compliance-qualification-expiry", 1, "Qualification expiry",
    "Each member's latest training record per course that has expired or expires within the window, on the as-of "
    "date; soonest first. A step requiring the course refuses a person whose training has expired. (The lake's "
    "training records name members by user id.)",
    "WITH latest AS (\n  SELECT * FROM qualifications\n"
    f"  WHERE completed_on <= {_AS_OF}\n"
    "  QUALIFY row_number() OVER (PARTITION BY user_id, course ORDER BY completed_on DESC, recorded_at DESC) = 1\n)\n"
    "SELECT q.user_id AS member, q.course, q.completed_on, q.expires_on,\n"
    f"       {_left('q.expires_on')} AS days_left,\n"
    "       " + _EXPIRY_STATE.format(d=_left('q.expires_on')) + " AS state\n"
    "FROM latest q\n"
    f"WHERE q.expires_on IS NOT NULL AND {_left('q.expires_on')} <= coalesce($within_days, 90)\n"
    "ORDER BY days_left, member, q.course",
    [AS_OF, WITHIN],
    _cols(("member", "Member (user id)"), ("course", "Course"), ("completed_on", "Completed", "", "date"),
          ("expires_on", "Expires", "", "date"), ("days_left", "Days left", "days"), ("state", "State")),
    {"mark": "bar", "encoding": {
        "y": {"field": "member", "type": "nominal", "title": "Member"},
        "x": {"aggregate": "count", "type": "quantitative", "title": "Courses"},
        "color": {"field": "state", "type": "nominal", "sort": ["expired", "within 30 days", "within the window"]}}})

COMPLIANCE_CHECKLIST_REFUSALS = SystemReport(
    "compliance-checklist-refusals", 1, "Checklist refusals",
    "Task completions refused because a checklist item was not confirmed, per item (compliance_<key>: an item a "
    "framework attached by the run's compliance surface; else the protocol's own), month and person, from the "
    "audit log's refusals in the period. Reads the audit log: for the roles that read all of it (auditor, "
    "admin, owner).",
    "WITH refused AS (\n"
    "  SELECT seq, occurred_at, coalesce(actor_display, actor_id) AS person, entity_id AS task_id,\n"
    "         unnest(json_extract_string(body, '$.after.reasons[*]')) AS why\n"
    "  FROM audit_log\n  WHERE action = 'refuse' AND entity_type = 'task' AND " + _period("occurred_at") + "\n)\n"
    "SELECT split_part(substr(why, 11), ':', 1) AS item,\n"
    "       starts_with(substr(why, 11), 'compliance_') AS from_framework,\n"
    "       strftime(date_trunc('month', occurred_at), '%Y-%m') AS month, person,\n"
    "       count(DISTINCT seq) AS refusals, count(DISTINCT task_id) AS tasks, max(occurred_at) AS last_at\n"
    "FROM refused\nWHERE why LIKE 'checklist.%: not confirmed'\nGROUP BY ALL\n"
    "ORDER BY month, refusals DESC, item, person",
    SINCE_UNTIL, _cols(("item", "Checklist item"), ("from_framework", "From a framework"), ("month", "Month"),
                       ("person", "Person"), ("refusals", "Refusals"), ("tasks", "Tasks"), ("last_at", "Last")),
    {"mark": "bar", "encoding": {
        "y": {"field": "item", "type": "nominal", "title": "Checklist item"},
        "x": {"aggregate": "sum", "field": "refusals", "type": "quantitative", "title": "Refused completions"},
        "color": {"field": "person", "type": "nominal"}}})

COMPLIANCE_FINDINGS = SystemReport(
    "compliance-audit-findings", 1, "Audit findings by framework",
    "Findings recorded in the period per framework audited against and severity: how many, in how many audits, "
    "how many in finalized audits and how many have a compliance event tracking their corrective work.",
    "SELECT a.framework, f.severity, count(*) AS findings, count(DISTINCT a.audit_id) AS audits,\n"
    "       count(*) FILTER (WHERE a.status = 'finalized') AS in_finalized_audits,\n"
    "       count(f.event_id) AS with_corrective_event\n"
    "FROM audit_findings f JOIN audits_current a USING (audit_id)\n"
    "WHERE " + _period("f.created_at") + "\nGROUP BY a.framework, f.severity\n"
    "ORDER BY a.framework, list_position(['critical', 'major', 'minor', 'observation'], f.severity)",
    SINCE_UNTIL, _cols(("framework", "Framework"), ("severity", "Severity"), ("findings", "Findings"),
                       ("audits", "Audits"), ("in_finalized_audits", "In finalized audits"),
                       ("with_corrective_event", "With a corrective event")),
    {"mark": "bar", "encoding": {
        "x": {"field": "framework", "type": "nominal", "title": "Framework"},
        "y": {"aggregate": "sum", "field": "findings", "type": "quantitative", "title": "Findings"},
        "color": {"field": "severity", "type": "nominal", "sort": ["critical", "major", "minor", "observation"]}}})

SYSTEM_REPORTS: tuple[SystemReport, ...] = (RUN_RECORD, OPS_RUNS, OPS_ESCALATIONS, OPS_CYCLE, OPS_WORKLOAD,
                                            TC_CONTAMINATION, FUNGAL_PASSAGES, AGRO_EFFICIENCY, AUDIT_ACTIVITY,
                                            AUDIT_DENIALS, COMPLIANCE_OPEN_EVENTS, COMPLIANCE_CAPA_AGEING,
                                            COMPLIANCE_AUTH_EXPIRY, COMPLIANCE_QUAL_EXPIRY,
                                            COMPLIANCE_CHECKLIST_REFUSALS, COMPLIANCE_FINDINGS)
