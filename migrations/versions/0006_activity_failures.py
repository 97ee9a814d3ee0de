"""Activity failures, so /healthz can name the runs whose records keep failing.

The run workflow's activities are local activities: Temporal lists no pending attempt for them. Each failed
attempt that will be retried is counted here, per run and activity, and a later success clears it. The table
is under row-level security like every tenant table; /healthz, which has no organization, reads only run ids,
activity names, counts and the error's type through `failing_runs`.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE activity_failures (
  org_id uuid NOT NULL REFERENCES organizations(id),
  run_id uuid NOT NULL REFERENCES runs(id),
  activity text NOT NULL,
  failures integer NOT NULL,
  error_type text NOT NULL,
  error text NOT NULL,
  first_failed_at timestamptz NOT NULL DEFAULT now(),
  last_failed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, activity)
);
ALTER TABLE activity_failures ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON activity_failures USING (org_id = current_org()) WITH CHECK (org_id = current_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON activity_failures TO flasktrack_app;

-- /healthz: runs whose activity failed at least p_failures times in a row, the last time after p_since.
CREATE FUNCTION failing_runs(p_failures integer, p_since timestamptz)
RETURNS TABLE (run_id uuid, activity text, failures integer, error_type text, last_failed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT run_id, activity, failures, error_type, last_failed_at FROM activity_failures
  WHERE failures >= p_failures AND last_failed_at > p_since ORDER BY last_failed_at DESC LIMIT 100
$$;
REVOKE ALL ON FUNCTION failing_runs(integer, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION failing_runs(integer, timestamptz) TO flasktrack_app;
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS failing_runs(integer, timestamptz);
DROP TABLE IF EXISTS activity_failures;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
