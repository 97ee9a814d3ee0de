"""The sink claims a batch as one row, an id range, instead of stamping `batch_id` on every outbox row.

Stamping rewrote each row (~950 bytes of WAL, a new index entry) only to say which batch it was in. Now:

- the rows live in `outbox_rows` (the old `outbox` table, renamed: same ids, sequence, policies and grants);
- `outbox_batches` holds one row per claimed batch: its id (the Delta app-transaction version, still drawn from
  the outbox id sequence), the id range `[first_id, last_id]`, the topics it took, when and by whom; claimed
  ranges cannot overlap (an exclusion constraint), whichever sink claims;
- `outbox` is a view over `outbox_rows` with the same columns as before, `batch_id` being the batch whose range
  (and topics) covers the row: writers insert into it as before (an automatically updatable view, checked as the
  caller: `security_invoker`, so the tenant policies still apply), readers see the claim as before;
- a statement trigger takes a shared advisory lock (`outbox_fence`) before a statement inserts rows, i.e. before
  the row ids are drawn, and holds it to the end of the transaction: the sink claims no further than the highest
  id all of whose writers have finished (lake/sink.py `_fence`), so a row that commits after a later id was
  claimed is never skipped. Shared locks never wait for each other: writers do not queue behind one another or
  behind the sink.

Rows a sink stamped before this migration (batch_id set on the row) stay as they are and are finished by the
sink's recovery first. The sink role may insert and delete batch records; it no longer updates outbox rows.

Revision ID: 0027
Revises: 0028
"""

from alembic import op

revision = "0027"
down_revision = "0028"
branch_labels = None
depends_on = None

APP = "flasktrack_app"
SINK = "flasktrack_sink"
FENCE_KEY = 0x6F7574626F78  # "outbox"; lake/sink.py OUTBOX_FENCE_KEY

UPGRADE = f"""
ALTER TABLE outbox RENAME TO outbox_rows;
-- Rows are no longer updated: no free space kept for HOT updates, and no second index on id.
ALTER TABLE outbox_rows RESET (fillfactor);
DROP INDEX outbox_unbatched;

CREATE TABLE outbox_batches (
  id bigint PRIMARY KEY,
  first_id bigint NOT NULL,
  last_id bigint NOT NULL,
  topics text[] NOT NULL,
  row_count integer NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  claimed_by text NOT NULL,
  CHECK (first_id <= last_id),
  CONSTRAINT outbox_batches_disjoint EXCLUDE USING gist (int8range(first_id, last_id, '[]') WITH &&)
);

CREATE FUNCTION outbox_fence() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared({FENCE_KEY});
  RETURN NULL;
END $$;
CREATE TRIGGER outbox_fence BEFORE INSERT ON outbox_rows FOR EACH STATEMENT EXECUTE FUNCTION outbox_fence();

CREATE VIEW outbox WITH (security_invoker = true) AS
SELECT r.id, r.org_id, r.topic, r.payload, r.created_at,
       coalesce(r.batch_id, (SELECT b.id FROM outbox_batches b
                             WHERE r.id BETWEEN b.first_id AND b.last_id AND r.topic = ANY (b.topics))) AS batch_id
FROM outbox_rows r;

GRANT INSERT ON outbox TO {APP};
GRANT SELECT ON outbox TO {SINK};
GRANT SELECT, INSERT, DELETE ON outbox_batches TO {SINK};
REVOKE UPDATE (batch_id) ON outbox_rows FROM {SINK};
"""

DOWNGRADE = f"""
DROP VIEW outbox;
DROP TRIGGER outbox_fence ON outbox_rows;
DROP FUNCTION outbox_fence();
-- Claimed, unacknowledged batches go back to the per-row stamp the older sink reads.
UPDATE outbox_rows r SET batch_id = b.id FROM outbox_batches b
 WHERE r.batch_id IS NULL AND r.id BETWEEN b.first_id AND b.last_id AND r.topic = ANY (b.topics);
DROP TABLE outbox_batches;
CREATE INDEX outbox_unbatched ON outbox_rows (id) WHERE batch_id IS NULL;
ALTER TABLE outbox_rows SET (fillfactor = 70);
ALTER TABLE outbox_rows RENAME TO outbox;
GRANT UPDATE (batch_id) ON outbox TO {SINK};
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
