"""Invitations: an expired invitation is marked so, and no longer blocks a new one to the same person.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE invitations DROP CONSTRAINT invitations_status_check")
    op.execute("ALTER TABLE invitations ADD CONSTRAINT invitations_status_check "
               "CHECK (status IN ('pending','accepted','declined','revoked','expired'))")
    op.execute("UPDATE invitations SET status = 'expired', decided_at = expires_at "
               "WHERE status = 'pending' AND expires_at <= now()")


def downgrade() -> None:
    op.execute("UPDATE invitations SET status = 'revoked' WHERE status = 'expired'")
    op.execute("ALTER TABLE invitations DROP CONSTRAINT invitations_status_check")
    op.execute("ALTER TABLE invitations ADD CONSTRAINT invitations_status_check "
               "CHECK (status IN ('pending','accepted','declined','revoked'))")
