"""Lab material: registries, samples and batches, lineage, chain of custody, evidence files.

Revision ID: 0013
Revises: 0012

Every table is tenant-scoped (RLS on org_id). Records are archived, never deleted: no DELETE grant. Each record
has a UUID and a human-readable code unique in its organization (`S-000123`), drawn from `code_sequences`
(one counter per organization and prefix, taken with a row lock so two creations never share a code).
Lineage edges, custody movements and evidence files are facts: append-only, like the audit log. `search`
columns index codes and names word by word, punctuation split (`S-000123` is found by `000123`; see
domain/pagination.py).
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE code_sequences (
  org_id uuid NOT NULL REFERENCES organizations(id),
  prefix text NOT NULL CHECK (prefix ~ '^[A-Z]{1,4}$'),
  last_value bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (org_id, prefix)
);

-- The registries: species, strains, plasmids, ingredients and their lots, equipment, suppliers, storage
-- locations. One table, one shape; what differs by kind is in `attributes`, typed per kind in
-- domain/registry. `parent_id` is the tree edge where a kind has one: a location's enclosing location, a
-- strain's species, a lot's ingredient.
CREATE TABLE registry_items (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  kind text NOT NULL CHECK (kind IN ('species','strain','plasmid','ingredient','lot','equipment','supplier',
                                     'location')),
  code text NOT NULL,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  parent_id uuid REFERENCES registry_items(id),
  status text NOT NULL,
  attributes jsonb NOT NULL DEFAULT '{}',
  archived_at timestamptz,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  updated_at timestamptz NOT NULL,
  revision int NOT NULL DEFAULT 1,
  search tsvector GENERATED ALWAYS AS (to_tsvector('simple', translate(code || ' ' || name, '-_/.:', '     '))) STORED,
  UNIQUE (org_id, code)
);
CREATE UNIQUE INDEX registry_items_name ON registry_items (org_id, kind, parent_id, lower(name)) NULLS NOT DISTINCT;
CREATE INDEX registry_items_list ON registry_items (org_id, kind, created_at DESC, id);
CREATE INDEX registry_items_parent ON registry_items (parent_id);
CREATE INDEX registry_items_search ON registry_items USING gin (search);

CREATE TABLE batches (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  code text NOT NULL,
  batch_type text NOT NULL,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  status text NOT NULL,
  record jsonb NOT NULL DEFAULT '{}',       -- the batch record: what was made, how, released by whom
  created_in_run uuid REFERENCES runs(id),
  created_in_step text,
  archived_at timestamptz,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  updated_at timestamptz NOT NULL,
  revision int NOT NULL DEFAULT 1,
  search tsvector GENERATED ALWAYS AS (to_tsvector('simple', translate(code || ' ' || name, '-_/.:', '     '))) STORED,
  UNIQUE (org_id, code)
);
CREATE INDEX batches_list ON batches (org_id, created_at DESC, id);
CREATE INDEX batches_search ON batches USING gin (search);

CREATE TABLE samples (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  code text NOT NULL,
  sample_type text NOT NULL,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  status text NOT NULL,
  status_reason text,
  location_id uuid REFERENCES registry_items(id),
  owner_id uuid,
  owner_display text,
  batch_id uuid REFERENCES batches(id),
  attributes jsonb NOT NULL DEFAULT '{}',
  created_in_run uuid REFERENCES runs(id),
  created_in_step text,
  archived_at timestamptz,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  updated_at timestamptz NOT NULL,
  revision int NOT NULL DEFAULT 1,
  search tsvector GENERATED ALWAYS AS (to_tsvector('simple', translate(code || ' ' || name, '-_/.:', '     '))) STORED,
  UNIQUE (org_id, code)
);
CREATE INDEX samples_list ON samples (org_id, created_at DESC, id);
CREATE INDEX samples_batch ON samples (batch_id);
CREATE INDEX samples_search ON samples USING gin (search);

-- What a sample is made of: strains, plasmids, ingredient lots (registry items).
CREATE TABLE sample_components (
  org_id uuid NOT NULL REFERENCES organizations(id),
  sample_id uuid NOT NULL REFERENCES samples(id),
  item_id uuid NOT NULL REFERENCES registry_items(id),
  quantity text,
  added_at timestamptz NOT NULL,
  PRIMARY KEY (sample_id, item_id)
);
CREATE INDEX sample_components_item ON sample_components (item_id);

-- A child derives from a parent by a named operation, recorded with the run and step that did it.
CREATE TABLE lineage_edges (
  org_id uuid NOT NULL REFERENCES organizations(id),
  parent_id uuid NOT NULL REFERENCES samples(id),
  child_id uuid NOT NULL REFERENCES samples(id),
  operation text NOT NULL CHECK (operation IN ('aliquot','subculture','passage','pooling','transformation',
                                               'extraction')),
  run_id uuid REFERENCES runs(id),
  step_key text,
  task_id uuid REFERENCES tasks(id),
  recorded_at timestamptz NOT NULL,
  recorded_by text NOT NULL,
  PRIMARY KEY (parent_id, child_id),
  CHECK (parent_id <> child_id)
);
CREATE INDEX lineage_edges_child ON lineage_edges (child_id, parent_id);

-- Chain of custody: every location move and hand-over of a sample.
CREATE TABLE sample_movements (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  sample_id uuid NOT NULL REFERENCES samples(id),
  from_location_id uuid REFERENCES registry_items(id),
  to_location_id uuid REFERENCES registry_items(id),
  from_holder_id uuid,
  to_holder_id uuid,
  to_holder_display text,
  moved_at timestamptz NOT NULL,
  moved_by text NOT NULL,
  moved_by_display text NOT NULL,
  reason text,
  run_id uuid REFERENCES runs(id),
  step_key text
);
CREATE INDEX sample_movements_sample ON sample_movements (sample_id, moved_at);

-- An uploaded file: one row per upload; the bytes are stored once per organization by their SHA-256.
CREATE TABLE evidence_files (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
  content_type text NOT NULL,
  filename text NOT NULL,
  uploaded_at timestamptz NOT NULL,
  uploaded_by text NOT NULL,
  uploaded_by_display text NOT NULL,
  request_id text
);
CREATE INDEX evidence_files_sha ON evidence_files (org_id, sha256);
CREATE INDEX evidence_files_list ON evidence_files (org_id, uploaded_at DESC, id);

-- What a file is evidence of: a step completion (task), a checklist item of it, a sample, a batch, …
CREATE TABLE evidence_links (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  evidence_id uuid NOT NULL REFERENCES evidence_files(id),
  target_type text NOT NULL,
  target_id text NOT NULL,
  detail text,                              -- e.g. the checklist item's key
  linked_at timestamptz NOT NULL,
  linked_by text NOT NULL
);
CREATE INDEX evidence_links_evidence ON evidence_links (evidence_id);
CREATE INDEX evidence_links_target ON evidence_links (org_id, target_type, target_id);
"""

TABLES = ("code_sequences", "registry_items", "batches", "samples", "sample_components", "lineage_edges",
          "sample_movements", "evidence_files", "evidence_links")
APPEND_ONLY = ("lineage_edges", "sample_movements", "evidence_files", "evidence_links")

TENANT_POLICY = """
ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON {t} USING (org_id = current_org()) WITH CHECK (org_id = current_org());
"""

NO_CHANGE = """
CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t}
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
ALTER TABLE {t} ENABLE ALWAYS TRIGGER {t}_append_only;
"""

GRANTS = """
GRANT SELECT, INSERT, UPDATE ON code_sequences, registry_items, batches, samples TO flasktrack_app;
GRANT SELECT, INSERT ON sample_components, lineage_edges, sample_movements, evidence_files, evidence_links
  TO flasktrack_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    for t in TABLES:
        op.execute(TENANT_POLICY.format(t=t))
    for t in APPEND_ONLY:
        op.execute(NO_CHANGE.format(t=t))
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS evidence_links, evidence_files, sample_movements, lineage_edges,"
               " sample_components, samples, batches, registry_items, code_sequences CASCADE")
