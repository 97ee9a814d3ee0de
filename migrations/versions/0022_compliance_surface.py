"""The compliance surface: regulatory tags and where they are attached, frameworks and scoped checklist items,
authorization rules and records, qualifications, and each run's compliance state.

Revision ID: 0022
Revises: 0023

Every table is tenant-scoped (RLS on org_id). Tags are a per-organization controlled vocabulary, seeded here
for existing organizations (and by domain/compliance/vocabulary.py for new ones). A tag attachment is a fact
with who attached it and why; removing one deletes the row, and the audit trail keeps both (before, after,
reason). `compliance_requirements` remembers which checklist items attached to which open task, so a surface
that changes mid-run is put on record once per item. `run_compliance` is what the run's authorization watch
found last: held or not, and why.
"""

from alembic import op

revision = "0022"
down_revision = "0023"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE compliance_tags (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  key text NOT NULL CHECK (key ~ '^[A-Za-z][A-Za-z0-9_-]{0,39}$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
  description text NOT NULL DEFAULT '',
  framework text NOT NULL DEFAULT '',
  archived_at timestamptz,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  UNIQUE (org_id, key)
);

-- target_type: registry_item (strain, plasmid, ingredient, lot, equipment, supplier), protocol (by key, every
-- version), step (a step of one protocol version: target_id = the version's id, step_key), sample, batch.
CREATE TABLE compliance_tag_links (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  tag_id uuid NOT NULL REFERENCES compliance_tags(id),
  target_type text NOT NULL CHECK (target_type IN ('registry_item','protocol','step','sample','batch')),
  target_id text NOT NULL,
  step_key text NOT NULL DEFAULT '',
  attached_at timestamptz NOT NULL,
  attached_by text NOT NULL,
  attached_by_display text NOT NULL,
  reason text,
  UNIQUE (org_id, tag_id, target_type, target_id, step_key)
);
CREATE INDEX compliance_tag_links_target ON compliance_tag_links (org_id, target_type, target_id);

CREATE TABLE compliance_frameworks (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  key text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_-]{0,39}$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  UNIQUE (org_id, key)
);

-- One item of a framework's checklist, with its scope: {"any": [tag keys], "all": [...], "none": [...],
-- "entity_type": "sample"|"batch"|null, "protocol_key": …, "step_kind": "task"|null, "step_key": …, "role": …}.
CREATE TABLE compliance_checklist_items (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  framework_id uuid NOT NULL REFERENCES compliance_frameworks(id),
  key text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,63}$'),
  text text NOT NULL CHECK (length(text) BETWEEN 1 AND 500),
  scope jsonb NOT NULL DEFAULT '{}',
  archived_at timestamptz,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  UNIQUE (org_id, key)
);

CREATE TABLE compliance_requirements (
  org_id uuid NOT NULL REFERENCES organizations(id),
  task_id uuid NOT NULL REFERENCES tasks(id),
  item_id uuid NOT NULL REFERENCES compliance_checklist_items(id),
  attached_at timestamptz NOT NULL,
  why text NOT NULL,
  PRIMARY KEY (task_id, item_id)
);

-- Which surface needs which authorization: any of `tags` on a run's surface needs an active authorization of
-- `authorization_type` covering the run's protocol (an empty `protocol_keys` on the record covers every one).
CREATE TABLE authorization_rules (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  tags text[] NOT NULL CHECK (cardinality(tags) BETWEEN 1 AND 20),
  authorization_type text NOT NULL CHECK (length(authorization_type) BETWEEN 1 AND 80),
  description text NOT NULL DEFAULT '',
  archived_at timestamptz,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL
);

CREATE TABLE authorizations (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  code text NOT NULL,
  authorization_type text NOT NULL,
  title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  issuer text NOT NULL CHECK (length(issuer) BETWEEN 1 AND 200),
  protocol_keys text[] NOT NULL DEFAULT '{}',
  tags text[] NOT NULL DEFAULT '{}',
  valid_from timestamptz NOT NULL,
  valid_until timestamptz NOT NULL CHECK (valid_until > valid_from),
  status text NOT NULL CHECK (status IN ('pending','active','revoked')),
  signature_id uuid,
  approved_by uuid,
  approved_by_display text,
  approved_at timestamptz,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  revision int NOT NULL DEFAULT 1,
  UNIQUE (org_id, code)
);
CREATE INDEX authorizations_type ON authorizations (org_id, authorization_type, status, valid_until);

CREATE TABLE qualifications (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  user_id uuid NOT NULL,
  course text NOT NULL CHECK (course ~ '^[a-z][a-z0-9_-]{0,63}$'),
  completed_on date NOT NULL,
  expires_on date,
  evidence_id uuid REFERENCES evidence_files(id),
  recorded_at timestamptz NOT NULL,
  recorded_by text NOT NULL,
  CHECK (expires_on IS NULL OR expires_on > completed_on)
);
CREATE INDEX qualifications_user ON qualifications (org_id, user_id, course, expires_on);

CREATE TABLE run_compliance (
  run_id uuid PRIMARY KEY REFERENCES runs(id),
  org_id uuid NOT NULL REFERENCES organizations(id),
  held boolean NOT NULL DEFAULT false,
  reasons jsonb NOT NULL DEFAULT '[]',
  next_expiry timestamptz,
  checked_at timestamptz NOT NULL
);
"""

TABLES = ("compliance_tags", "compliance_tag_links", "compliance_frameworks", "compliance_checklist_items",
          "compliance_requirements", "authorization_rules", "authorizations", "qualifications", "run_compliance")

TENANT_POLICY = """
ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON {t} USING (org_id = current_org()) WITH CHECK (org_id = current_org());
"""

GRANTS = """
GRANT SELECT, INSERT, UPDATE ON compliance_tags, compliance_frameworks, compliance_checklist_items,
  authorization_rules, authorizations, qualifications, run_compliance TO flasktrack_app;
GRANT SELECT, INSERT, DELETE ON compliance_tag_links, compliance_requirements TO flasktrack_app;
"""

SEED = """
INSERT INTO compliance_tags (id, org_id, key, name, description, framework, created_at, created_by)
SELECT gen_random_uuid(), o.id, t.key, t.name, t.description, t.framework, now(), 'system:migration-0022'
FROM organizations o CROSS JOIN (VALUES {values}) AS t(key, name, description, framework)
ON CONFLICT (org_id, key) DO NOTHING
"""


# The twelve tags every organization starts with; domain/compliance/vocabulary.py SEED is the same list (new
# organizations get it there).
TAGS = (
    ("BSL-1", "BSL-1", "Biosafety level 1: agents not known to cause disease in healthy adults.", "BMBL"),
    ("BSL-2", "BSL-2", "Biosafety level 2: agents of moderate hazard; restricted access, biosafety cabinet.", "BMBL"),
    ("BSL-3", "BSL-3", "Biosafety level 3: indigenous or exotic agents with potential for aerosol transmission.",
     "BMBL"),
    ("recombinant_dna", "rDNA / NIH Guidelines",
     "Recombinant or synthetic nucleic acid molecules: work under the NIH Guidelines, IBC review.", "NIH Guidelines"),
    ("gmo", "GMO", "Genetically modified organism: contained use and release rules.", "NIH Guidelines"),
    ("select_agent", "Select agent", "Select agents and toxins (42 CFR 73): registered entity, permit.",
     "Federal Select Agent Program"),
    ("export_control", "Export controlled", "Material or data under export control (EAR / ITAR).", "Export control"),
    ("hazardous_chemical", "Hazardous chemical", "Hazardous chemicals (OSHA Lab Standard, chemical hygiene plan).",
     "OSHA"),
    ("radioactive", "Radioactive", "Radioactive material under the institution's radiation license.",
     "Radiation safety"),
    ("human_derived", "Human-derived", "Human-derived material: bloodborne pathogens, consent, IRB.", "OSHA BBP"),
    ("animal_derived", "Animal-derived", "Animal-derived material: IACUC, zoonoses.", "IACUC"),
    ("plant_pest", "Plant pest / quarantine", "Plant pests and quarantine material (USDA APHIS permits).",
     "USDA APHIS"),
)


def upgrade() -> None:
    op.execute(UPGRADE)
    for t in TABLES:
        op.execute(TENANT_POLICY.format(t=t))
    op.execute(GRANTS)
    values = ", ".join("(" + ", ".join(_quoted(v) for v in tag) + ")" for tag in TAGS)
    op.execute(SEED.format(values=values))


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS run_compliance, qualifications, authorizations, authorization_rules,"
               " compliance_requirements, compliance_checklist_items, compliance_frameworks, compliance_tag_links,"
               " compliance_tags CASCADE")
