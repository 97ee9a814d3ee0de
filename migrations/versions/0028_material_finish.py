"""Material, finished: the material a form named is found by an index, and samples by where they are stored.

Revision ID: 0028
Revises: 0021

- `form_refs`: one row per `sample_ref` / `batch_ref` value of a form submission (the value as typed, trimmed),
  written by a trigger on form_submissions (so every writer, and a replay, fills it) and back-filled here. The
  trace (domain/samples/trace.py) finds the forms that named a sample or batch through its btree index.
  Why not a GIN expression index on form_submissions itself: under row-level security the planner only uses an
  index for a condition whose operator is leakproof (it must not see other organizations' rows before the
  policy filtered them), and the array / jsonb containment operators are not; text equality is. As the
  application role (RLS on) such an index is never used: measured at 100,000 submissions, a sequential scan of
  0.9 s for the GIN expression index, 0.2 s for the old lateral scan, against a btree index scan here.
- `samples_location`: the samples stored in a location (the list filter; the check that refuses to archive a
  location still storing samples, domain/registry/service.py).
"""

from alembic import op

revision = "0028"
down_revision = "0021"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE form_refs (
  org_id uuid NOT NULL REFERENCES organizations(id),
  submission_id uuid NOT NULL REFERENCES form_submissions(id),
  field_key text NOT NULL,
  ref_type text NOT NULL CHECK (ref_type IN ('sample', 'batch')),
  ref text NOT NULL,
  PRIMARY KEY (submission_id, field_key)
);
CREATE INDEX form_refs_lookup ON form_refs (org_id, ref_type, ref);

ALTER TABLE form_refs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON form_refs USING (org_id = current_org()) WITH CHECK (org_id = current_org());
CREATE TRIGGER form_refs_append_only BEFORE UPDATE OR DELETE ON form_refs
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
ALTER TABLE form_refs ENABLE ALWAYS TRIGGER form_refs_append_only;
GRANT SELECT, INSERT ON form_refs TO flasktrack_app;

-- The sample_ref / batch_ref values of one submission (fields: [{key, type, ...}], field_values: {key: value}).
CREATE FUNCTION form_refs_of(sub_id uuid, sub_org uuid, fields jsonb, field_values jsonb)
RETURNS TABLE (org_id uuid, submission_id uuid, field_key text, ref_type text, ref text)
LANGUAGE sql STABLE AS $$
  SELECT DISTINCT ON (fd->>'key') sub_org, sub_id, fd->>'key', left(fd->>'type', -4), btrim(field_values->>(fd->>'key'))
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(fields) = 'array' THEN fields ELSE '[]' END) fd
   WHERE fd->>'type' IN ('sample_ref', 'batch_ref') AND jsonb_typeof(field_values->(fd->>'key')) = 'string'
     AND btrim(field_values->>(fd->>'key')) <> ''
$$;

CREATE FUNCTION form_refs_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO form_refs (org_id, submission_id, field_key, ref_type, ref)
    SELECT * FROM form_refs_of(NEW.id, NEW.org_id, NEW.fields, NEW.field_values);
  RETURN NULL;
END $$;
CREATE TRIGGER form_submissions_refs AFTER INSERT ON form_submissions
  FOR EACH ROW EXECUTE FUNCTION form_refs_record();

INSERT INTO form_refs (org_id, submission_id, field_key, ref_type, ref)
  SELECT r.* FROM form_submissions f, LATERAL form_refs_of(f.id, f.org_id, f.fields, f.field_values) r;

CREATE INDEX samples_location ON samples (location_id) WHERE location_id IS NOT NULL;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS samples_location")
    op.execute("DROP TRIGGER IF EXISTS form_submissions_refs ON form_submissions")
    op.execute("DROP TABLE IF EXISTS form_refs")
    op.execute("DROP FUNCTION IF EXISTS form_refs_record(), form_refs_of(uuid, uuid, jsonb, jsonb)")
