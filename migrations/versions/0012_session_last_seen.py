"""Sessions remember when they were last used, so the web pages can end an idle one.

A browser session is a session token in a cookie; `last_seen_at` is set on each page the person opens, and a
session idle for longer than the web idle timeout is revoked on its next use (domain/identity/service.py
`touch_session`). Tokens used over the HTTP API keep their fixed expiry: the column stays NULL for them.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE auth_sessions ADD COLUMN last_seen_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE auth_sessions DROP COLUMN last_seen_at")
