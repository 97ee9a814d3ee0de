"""Lockouts on record: a refusal answered 429 (too many failed logins or signature passwords) is recorded
once per lockout — here for every lockout (unknown emails and addresses included, which belong to no
organization), and in the audit log of each organization of the account concerned.

The application role cannot read the table; it records through `record_lockout`, which answers only
whether this lockout was new.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE login_lockouts (
  scope text NOT NULL CHECK (scope IN ('account', 'address')),
  subject text NOT NULL,              -- the account's email (lower case) or the client address
  locked_since timestamptz NOT NULL,  -- the first failure the lockout counts
  locked_until timestamptz NOT NULL,
  first_refused_at timestamptz NOT NULL DEFAULT now(),
  attempted_email text,               -- the email of the first refused attempt
  client_address text,                -- where that attempt came from
  PRIMARY KEY (scope, subject, locked_since)
);
REVOKE ALL ON login_lockouts FROM flasktrack_app;

CREATE FUNCTION record_lockout(p_scope text, p_subject text, p_since timestamptz, p_until timestamptz,
                               p_email text, p_address text) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  WITH added AS (
    INSERT INTO login_lockouts (scope, subject, locked_since, locked_until, attempted_email, client_address)
    VALUES (p_scope, p_subject, p_since, p_until, p_email, p_address)
    ON CONFLICT DO NOTHING RETURNING 1)
  SELECT EXISTS (SELECT 1 FROM added)
$$;
REVOKE ALL ON FUNCTION record_lockout(text, text, timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION record_lockout(text, text, timestamptz, timestamptz, text, text) TO flasktrack_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS record_lockout(text, text, timestamptz, timestamptz, text, text)")
    op.execute("DROP TABLE IF EXISTS login_lockouts")
