"""Pre-authentication tables behind narrow functions: no table the application role reads lacks RLS.

`login_attempts` (every organization's emails and client addresses) and `service_heartbeats` were
readable by flasktrack_app with no organization set. Now the role may only add login attempts and ask
for the counts throttling needs (`login_failures`), report a heartbeat (`service_heartbeat`) and read
each service's last report (`service_liveness`). tests/identity/test_isolation.py lists every relation
the role can read from the catalog and fails on one without row-level security.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = r"""
REVOKE SELECT, UPDATE, DELETE ON login_attempts FROM flasktrack_app;
REVOKE ALL ON service_heartbeats FROM flasktrack_app;

-- Failed logins since p_since for one account (only those after its last success) and for one address.
CREATE FUNCTION login_failures(p_email text, p_address text, p_since timestamptz)
RETURNS TABLE (account_failures bigint, account_first timestamptz, address_failures bigint,
               address_first timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT e.n, e.first, a.n, a.first
  FROM (SELECT count(*) AS n, min(at) AS first FROM login_attempts
        WHERE lower(email) = lower(p_email) AND NOT succeeded AND at > p_since
          AND at > coalesce((SELECT max(at) FROM login_attempts
                             WHERE lower(email) = lower(p_email) AND succeeded), '-infinity')) e,
       (SELECT count(*) AS n, min(at) AS first FROM login_attempts
        WHERE p_address IS NOT NULL AND client_address = p_address AND NOT succeeded AND at > p_since) a
$$;

CREATE FUNCTION service_heartbeat(p_service text, p_instance text) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  INSERT INTO service_heartbeats (service, instance, at) VALUES (p_service, p_instance, now())
  ON CONFLICT (service, instance) DO UPDATE SET at = excluded.at
$$;

-- Each service's latest report; not the host names and process ids of its instances.
CREATE FUNCTION service_liveness() RETURNS TABLE (service text, last_seen timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT service, max(at) FROM service_heartbeats GROUP BY service
$$;

REVOKE ALL ON FUNCTION login_failures(text, text, timestamptz), service_heartbeat(text, text), service_liveness()
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION login_failures(text, text, timestamptz), service_heartbeat(text, text),
  service_liveness() TO flasktrack_app;
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS login_failures(text, text, timestamptz);
DROP FUNCTION IF EXISTS service_heartbeat(text, text);
DROP FUNCTION IF EXISTS service_liveness();
GRANT SELECT, INSERT ON login_attempts TO flasktrack_app;
GRANT SELECT, INSERT, UPDATE ON service_heartbeats TO flasktrack_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
