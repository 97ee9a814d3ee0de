"""Runs and tasks are searchable by words: protocol, title, subjects, people.

Revision ID: 0017
Revises: 0013

The same word-by-word index as the registries (domain/pagination.py `search_query`): a run by its protocol's key
and title, its subjects and who launched it; a task by its title, its step and who claimed it. The keyset
indexes let a page continue below its cursor without sorting the organization's whole history.
"""

from alembic import op

revision = "0017"
down_revision = "0013"
branch_labels = None
depends_on = None

SPLIT = "'-_/.:\"{},[]', '           '"

UPGRADE = f"""
ALTER TABLE runs ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', translate(
  protocol_key || ' ' || protocol_title || ' ' || launched_by_display || ' ' || subjects::text, {SPLIT}))) STORED;
CREATE INDEX runs_search ON runs USING gin (search);
CREATE INDEX runs_org_page ON runs (org_id, launched_at DESC, id DESC);
ALTER TABLE tasks ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', translate(
  title || ' ' || step_key || ' ' || coalesce(claimed_by_display, ''), {SPLIT}))) STORED;
CREATE INDEX tasks_search ON tasks USING gin (search);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS runs_org_page")
    op.execute("ALTER TABLE runs DROP COLUMN IF EXISTS search")
    op.execute("ALTER TABLE tasks DROP COLUMN IF EXISTS search")
