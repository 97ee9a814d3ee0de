"""The trace finds the forms that named a sample or batch by an index, as the application role (row-level security
on): measured over 100,000 form submissions, inside a transaction rolled back at the end (nothing stays)."""

from __future__ import annotations

import json
import time
import uuid

from sqlalchemy import text

from domain.samples.trace import FORMS_NAMING

N = 100_000
FIELDS = [{"key": "parent", "type": "sample_ref"}, {"key": "n", "type": "integer"},
          {"key": "medium", "type": "batch_ref"}, {"key": "note", "type": "text"}]


def test_the_forms_naming_a_sample_are_found_by_index_under_row_level_security(owner, org_a):
    form_key = f"f_{uuid.uuid4().hex[:8]}"
    with owner.begin(org_a.id) as s:
        try:
            # 100,000 submissions of this organization (references and their trigger skipped: replica mode).
            s.execute(text("SET LOCAL session_replication_role = replica"))
            s.execute(text(
                "INSERT INTO form_submissions (id, org_id, run_id, task_id, step_key, form_key, iteration,"
                " submitted_by, submitted_by_display, submitted_at, fields, field_values, checklist, evidence)"
                " SELECT gen_random_uuid(), :o, gen_random_uuid(), gen_random_uuid(), 'subculture', :k, 0, 'u',"
                " 'U', now(), CAST(:f AS jsonb), jsonb_build_object('parent', 'S-X' || g, 'n', 3, 'medium',"
                " 'B-X' || (g % 100), 'note', 'S-X7'), '[]', '[]' FROM generate_series(1, :n) g"),
                {"o": org_a.id, "f": json.dumps(FIELDS), "n": N, "k": form_key})
            s.execute(text("INSERT INTO form_refs SELECT r.* FROM form_submissions f,"
                           " LATERAL form_refs_of(f.id, f.org_id, f.fields, f.field_values) r"
                           " WHERE f.org_id = :o AND f.form_key = :k"),  # only these: other tests' forms have theirs
                      {"o": org_a.id, "k": form_key})
            s.execute(text("SET LOCAL session_replication_role = origin"))
            s.execute(text("ANALYZE form_refs"))
            s.execute(text("ANALYZE form_submissions"))
            s.execute(text("SET LOCAL ROLE flasktrack_app"))  # what the API runs as: RLS applies

            params = {"kind": "sample", "n": ["S-X77777", str(uuid.uuid4())]}
            plan = "\n".join(r[0] for r in s.execute(text("EXPLAIN (ANALYZE, FORMAT TEXT) " + str(FORMS_NAMING)),
                                                     params))
            assert "form_refs_lookup" in plan, plan
            assert "Seq Scan" not in plan, plan
            started = time.perf_counter()
            rows = s.execute(FORMS_NAMING, params).all()
            took = time.perf_counter() - started
            assert [r.field for r in rows] == ["parent"]  # a text field holding the same words is no reference
            assert took < 0.05, f"{took * 1000:.1f} ms"
            batch = s.execute(FORMS_NAMING, {"kind": "batch", "n": ["B-X7"]}).all()
            assert len(batch) == N // 100 and {r.field for r in batch} == {"medium"}
        finally:
            s.rollback()
