"""Foundation: organizations, identity, the hash-chained audit log, the outbox.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APP = "flasktrack_app"

TENANT_TABLES = ["memberships", "auth_sessions", "api_keys", "audit_pending", "audit_log", "audit_heads", "audit_checkpoints",
                 "outbox"]

UPGRADE = r"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{app}') THEN
    CREATE ROLE {app} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
END $$;

-- The org the current transaction acts for; NULL when unset, which matches no row.
CREATE FUNCTION current_org() RETURNS uuid LANGUAGE sql STABLE AS
$$ SELECT nullif(current_setting('flasktrack.org_id', true), '')::uuid $$;

CREATE TABLE organizations (
  id uuid PRIMARY KEY,
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{{1,62}}$'),
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id uuid PRIMARY KEY,
  email text NOT NULL,
  display_name text NOT NULL,
  password_hash text NOT NULL,
  disabled boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE memberships (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  user_id uuid NOT NULL REFERENCES users(id),
  role text NOT NULL CHECK (role IN ('owner','admin','lab_manager','scientist','technician','auditor','analyst')),
  active boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, user_id)
);

CREATE TABLE auth_sessions (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  user_id uuid NOT NULL REFERENCES users(id),
  token_hash bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  client_address text,
  user_agent text
);

CREATE TABLE api_keys (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  name text NOT NULL,
  role text NOT NULL CHECK (role IN ('owner','admin','lab_manager','scientist','technician','auditor','analyst')),
  key_prefix text NOT NULL,
  key_hash bytea NOT NULL UNIQUE,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

-- Pre-authentication: attempts are keyed by email and client address, not by org.
CREATE TABLE login_attempts (
  id bigserial PRIMARY KEY,
  email text NOT NULL,
  client_address text,
  succeeded boolean NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX login_attempts_email ON login_attempts (lower(email), at);
CREATE INDEX login_attempts_addr ON login_attempts (client_address, at);

-- ---------------------------------------------------------------- audit log
-- Writers insert into audit_pending inside the business transaction (no lock, no
-- chain head contention); audit_seal() links pending entries into audit_log in
-- batches under a per-org head row. canonical body bytes are stored verbatim.
CREATE TABLE audit_pending (
  id bigserial PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  body bytea NOT NULL,
  occurred_at timestamptz NOT NULL,
  actor_type text NOT NULL,
  actor_id text NOT NULL,
  actor_display text NOT NULL,
  action text NOT NULL,
  entity_type text NOT NULL,
  entity_id text NOT NULL,
  severity text NOT NULL,
  reason text,
  request_id text,
  api_key_id uuid
);
CREATE INDEX audit_pending_org ON audit_pending (org_id, id);

CREATE TABLE audit_log (
  org_id uuid NOT NULL,
  seq bigint NOT NULL CHECK (seq > 0),
  body bytea NOT NULL,
  body_hash bytea NOT NULL,
  prev_hash bytea NOT NULL,
  chain_hash bytea NOT NULL,
  occurred_at timestamptz NOT NULL,
  actor_type text NOT NULL,
  actor_id text NOT NULL,
  actor_display text NOT NULL,
  action text NOT NULL,
  entity_type text NOT NULL,
  entity_id text NOT NULL,
  severity text NOT NULL,
  reason text,
  request_id text,
  api_key_id uuid,
  sealed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (org_id, seq)
);
CREATE INDEX audit_log_entity ON audit_log (org_id, entity_type, entity_id, seq);
CREATE INDEX audit_log_actor ON audit_log (org_id, actor_id, seq);
CREATE INDEX audit_log_time ON audit_log (org_id, occurred_at);

CREATE TABLE audit_heads (
  org_id uuid PRIMARY KEY,
  seq bigint NOT NULL,
  chain_hash bytea NOT NULL
);

-- Metadata of every signed checkpoint; the signed files themselves live outside the
-- database. Two independent stores: rolling back either one is detected by the other.
CREATE TABLE audit_checkpoints (
  org_id uuid NOT NULL,
  size bigint NOT NULL,
  head_hash bytea NOT NULL,
  key_id text NOT NULL,
  signature bytea NOT NULL,
  issued_at timestamptz NOT NULL,
  PRIMARY KEY (org_id, size, issued_at)
);

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'audit_pending' AND TG_OP = 'DELETE'
     AND current_setting('flasktrack.sealing', true) = 'on' THEN
    RETURN OLD;  -- the sealer moving an entry into the chain
  END IF;
  RAISE EXCEPTION 'audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_pending_append_only BEFORE UPDATE OR DELETE ON audit_pending
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_pending_no_truncate BEFORE TRUNCATE ON audit_pending
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
-- ENABLE ALWAYS: still fires under session_replication_role = replica.
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_no_truncate;
ALTER TABLE audit_pending ENABLE ALWAYS TRIGGER audit_pending_append_only;
ALTER TABLE audit_pending ENABLE ALWAYS TRIGGER audit_pending_no_truncate;
ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_append_only;
ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_no_truncate;

-- Link up to p_limit pending entries of one org into its chain. SKIP LOCKED on the
-- head row: when another sealer holds this org, return 0 at once instead of queueing
-- (p_wait: queue for it instead, as verification does). The head row stays locked until
-- the calling transaction ends.
-- chain_hash(n) = sha256(chain_hash(n-1) || int8(seq) || uuid(org) || sha256(body)).
-- Set-based: one read of the batch, the links computed over arrays, one INSERT, one DELETE.
CREATE FUNCTION audit_seal(p_org uuid, p_limit int DEFAULT 5000, p_wait boolean DEFAULT false) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  h record; ids bigint[]; bhs bytea[]; prevs bytea[] := '{{}}'; chs bytea[] := '{{}}';
  s bigint; prev bytea; bh bytea; orgb bytea := uuid_send(p_org); n int; i int;
BEGIN
  INSERT INTO audit_heads (org_id, seq, chain_hash)
    VALUES (p_org, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
    ON CONFLICT (org_id) DO NOTHING;
  IF p_wait THEN
    SELECT seq, chain_hash INTO h FROM audit_heads WHERE org_id = p_org FOR UPDATE;
  ELSE
    SELECT seq, chain_hash INTO h FROM audit_heads WHERE org_id = p_org FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN RETURN 0; END IF;
  END IF;
  SELECT array_agg(b.id ORDER BY b.id), array_agg(sha256(b.body) ORDER BY b.id) INTO ids, bhs
    FROM (SELECT id, body FROM audit_pending WHERE org_id = p_org ORDER BY id LIMIT p_limit) b;
  n := coalesce(array_length(ids, 1), 0);
  IF n = 0 THEN RETURN 0; END IF;
  s := h.seq; prev := h.chain_hash;
  i := 0;
  FOREACH bh IN ARRAY bhs LOOP  -- sequential: subscripting a varlena array is O(i)
    i := i + 1;
    prevs := array_append(prevs, prev);
    prev := sha256(prev || int8send(s + i) || orgb || bh);
    chs := array_append(chs, prev);
  END LOOP;
  INSERT INTO audit_log (org_id, seq, body, body_hash, prev_hash, chain_hash, occurred_at, actor_type,
      actor_id, actor_display, action, entity_type, entity_id, severity, reason, request_id, api_key_id)
    SELECT p_org, s + x.ord, p.body, x.bh, x.pv, x.ch, p.occurred_at, p.actor_type, p.actor_id,
      p.actor_display, p.action, p.entity_type, p.entity_id, p.severity, p.reason, p.request_id, p.api_key_id
    FROM unnest(ids, bhs, prevs, chs) WITH ORDINALITY AS x(id, bh, pv, ch, ord)
    JOIN audit_pending p ON p.id = x.id
    ORDER BY x.ord;
  GET DIAGNOSTICS i = ROW_COUNT;
  IF i <> n THEN
    RAISE EXCEPTION 'audit_seal: % of % pending entries found', i, n;
  END IF;
  PERFORM set_config('flasktrack.sealing', 'on', true);
  DELETE FROM audit_pending WHERE id = ANY(ids);
  PERFORM set_config('flasktrack.sealing', 'off', true);
  UPDATE audit_heads SET seq = s + n, chain_hash = prev WHERE org_id = p_org;
  RETURN n;
END $$;

-- Seal every org that has pending entries (the background sealer's sweep). One org whose
-- chain cannot be extended (e.g. a row forged at its next seq) must not stop the others:
-- its entries stay pending, which `audit verify` reports.
CREATE FUNCTION audit_seal_all(p_limit int DEFAULT 5000) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE o uuid; n int := 0;
BEGIN
  FOR o IN SELECT DISTINCT org_id FROM audit_pending LOOP
    BEGIN
      n := n + audit_seal(o, p_limit);
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'audit_seal: org % cannot be sealed: %', o, SQLERRM;
    END;
  END LOOP;
  RETURN n;
END $$;

-- Organizations that have a chain (for periodic checkpoints by the app role).
CREATE FUNCTION audit_log_orgs() RETURNS TABLE (org_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT org_id FROM audit_heads WHERE seq > 0
$$;

-- ---------------------------------------------------------------- outbox
-- Step events, runs and form submissions, written in the same transaction as the
-- change; the lake sink assigns rows to a batch, commits the batch to Delta, then
-- deletes them (see lake/).
CREATE TABLE outbox (
  id bigserial PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES organizations(id),
  topic text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  batch_id bigint
);
CREATE INDEX outbox_unbatched ON outbox (id) WHERE batch_id IS NULL;
CREATE INDEX outbox_batch ON outbox (batch_id) WHERE batch_id IS NOT NULL;

-- Liveness of the platform's services (worker, lake sink, Flight SQL) for /healthz.
CREATE TABLE service_heartbeats (
  service text NOT NULL,
  instance text NOT NULL,
  at timestamptz NOT NULL,
  PRIMARY KEY (service, instance)
);

-- ---------------------------------------------------------------- pre-auth lookups
-- Login and credential resolution happen before the org is known: these SECURITY
-- DEFINER functions are the only way the app role sees across organizations, and
-- they return only what authentication needs.
CREATE FUNCTION auth_user_by_email(p_email text)
RETURNS TABLE (user_id uuid, display_name text, password_hash text, disabled boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT id, display_name, password_hash, disabled FROM users WHERE lower(email) = lower(p_email)
$$;

CREATE FUNCTION auth_user_memberships(p_user uuid)
RETURNS TABLE (org_id uuid, org_slug text, org_name text, role text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT o.id, o.slug, o.name, m.role FROM memberships m JOIN organizations o ON o.id = m.org_id
  WHERE m.user_id = p_user AND m.active ORDER BY o.slug
$$;

CREATE FUNCTION auth_resolve_session(p_hash bytea)
RETURNS TABLE (session_id uuid, org_id uuid, user_id uuid, email text, display_name text, role text,
               expires_at timestamptz, revoked_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT s.id, s.org_id, s.user_id, u.email, u.display_name, m.role, s.expires_at, s.revoked_at
  FROM auth_sessions s JOIN users u ON u.id = s.user_id
  JOIN memberships m ON m.org_id = s.org_id AND m.user_id = s.user_id AND m.active AND NOT u.disabled
  WHERE s.token_hash = p_hash
$$;

CREATE FUNCTION auth_resolve_api_key(p_hash bytea)
RETURNS TABLE (key_id uuid, org_id uuid, name text, role text, revoked_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT id, org_id, name, role, revoked_at FROM api_keys WHERE key_hash = p_hash
$$;

CREATE FUNCTION auth_org_by_slug(p_slug text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT id FROM organizations WHERE slug = p_slug
$$;

-- ---------------------------------------------------------------- row-level security
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON organizations USING (id = current_org());
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
-- A user row is visible to an org only through a membership in it; new accounts may be inserted.
CREATE POLICY members_select ON users FOR SELECT USING (
  EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = users.id AND m.org_id = current_org()));
CREATE POLICY members_update ON users FOR UPDATE USING (
  EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = users.id AND m.org_id = current_org()));
CREATE POLICY accounts_insert ON users FOR INSERT WITH CHECK (true);
"""

TENANT_POLICY = """
ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON {t} USING (org_id = current_org()) WITH CHECK (org_id = current_org());
"""

GRANTS = """
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {app};
GRANT USAGE ON SCHEMA public TO {app};
GRANT SELECT ON organizations TO {app};
GRANT SELECT, INSERT, UPDATE ON users, memberships, auth_sessions, api_keys TO {app};
GRANT SELECT, INSERT ON login_attempts TO {app};
GRANT SELECT, INSERT, UPDATE ON service_heartbeats TO {app};
GRANT SELECT, INSERT ON audit_pending TO {app};
GRANT SELECT ON audit_log TO {app};
GRANT SELECT ON audit_heads TO {app};
GRANT SELECT, INSERT ON audit_checkpoints TO {app};
GRANT INSERT ON outbox TO {app};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {app};
REVOKE ALL ON FUNCTION audit_seal(uuid, int, boolean), audit_seal_all(int), audit_log_orgs(), auth_user_by_email(text),
  auth_user_memberships(uuid), auth_resolve_session(bytea), auth_resolve_api_key(bytea),
  auth_org_by_slug(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_seal(uuid, int, boolean), audit_seal_all(int), audit_log_orgs(), auth_user_by_email(text),
  auth_user_memberships(uuid), auth_resolve_session(bytea), auth_resolve_api_key(bytea),
  auth_org_by_slug(text) TO {app};
"""


def upgrade() -> None:
    op.execute(UPGRADE.format(app=APP))
    for t in TENANT_TABLES:
        op.execute(TENANT_POLICY.format(t=t))
    op.execute(GRANTS.format(app=APP))


def downgrade() -> None:
    for t in ["service_heartbeats", "outbox", "audit_checkpoints", "audit_heads", "audit_log", "audit_pending", "login_attempts",
              "api_keys", "auth_sessions", "memberships", "users", "organizations"]:
        op.execute(f"DROP TABLE IF EXISTS {t} CASCADE")
    for f in ["audit_log_orgs()", "audit_seal_all(int)", "audit_seal(uuid, int, boolean)", "audit_refuse_change()", "current_org()",
              "auth_user_by_email(text)", "auth_user_memberships(uuid)", "auth_resolve_session(bytea)",
              "auth_resolve_api_key(bytea)", "auth_org_by_slug(text)"]:
        op.execute(f"DROP FUNCTION IF EXISTS {f}")
