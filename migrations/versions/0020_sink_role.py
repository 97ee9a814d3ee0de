"""The lake sink's own role, flasktrack_sink: it moves every organization's outbox rows and sealed audit entries
to the lake, and may do nothing else.

It reads rows of every organization, which the tenant policies hide from any role without an org set; instead of
BYPASSRLS (a superuser-only attribute managed PostgreSQL services do not grant) it gets its own policies, on these
three tables only. Grants: read, claim (UPDATE of batch_id alone) and acknowledge (DELETE) outbox rows; read
audit_log and audit_heads; draw batch ids from the outbox id sequence (and move it forward after a restore);
report its heartbeat through service_heartbeat(). Its password is set by `flasktrack db upgrade` from
FLASKTRACK_SINK_DB_PASSWORD, as the application role's is.

Revision ID: 0020
Revises: 0018
"""

from alembic import op

revision = "0020"
down_revision = "0018"
branch_labels = None
depends_on = None

SINK = "flasktrack_sink"

UPGRADE = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SINK}') THEN
    CREATE ROLE {SINK} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
END $$;
GRANT USAGE ON SCHEMA public TO {SINK};
GRANT SELECT, DELETE ON outbox TO {SINK};
GRANT UPDATE (batch_id) ON outbox TO {SINK};
GRANT SELECT ON audit_log, audit_heads TO {SINK};
GRANT USAGE, SELECT, UPDATE ON SEQUENCE outbox_id_seq TO {SINK};
GRANT EXECUTE ON FUNCTION service_heartbeat(text, text) TO {SINK};
CREATE POLICY sink_moves_outbox ON outbox TO {SINK} USING (true);
CREATE POLICY sink_reads_audit ON audit_log FOR SELECT TO {SINK} USING (true);
CREATE POLICY sink_reads_heads ON audit_heads FOR SELECT TO {SINK} USING (true);
"""

DOWNGRADE = f"""
DROP POLICY sink_reads_heads ON audit_heads;
DROP POLICY sink_reads_audit ON audit_log;
DROP POLICY sink_moves_outbox ON outbox;
REVOKE ALL ON FUNCTION service_heartbeat(text, text) FROM {SINK};
REVOKE ALL ON SEQUENCE outbox_id_seq FROM {SINK};
REVOKE ALL ON audit_log, audit_heads, outbox FROM {SINK};
REVOKE USAGE ON SCHEMA public FROM {SINK};
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
