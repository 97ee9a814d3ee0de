"""Invitations: membership across organizations only with the person's consent.

An admin adding an email creates an invitation (and the account, when the email is new); the person
accepts or declines it after logging in. Until then the inviting organization learns nothing about
the account: the invitation holds the email the admin typed, never the person's id or name for it to
read (users are visible to an organization only through a membership in it).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE invitations (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  user_id uuid NOT NULL REFERENCES users(id),
  email text NOT NULL,                       -- as the inviting admin typed it
  role text NOT NULL CHECK (role IN ('owner','admin','lab_manager','scientist','technician','auditor','analyst')),
  status text NOT NULL CHECK (status IN ('pending','accepted','declined','revoked')),
  invited_by text NOT NULL,
  invited_by_display text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  decided_at timestamptz
);
CREATE UNIQUE INDEX invitations_one_pending ON invitations (org_id, user_id) WHERE status = 'pending';
CREATE INDEX invitations_invitee ON invitations (user_id) WHERE status = 'pending';
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON invitations USING (org_id = current_org()) WITH CHECK (org_id = current_org());
GRANT SELECT, INSERT, UPDATE ON invitations TO flasktrack_app;

-- The invitee's side, across organizations: one account's own pending, unexpired invitations.
CREATE FUNCTION auth_user_invitations(p_user uuid)
RETURNS TABLE (invitation_id uuid, org_id uuid, org_slug text, org_name text, role text, email text,
               invited_by_display text, created_at timestamptz, expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT i.id, o.id, o.slug, o.name, i.role, i.email, i.invited_by_display, i.created_at, i.expires_at
  FROM invitations i JOIN organizations o ON o.id = i.org_id
  WHERE i.user_id = p_user AND i.status = 'pending' AND i.expires_at > now()
  ORDER BY i.created_at
$$;
REVOKE ALL ON FUNCTION auth_user_invitations(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_user_invitations(uuid) TO flasktrack_app;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS auth_user_invitations(uuid)")
    op.execute("DROP TABLE IF EXISTS invitations CASCADE")
