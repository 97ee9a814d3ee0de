"""Outbox: leave room on each page for the sink's batch claim.

The sink claims rows with `UPDATE outbox SET batch_id = …`; with free space on the page
the new row version stays on it (a HOT update: no index entries, a third of the WAL).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE outbox SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE outbox RESET (fillfactor)")
