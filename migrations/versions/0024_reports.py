"""Reports as audited records: definitions (versioned), reports and their lifecycle, executions, exports.

Revision ID: 0024
Revises: 0025

- `report_definitions`: SQL over the organization's lake tables (or a shipped builder such as the run record),
  typed parameters, a table layout and an optional Vega-Lite chart; one row per version, whose content never
  changes (a trigger refuses it; only who it is shared with, and its archiving, may change).
- `reports`: one report of a definition version with its parameters, through created → updated → in_review →
  finalized. A finalized report is locked: a trigger refuses every UPDATE and DELETE, for the table owner too.
- `report_executions`: every execution with its parameters, row count, duration and the Delta version of each
  table it read (append-only).
- `report_exports`: every export and download of an execution (append-only).
"""

from alembic import op

revision = "0024"
down_revision = "0025"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE report_definitions (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  key text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_-]{0,79}$'),
  version int NOT NULL CHECK (version >= 1),
  kind text NOT NULL CHECK (kind IN ('system','custom')),
  source text NOT NULL CHECK (source IN ('lake','run_record')),
  title text NOT NULL,
  description text,
  sql text NOT NULL,
  parameters jsonb NOT NULL DEFAULT '[]',
  layout jsonb NOT NULL DEFAULT '{}',
  chart jsonb,
  shared_roles text[] NOT NULL DEFAULT '{}',
  created_by text NOT NULL,
  created_by_display text NOT NULL,
  created_at timestamptz NOT NULL,
  archived_at timestamptz,
  UNIQUE (org_id, key, version)
);
CREATE INDEX report_definitions_list ON report_definitions (org_id, key, version DESC);

CREATE TABLE report_executions (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  definition_id uuid NOT NULL REFERENCES report_definitions(id),
  report_id uuid,
  purpose text NOT NULL CHECK (purpose IN ('execute','reproduce')),
  parameters jsonb NOT NULL,
  table_versions jsonb NOT NULL,
  row_count bigint NOT NULL CHECK (row_count >= 0),
  duration_ms double precision NOT NULL,
  result_sha256 text NOT NULL CHECK (result_sha256 ~ '^[0-9a-f]{64}$'),
  result_key text NOT NULL,
  executed_by text NOT NULL,
  executed_by_display text NOT NULL,
  executed_at timestamptz NOT NULL
);
CREATE INDEX report_executions_report ON report_executions (org_id, report_id, executed_at DESC);
CREATE INDEX report_executions_definition ON report_executions (org_id, definition_id, executed_at DESC);

CREATE TABLE reports (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  definition_id uuid NOT NULL REFERENCES report_definitions(id),
  title text NOT NULL,
  parameters jsonb NOT NULL,
  status text NOT NULL CHECK (status IN ('created','updated','in_review','finalized')),
  author_id text NOT NULL,
  author_display text NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  execution_id uuid REFERENCES report_executions(id),
  submitted_at timestamptz,
  finalized_at timestamptz,
  finalized_by text,
  signature_id uuid REFERENCES signatures(id),
  content_hash text,
  pdf_sha256 text,
  pdf_key text,
  revision int NOT NULL DEFAULT 1
);
CREATE INDEX reports_list ON reports (org_id, updated_at DESC, id);

CREATE TABLE report_exports (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  execution_id uuid NOT NULL REFERENCES report_executions(id),
  report_id uuid,
  format text NOT NULL CHECK (format IN ('csv','jsonl','parquet','xlsx','pdf')),
  sha256 text NOT NULL,
  size_bytes bigint NOT NULL,
  exported_by text NOT NULL,
  exported_by_display text NOT NULL,
  exported_at timestamptz NOT NULL
);
CREATE INDEX report_exports_execution ON report_exports (org_id, execution_id);

-- A definition version's content never changes: edits are new versions.
CREATE FUNCTION report_definition_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' OR NEW.sql IS DISTINCT FROM OLD.sql OR NEW.parameters IS DISTINCT FROM OLD.parameters
     OR NEW.layout IS DISTINCT FROM OLD.layout OR NEW.chart IS DISTINCT FROM OLD.chart
     OR NEW.key IS DISTINCT FROM OLD.key OR NEW.version IS DISTINCT FROM OLD.version
     OR NEW.source IS DISTINCT FROM OLD.source OR NEW.org_id IS DISTINCT FROM OLD.org_id
     OR NEW.title IS DISTINCT FROM OLD.title THEN
    RAISE EXCEPTION 'report definition % v% is a version: edit it as a new version', OLD.key, OLD.version
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER report_definitions_frozen BEFORE UPDATE OR DELETE ON report_definitions
  FOR EACH ROW EXECUTE FUNCTION report_definition_frozen();
ALTER TABLE report_definitions ENABLE ALWAYS TRIGGER report_definitions_frozen;

-- A finalized report is locked: nothing changes it any more, whoever connects (the table owner included).
CREATE FUNCTION report_locked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status = 'finalized' THEN
    RAISE EXCEPTION 'report % is finalized and locked: % refused', OLD.id, TG_OP
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'reports are not deleted: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER reports_locked BEFORE UPDATE OR DELETE ON reports
  FOR EACH ROW EXECUTE FUNCTION report_locked();
ALTER TABLE reports ENABLE ALWAYS TRIGGER reports_locked;
CREATE TRIGGER reports_no_truncate BEFORE TRUNCATE ON reports
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

CREATE TRIGGER report_executions_append_only BEFORE UPDATE OR DELETE ON report_executions
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
ALTER TABLE report_executions ENABLE ALWAYS TRIGGER report_executions_append_only;
CREATE TRIGGER report_exports_append_only BEFORE UPDATE OR DELETE ON report_exports
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
ALTER TABLE report_exports ENABLE ALWAYS TRIGGER report_exports_append_only;

-- The Delta versions finalized reports read: the lake's vacuum keeps them (platform services, owner connection).
CREATE VIEW report_pinned_versions AS
  SELECT t.key AS table_name, min((t.value)::text::bigint) AS version
  FROM reports r JOIN report_executions e ON e.id = r.execution_id,
       jsonb_each(e.table_versions) t
  WHERE r.status = 'finalized'
  GROUP BY t.key;
REVOKE ALL ON report_pinned_versions FROM PUBLIC;
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flasktrack_sink') THEN
    GRANT SELECT ON report_pinned_versions TO flasktrack_sink;
  END IF;
END $$;
"""

TABLES = ("report_definitions", "report_executions", "reports", "report_exports")

TENANT_POLICY = """
ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON {t} USING (org_id = current_org()) WITH CHECK (org_id = current_org());
"""

GRANTS = """
GRANT SELECT, INSERT, UPDATE ON report_definitions, reports TO flasktrack_app;
GRANT SELECT, INSERT ON report_executions, report_exports TO flasktrack_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    for t in TABLES:
        op.execute(TENANT_POLICY.format(t=t))
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS report_pinned_versions")
    op.execute("DROP TABLE IF EXISTS report_exports, reports, report_executions, report_definitions CASCADE")
    op.execute("DROP FUNCTION IF EXISTS report_locked(), report_definition_frozen()")
