"""/healthz without an organization learns only how many runs keep failing, not which.

`failing_runs` answered every organization's run ids, activity names and error types to the unauthenticated
/healthz. It is replaced by `failing_run_count`, a count; an authenticated caller reads its own organization's
failing runs from `activity_failures` under row-level security.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = r"""
DROP FUNCTION IF EXISTS failing_runs(integer, timestamptz);
CREATE FUNCTION failing_run_count(p_failures integer, p_since timestamptz) RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT count(DISTINCT run_id)::integer FROM activity_failures
  WHERE failures >= p_failures AND last_failed_at > p_since
$$;
REVOKE ALL ON FUNCTION failing_run_count(integer, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION failing_run_count(integer, timestamptz) TO flasktrack_app;
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS failing_run_count(integer, timestamptz);
CREATE FUNCTION failing_runs(p_failures integer, p_since timestamptz)
RETURNS TABLE (run_id uuid, activity text, failures integer, error_type text, last_failed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT run_id, activity, failures, error_type, last_failed_at FROM activity_failures
  WHERE failures >= p_failures AND last_failed_at > p_since ORDER BY last_failed_at DESC LIMIT 100
$$;
REVOKE ALL ON FUNCTION failing_runs(integer, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION failing_runs(integer, timestamptz) TO flasktrack_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
