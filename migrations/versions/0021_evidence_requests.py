"""Evidence uploads are done once per request: one file row per (organization, X-Request-ID).

Revision ID: 0021
Revises: 0020

A retried upload (same X-Request-ID) finds the first one's row instead of adding a second; two copies of one
request arriving together cannot both insert (domain/evidence/service.py inserts ON CONFLICT DO NOTHING).
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE UNIQUE INDEX evidence_files_request ON evidence_files (org_id, request_id)"
               " WHERE request_id IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS evidence_files_request")
