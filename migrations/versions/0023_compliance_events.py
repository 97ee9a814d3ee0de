"""Compliance events and their corrective and preventive actions (CAPA), formal audits and their findings, alerts.

Revision ID: 0023
Revises: 0024

Every table is tenant-scoped (RLS on org_id); nothing is deleted (no DELETE grant). An event's life is driven by
its Temporal workflow (workflows/event.py); the rows are what the workflow's activities recorded. A system-raised
event carries a `source_key` (what raised it), unique per organization, so the same escalation or contamination
raises one event however often it is retried.

A finalized audit is immutable: the trigger `audits_finalized_immutable` refuses any UPDATE or DELETE of a
finalized audit and any change to its findings, for every role including the table owner (ENABLE ALWAYS: it also
fires under session_replication_role = replica). Its content hash is signed by the auditor and in the audit chain.

Alerts are created once per `dedupe_key` (e.g. `lot_expiry:<lot id>:<expiry date>`), addressed to people and/or
roles; reading and acknowledging are recorded on the row and in the audit log.
"""

from alembic import op

revision = "0023"
down_revision = "0024"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE compliance_events (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  code text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('deviation','contamination','incident','near_miss','equipment_failure')),
  severity text NOT NULL CHECK (severity IN ('low','medium','high','critical')),
  title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  description text NOT NULL,
  status text NOT NULL CHECK (status IN ('open','investigating','capa','effectiveness_check','closed')),
  source text NOT NULL CHECK (source IN ('person','escalation','contamination','gate_override')),
  source_key text,
  reporter_type text NOT NULL,
  reporter_id text NOT NULL,
  reporter_display text NOT NULL,
  root_cause text,
  effective boolean,
  effectiveness_note text,
  closed_at timestamptz,
  closed_by text,
  closed_by_display text,
  signature_id uuid,
  request_id text,
  workflow_started_at timestamptz,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  revision int NOT NULL DEFAULT 1,
  UNIQUE (org_id, code)
);
CREATE UNIQUE INDEX compliance_events_source ON compliance_events (org_id, source_key) WHERE source_key IS NOT NULL;
CREATE UNIQUE INDEX compliance_events_request ON compliance_events (org_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX compliance_events_list ON compliance_events (org_id, created_at DESC, id);
CREATE INDEX compliance_events_unstarted ON compliance_events (org_id) WHERE workflow_started_at IS NULL;

-- What an event is about: runs, steps (a task: one step of one run), samples, batches, equipment, evidence files.
CREATE TABLE compliance_event_links (
  org_id uuid NOT NULL REFERENCES organizations(id),
  event_id uuid NOT NULL REFERENCES compliance_events(id),
  target_type text NOT NULL CHECK (target_type IN ('run','step','sample','batch','equipment','evidence')),
  target_id uuid NOT NULL,
  PRIMARY KEY (event_id, target_type, target_id)
);
CREATE INDEX compliance_event_links_target ON compliance_event_links (org_id, target_type, target_id);

-- Each transition the event's workflow recorded, by its Update id: an activity re-run after a crash finds its
-- transition done and records nothing twice.
CREATE TABLE compliance_event_transitions (
  org_id uuid NOT NULL REFERENCES organizations(id),
  event_id uuid NOT NULL REFERENCES compliance_events(id),
  key text NOT NULL,
  action text NOT NULL,
  actor_id text NOT NULL,
  at timestamptz NOT NULL,
  PRIMARY KEY (event_id, key)
);

CREATE TABLE capa_actions (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  event_id uuid NOT NULL REFERENCES compliance_events(id),
  kind text NOT NULL CHECK (kind IN ('corrective','preventive')),
  description text NOT NULL,
  owner_id uuid NOT NULL,
  owner_display text NOT NULL,
  due_at timestamptz NOT NULL,
  status text NOT NULL CHECK (status IN ('open','done')),
  done_at timestamptz,
  done_by text,
  done_note text,
  escalation_level int NOT NULL DEFAULT -1,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  updated_at timestamptz NOT NULL,
  revision int NOT NULL DEFAULT 1
);
CREATE INDEX capa_actions_event ON capa_actions (event_id, created_at);
CREATE INDEX capa_actions_open ON capa_actions (org_id, due_at) WHERE status = 'open';

CREATE TABLE audits (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  code text NOT NULL,
  title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  framework text NOT NULL,
  period_start date NOT NULL,
  period_end date NOT NULL CHECK (period_end >= period_start),
  scope_runs uuid[] NOT NULL DEFAULT '{}',
  scope_labs text[] NOT NULL DEFAULT '{}',
  auditor_id uuid NOT NULL,
  auditor_display text NOT NULL,
  status text NOT NULL CHECK (status IN ('draft','finalized')),
  outcome text CHECK (outcome IN ('pass','conditional','fail')),
  summary text,
  content_hash text,
  signature_id uuid,
  finalized_at timestamptz,
  request_id text,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  updated_at timestamptz NOT NULL,
  revision int NOT NULL DEFAULT 1,
  UNIQUE (org_id, code),
  CHECK (status = 'draft' OR (outcome IS NOT NULL AND content_hash IS NOT NULL AND signature_id IS NOT NULL))
);
CREATE UNIQUE INDEX audits_request ON audits (org_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX audits_list ON audits (org_id, created_at DESC, id);

CREATE TABLE audit_findings (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  audit_id uuid NOT NULL REFERENCES audits(id),
  number int NOT NULL,
  severity text NOT NULL CHECK (severity IN ('observation','minor','major','critical')),
  title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  description text NOT NULL,
  evidence_ids uuid[] NOT NULL DEFAULT '{}',
  event_id uuid REFERENCES compliance_events(id),
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  UNIQUE (audit_id, number)
);

CREATE FUNCTION audit_refuse_finalized() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  parent uuid;
BEGIN
  IF TG_TABLE_NAME = 'audits' THEN
    IF OLD.status = 'finalized' THEN
      RAISE EXCEPTION 'audit % is finalized and cannot change', OLD.code USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  ELSE
    parent := CASE WHEN TG_OP = 'INSERT' THEN NEW.audit_id ELSE OLD.audit_id END;
    IF EXISTS (SELECT 1 FROM audits WHERE id = parent AND status = 'finalized')
       OR (TG_OP = 'UPDATE' AND EXISTS (SELECT 1 FROM audits WHERE id = NEW.audit_id AND status = 'finalized')) THEN
      RAISE EXCEPTION 'the findings of a finalized audit cannot change' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER audits_finalized_immutable BEFORE UPDATE OR DELETE ON audits
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_finalized();
ALTER TABLE audits ENABLE ALWAYS TRIGGER audits_finalized_immutable;
CREATE TRIGGER audit_findings_finalized_immutable BEFORE INSERT OR UPDATE OR DELETE ON audit_findings
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_finalized();
ALTER TABLE audit_findings ENABLE ALWAYS TRIGGER audit_findings_finalized_immutable;
-- TRUNCATE skips row triggers: refuse it outright on both tables.
CREATE FUNCTION audit_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audits are never truncated' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER audits_no_truncate BEFORE TRUNCATE ON audits FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();
ALTER TABLE audits ENABLE ALWAYS TRIGGER audits_no_truncate;
CREATE TRIGGER audit_findings_no_truncate BEFORE TRUNCATE ON audit_findings
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();
ALTER TABLE audit_findings ENABLE ALWAYS TRIGGER audit_findings_no_truncate;

CREATE TABLE alerts (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  kind text NOT NULL CHECK (kind IN ('lot_expiry','calibration_due','escalation','event_overdue','capa_overdue',
                                     'authorization_expiry','qualification_expiry','other')),
  severity text NOT NULL CHECK (severity IN ('info','notice','warning','critical')),
  subject_type text NOT NULL,
  subject_id text NOT NULL,
  title text NOT NULL,
  body text NOT NULL DEFAULT '',
  dedupe_key text NOT NULL,
  addressed_users uuid[] NOT NULL DEFAULT '{}',
  addressed_roles text[] NOT NULL DEFAULT '{}',
  due_at timestamptz,
  created_at timestamptz NOT NULL,
  read_at timestamptz,
  read_by text,
  acknowledged_at timestamptz,
  acknowledged_by text,
  acknowledged_by_display text,
  emailed_at timestamptz,
  email_error text,
  revision int NOT NULL DEFAULT 1,
  UNIQUE (org_id, dedupe_key)
);
CREATE INDEX alerts_list ON alerts (org_id, created_at DESC, id);
CREATE INDEX alerts_unsent ON alerts (org_id) WHERE emailed_at IS NULL AND email_error IS NULL;
"""

TABLES = ("compliance_events", "compliance_event_links", "compliance_event_transitions", "capa_actions", "audits", "audit_findings", "alerts")

TENANT_POLICY = """
ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON {t} USING (org_id = current_org()) WITH CHECK (org_id = current_org());
"""

GRANTS = """
GRANT SELECT, INSERT, UPDATE ON compliance_events, capa_actions, audits, audit_findings, alerts TO flasktrack_app;
GRANT SELECT, INSERT ON compliance_event_links, compliance_event_transitions TO flasktrack_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    for t in TABLES:
        op.execute(TENANT_POLICY.format(t=t))
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS alerts, audit_findings, audits, capa_actions, compliance_event_transitions,"
               " compliance_event_links, compliance_events CASCADE")
    op.execute("DROP FUNCTION IF EXISTS audit_refuse_finalized(), audit_refuse_truncate()")
