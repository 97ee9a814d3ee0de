"""How far sealing lags: the age of the oldest audit entry still pending, for the sealer's metric.

Revision ID: 0018
Revises: 0017

The sealers run without an organization, and row-level security hides every organization's pending entries from
them; like `audit_seal_all`, this function runs as its owner and answers one number, no entry's content.
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE FUNCTION audit_seal_lag() RETURNS double precision
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT coalesce(extract(epoch FROM clock_timestamp() - min(occurred_at)), 0)::float8
  FROM (SELECT occurred_at FROM audit_pending ORDER BY id LIMIT 1) oldest
$$;
REVOKE ALL ON FUNCTION audit_seal_lag() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_seal_lag() TO flasktrack_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS audit_seal_lag()")
