"""The audit log's Merkle tree: stored subtree hashes, and the tree head in each signed checkpoint.

Revision ID: 0025
Revises: 0027

`audit_merkle` keeps the hash of every complete, aligned subtree of 16 leaves or more (RFC 9162 style,
domain/audit/merkle.py): a tree head or a proof is then a few dozen reads (the stored subtrees plus at most
16 leaves recomputed from `audit_log.body_hash`), never a pass over the whole chain, and the tree grows
incrementally at each checkpoint. Append-only like the rest of the audit tables (ENABLE ALWAYS triggers); the
app role may read and insert within its organization (row-level security).

`audit_checkpoints.root_hash`: the Merkle tree head a checkpoint signs (NULL for checkpoints signed before this
revision, which stay verifiable by their chain head).

`audit_packages`: the auditor's packages (domain/audit/packages.py): who asked for which entries, the checkpoint
they are proven against, and the archive's hash and object-store key (the archive itself is write-once in the
object store). Append-only.
"""

from alembic import op

revision = "0025"
down_revision = "0027"
branch_labels = None
depends_on = None

APP = "flasktrack_app"

UPGRADE = f"""
CREATE TABLE audit_merkle (
  org_id uuid NOT NULL REFERENCES organizations(id),
  level smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
  idx bigint NOT NULL CHECK (idx >= 0),
  hash bytea NOT NULL CHECK (length(hash) = 32),
  PRIMARY KEY (org_id, level, idx)
);
ALTER TABLE audit_merkle ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON audit_merkle USING (org_id = current_org()) WITH CHECK (org_id = current_org());
CREATE TRIGGER audit_merkle_append_only BEFORE UPDATE OR DELETE ON audit_merkle
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_merkle_no_truncate BEFORE TRUNCATE ON audit_merkle
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
ALTER TABLE audit_merkle ENABLE ALWAYS TRIGGER audit_merkle_append_only;
ALTER TABLE audit_merkle ENABLE ALWAYS TRIGGER audit_merkle_no_truncate;
GRANT SELECT, INSERT ON audit_merkle TO {APP};

CREATE TABLE audit_packages (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  scope jsonb NOT NULL,
  entries int NOT NULL CHECK (entries >= 0),
  checkpoint_size bigint NOT NULL,
  root_hash bytea NOT NULL,
  sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{{64}}$'),
  size_bytes bigint NOT NULL CHECK (size_bytes > 0),
  object_key text NOT NULL,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  created_by_display text NOT NULL
);
CREATE INDEX audit_packages_org ON audit_packages (org_id, created_at DESC);
ALTER TABLE audit_packages ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON audit_packages USING (org_id = current_org()) WITH CHECK (org_id = current_org());
CREATE TRIGGER audit_packages_append_only BEFORE UPDATE OR DELETE ON audit_packages
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_packages_no_truncate BEFORE TRUNCATE ON audit_packages
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
GRANT SELECT, INSERT ON audit_packages TO {APP};

ALTER TABLE audit_checkpoints ADD COLUMN root_hash bytea CHECK (root_hash IS NULL OR length(root_hash) = 32);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("ALTER TABLE audit_checkpoints DROP COLUMN IF EXISTS root_hash")
    op.execute("DROP TABLE IF EXISTS audit_packages")
    op.execute("DROP TABLE IF EXISTS audit_merkle")
