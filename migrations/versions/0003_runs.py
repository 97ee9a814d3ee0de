"""Protocol runs: runs, their tasks, form submissions, step events, notifications, request idempotency.

Revision ID: 0003
Revises: 0002

Every table is tenant-scoped (RLS on org_id). Rows the workflow's activities write carry keys derived
from the run and the step (task id, event id, notification id), so an activity retried after a crash
inserts nothing twice. Form submissions and step events are append-only, like the audit log.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE runs (
  id uuid PRIMARY KEY,                      -- also the Temporal workflow id
  org_id uuid NOT NULL REFERENCES organizations(id),
  protocol_version_id uuid NOT NULL REFERENCES protocol_versions(id),
  protocol_key text NOT NULL,
  protocol_version int NOT NULL,
  protocol_title text NOT NULL,
  status text NOT NULL CHECK (status IN ('running','on_hold','completed','rejected','cancelled','failed')),
  status_reason text,
  subjects jsonb NOT NULL DEFAULT '[]',     -- [{"type": "sample"|"batch", "id": "..."}]
  parameters jsonb NOT NULL DEFAULT '{}',
  time_scale double precision NOT NULL DEFAULT 1 CHECK (time_scale > 0 AND time_scale <= 1),
  launched_by text NOT NULL,
  launched_by_display text NOT NULL,
  launched_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  ended_at timestamptz,
  revision int NOT NULL DEFAULT 1,          -- +1 per status change (the lake keeps every revision)
  request_id text
);
CREATE INDEX runs_org_launched ON runs (org_id, launched_at DESC);
CREATE INDEX runs_org_status ON runs (org_id, status);
CREATE INDEX runs_subjects ON runs USING gin (subjects jsonb_path_ops);

-- A human step (task or approval) of a run, once per time it opens: iteration counts the earlier
-- openings of the same step in the run (the repeat iteration, or the rework round after a rejection).
CREATE TABLE tasks (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  run_id uuid NOT NULL REFERENCES runs(id),
  step_key text NOT NULL,
  iteration int NOT NULL CHECK (iteration >= 0),
  kind text NOT NULL CHECK (kind IN ('task','approval')),
  title text NOT NULL,
  roles text[] NOT NULL,
  spec jsonb NOT NULL,                      -- the step as the pinned plan has it (form, checklist, meaning…)
  status text NOT NULL CHECK (status IN ('open','completed','approved','rejected','cancelled')),
  opened_at timestamptz NOT NULL,
  due_at timestamptz,
  escalation_level int NOT NULL DEFAULT 0,  -- escalation levels fired so far (0 = none)
  escalated_at timestamptz,
  claimed_by uuid,
  claimed_by_display text,
  claimed_at timestamptz,
  closed_at timestamptz,
  closed_by text,
  closed_by_display text,
  UNIQUE (run_id, step_key, iteration)
);
CREATE INDEX tasks_inbox ON tasks (org_id, status, due_at);
CREATE INDEX tasks_run ON tasks (run_id, opened_at);

-- The first answer to each task request (completion or approval), by the request id the client sent:
-- a retried request gets this answer back instead of acting twice.
CREATE TABLE task_requests (
  org_id uuid NOT NULL REFERENCES organizations(id),
  request_id text NOT NULL,
  task_id uuid NOT NULL REFERENCES tasks(id),
  run_id uuid NOT NULL REFERENCES runs(id),
  result jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (org_id, request_id)
);

CREATE TABLE form_submissions (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  run_id uuid NOT NULL REFERENCES runs(id),
  task_id uuid NOT NULL UNIQUE REFERENCES tasks(id),   -- one submission completes one task
  step_key text NOT NULL,
  form_key text NOT NULL,
  iteration int NOT NULL,
  submitted_by text NOT NULL,
  submitted_by_display text NOT NULL,
  submitted_at timestamptz NOT NULL,
  fields jsonb NOT NULL,
  field_values jsonb NOT NULL,
  checklist jsonb NOT NULL,
  evidence jsonb NOT NULL,
  request_id text
);
CREATE INDEX form_submissions_run ON form_submissions (run_id);

CREATE TABLE step_events (
  id uuid PRIMARY KEY,                      -- uuid5(run id, idempotency key): written once
  org_id uuid NOT NULL REFERENCES organizations(id),
  run_id uuid NOT NULL REFERENCES runs(id),
  task_id uuid,
  step_key text NOT NULL,
  step_kind text NOT NULL,
  event text NOT NULL,
  iteration int NOT NULL,
  actor_type text NOT NULL,
  actor_id text NOT NULL,
  actor_display text NOT NULL,
  occurred_at timestamptz NOT NULL,
  detail jsonb NOT NULL
);
CREATE INDEX step_events_run ON step_events (run_id, occurred_at);

CREATE TABLE notifications (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  run_id uuid REFERENCES runs(id),
  task_id uuid REFERENCES tasks(id),
  recipient_role text NOT NULL,
  recipient_user_id uuid,
  channel text NOT NULL,
  subject text NOT NULL,
  body text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  read_at timestamptz
);
CREATE INDEX notifications_inbox ON notifications (org_id, recipient_role, created_at DESC);

CREATE TRIGGER form_submissions_append_only BEFORE UPDATE OR DELETE ON form_submissions
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
ALTER TABLE form_submissions ENABLE ALWAYS TRIGGER form_submissions_append_only;
CREATE TRIGGER step_events_append_only BEFORE UPDATE OR DELETE ON step_events
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
ALTER TABLE step_events ENABLE ALWAYS TRIGGER step_events_append_only;
"""

TABLES = ("runs", "tasks", "task_requests", "form_submissions", "step_events", "notifications")

TENANT_POLICY = """
ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON {t} USING (org_id = current_org()) WITH CHECK (org_id = current_org());
"""

GRANTS = """
GRANT SELECT, INSERT, UPDATE ON runs, tasks, notifications TO flasktrack_app;
GRANT SELECT, INSERT ON task_requests, form_submissions, step_events TO flasktrack_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    for t in TABLES:
        op.execute(TENANT_POLICY.format(t=t))
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS notifications, step_events, form_submissions, task_requests, tasks, runs CASCADE")
