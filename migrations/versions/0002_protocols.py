"""Protocols, their versions, and electronic signatures.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- An electronic signature (21 CFR 11.50/11.70): who (printed name), when, what it means, and
-- the hash of exactly what was signed, so it cannot be moved to other content.
CREATE TABLE signatures (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  signer_id uuid NOT NULL REFERENCES users(id),
  signer_name text NOT NULL,
  meaning text NOT NULL CHECK (meaning IN ('approved','reviewed','verified','responsibility','authored','rejected')),
  reason text,
  entity_type text NOT NULL,
  entity_id text NOT NULL,
  content_hash text NOT NULL,
  signed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX signatures_entity ON signatures (org_id, entity_type, entity_id);
CREATE TRIGGER signatures_append_only BEFORE UPDATE OR DELETE ON signatures
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
ALTER TABLE signatures ENABLE ALWAYS TRIGGER signatures_append_only;

CREATE TABLE protocols (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  key text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_-]{1,63}$'),
  title text NOT NULL,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, key)
);

CREATE TABLE protocol_versions (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  protocol_id uuid NOT NULL REFERENCES protocols(id),
  version int NOT NULL CHECK (version > 0),
  status text NOT NULL CHECK (status IN ('draft','in_review','approved','retired')),
  definition jsonb NOT NULL,
  content_hash text NOT NULL,
  plan jsonb,
  author_id uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  submitted_at timestamptz,
  approved_at timestamptz,
  approved_by uuid,
  approval_signature_id uuid REFERENCES signatures(id),
  retired_at timestamptz,
  UNIQUE (protocol_id, version)
);

-- Approved versions are immutable: only the approved → retired transition may touch them.
CREATE FUNCTION protocol_version_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.status IN ('approved','retired') THEN
      RAISE EXCEPTION 'approved protocol versions cannot be deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
  END IF;
  IF OLD.status IN ('approved','retired') AND (
       NEW.definition IS DISTINCT FROM OLD.definition OR NEW.content_hash IS DISTINCT FROM OLD.content_hash
       OR NEW.plan IS DISTINCT FROM OLD.plan OR NEW.version IS DISTINCT FROM OLD.version
       OR NEW.protocol_id IS DISTINCT FROM OLD.protocol_id
       OR NOT (NEW.status = OLD.status OR (OLD.status = 'approved' AND NEW.status = 'retired'))) THEN
    RAISE EXCEPTION 'approved protocol versions are immutable' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER protocol_versions_guard BEFORE UPDATE OR DELETE ON protocol_versions
  FOR EACH ROW EXECUTE FUNCTION protocol_version_guard();
ALTER TABLE protocol_versions ENABLE ALWAYS TRIGGER protocol_versions_guard;
"""

TENANT_POLICY = """
ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON {t} USING (org_id = current_org()) WITH CHECK (org_id = current_org());
"""

GRANTS = """
GRANT SELECT, INSERT ON signatures TO flasktrack_app;
GRANT SELECT, INSERT, UPDATE ON protocols, protocol_versions TO flasktrack_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    for t in ("signatures", "protocols", "protocol_versions"):
        op.execute(TENANT_POLICY.format(t=t))
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS protocol_versions, protocols, signatures CASCADE")
    op.execute("DROP FUNCTION IF EXISTS protocol_version_guard()")
