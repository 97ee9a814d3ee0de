"""Audit-chain test helpers: a fresh org with an honest chain, and an attacker with the owner's
(superuser's) connection who can switch the append-only triggers off."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from core.db import TenantSessions, libpq_url
from domain import audit
from domain.audit import service
from domain.audit.chain import GENESIS, VerifyResult, link
from domain.audit.checkpoints import (
    Checkpoint,
    CheckpointStore,
    SigningKey,
    load_or_create_signing_key,
    load_public_keys,
)
from domain.identity import service as identity
from domain.roles import Actor, RequestContext

ALICE = Actor(type="user", id=str(uuid.UUID(int=0xA11CE)), display="Alice Émilie Zoë 李")
UTC = dt.UTC

# The three append-only tables and their ENABLE ALWAYS triggers.
AUDIT_TRIGGERS = {
    "audit_log": ("audit_log_append_only", "audit_log_no_truncate"),
    "audit_pending": ("audit_pending_append_only", "audit_pending_no_truncate"),
    "audit_checkpoints": ("audit_checkpoints_append_only", "audit_checkpoints_no_truncate"),
}


def sample_entry(i: int) -> dict[str, Any]:
    """Entry i of an honest chain: unicode, nested before/after, floats, microsecond timestamps."""
    kinds = [
        dict(action="create", entity_type="sample", entity_id=f"S-{i}",
             after={"name": "Ünïcødé ✓ 试剂 🧪", "volume_ml": 12.5, "tags": ["α", "β"], "ok": True}),
        dict(action="update", entity_type="sample", entity_id=f"S-{i}",
             before={"volume_ml": 12.5, "nested": {"deep": {"x": [1, 2.25, {"y": None}], "z": -0.0}}},
             after={"volume_ml": 0.1, "nested": {"deep": {"x": [1, 1e-7, {"y": 1e20}], "z": 3.141592653589793}}},
             reason="re-measured — Δ 0.1 ml"),
        dict(action="approve", entity_type="protocol", entity_id=f"P-{i}", severity=audit.Severity.notice,
             reason='quote " backslash \\ newline \n tab \t and \u2028 separator',
             after={"json-looking": '{"action":"delete"}', "empty": {}, "list": []}),
        dict(action="delete", entity_type="instrument", entity_id=f"I-{i}", before={"serial": "X/1"},
             severity=audit.Severity.warning, reason=None),
    ]
    entry = kinds[i % len(kinds)]
    entry["occurred_at"] = dt.datetime(2025, 3, 1, 12, tzinfo=UTC) + dt.timedelta(seconds=i, microseconds=7 * i + 1)
    return entry


@dataclass
class Chain:
    """One fresh org, its checkpoint store and the trusted key; written through the real paths."""

    org: uuid.UUID
    app: TenantSessions
    owner: TenantSessions
    url: str  # owner (superuser) URL, libpq form
    key: SigningKey
    keys: dict[str, Ed25519PublicKey]
    store: CheckpointStore
    tmp: Path

    def write(self, n: int, *, start: int = 0, context: RequestContext | None = None) -> None:
        """n entries, each recorded in its own app-role transaction, as the API does."""
        for i in range(start, start + n):
            ctx = context or RequestContext(request_id=f"req-{i}", client_address="10.0.0.7", user_agent="pytest ☃",
                                            api_key_id=str(uuid.UUID(int=i + 1)) if i % 3 == 0 else None)
            with self.app.begin(self.org) as s:
                audit.record(s, org_id=self.org, actor=ALICE, context=ctx, **sample_entry(i))

    def seal(self) -> int:
        with self.app.begin(self.org) as s:
            return service.seal(s, self.org)

    def checkpoint(self) -> Checkpoint:
        self.seal()
        with self.app.begin(self.org) as s:
            cp = service.write_checkpoint(s, self.org, self.key, self.store)
        assert cp is not None
        return cp

    def verify(self, org: uuid.UUID | None = None, *, workers: int = 1) -> VerifyResult:
        with self.app.begin(org or self.org) as s:
            return service.verify_org(s, org or self.org, store=self.store, keys=self.keys, workers=workers)

    def size(self) -> int:
        with self.owner.begin(None) as s:
            return service.head(s, self.org)[0]

    @contextmanager
    def sealers_held(self) -> Iterator[None]:
        """Keep background sealers (the session's API app runs one) off this org while a test looks at its
        pending entries: they skip an org whose chain head is locked."""
        with psycopg.connect(self.url) as holder:
            holder.execute("SELECT 1 FROM audit_heads WHERE org_id = %s FOR UPDATE", (self.org,))
            yield

    @contextmanager
    def attacker(self, *, tables: tuple[str, ...] = ("audit_log", "audit_checkpoints")) -> Iterator[psycopg.Connection]:
        """The owner's (superuser's) connection with the audit triggers switched off, the way an
        attacker with database access would; one transaction, triggers back on (ALWAYS) at its end."""
        with psycopg.connect(self.url) as conn:
            for t in tables:
                conn.execute(f"ALTER TABLE {t} DISABLE TRIGGER USER")
            yield conn
            for t in tables:
                conn.execute(f"ALTER TABLE {t} ENABLE TRIGGER USER")
                for trig in AUDIT_TRIGGERS.get(t, ()):
                    conn.execute(f"ALTER TABLE {t} ENABLE ALWAYS TRIGGER {trig}")


def rows(conn: psycopg.Connection, org: uuid.UUID) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute("SELECT * FROM audit_log WHERE org_id = %s ORDER BY seq", (org,)).fetchall()


def relink(conn: psycopg.Connection, org: uuid.UUID, from_seq: int, *, move_head: bool = True) -> None:
    """What a thorough attacker does after editing: recompute body_hash, prev_hash and chain_hash of
    every entry from `from_seq` on from the bodies as they now are, and move the sealed head along."""
    prev = GENESIS
    for r in rows(conn, org):
        if r["seq"] >= from_seq:
            bh = hashlib.sha256(r["body"]).digest()
            ch = link(prev, r["seq"], org, bh)
            conn.execute("UPDATE audit_log SET body_hash = %s, prev_hash = %s, chain_hash = %s "
                         "WHERE org_id = %s AND seq = %s", (bh, prev, ch, org, r["seq"]))
            prev = ch
        else:
            prev = bytes(r["chain_hash"])
    if move_head:
        set_head(conn, org)


def set_head(conn: psycopg.Connection, org: uuid.UUID) -> None:
    """Make audit_heads agree with the chain as it now is."""
    last = conn.execute("SELECT seq, chain_hash FROM audit_log WHERE org_id = %s ORDER BY seq DESC LIMIT 1",
                        (org,)).fetchone()
    seq, ch = (last[0], last[1]) if last else (0, GENESIS)
    conn.execute("UPDATE audit_heads SET seq = %s, chain_hash = %s WHERE org_id = %s", (seq, ch, org))


def triggers_always_on(conn: psycopg.Connection) -> bool:
    names = [t for ts in AUDIT_TRIGGERS.values() for t in ts]
    got = dict(conn.execute("SELECT tgname, tgenabled FROM pg_trigger WHERE tgname = ANY(%s)", (names,)).fetchall())
    return all(got.get(n) == "A" for n in names)


@pytest.fixture
def make_chain(owner: TenantSessions, platform: Any, database_url: str, tmp_path: Path):
    """Factory: a fresh org whose chain holds `n` honest entries (plus the org's own creation), sealed,
    and optionally checkpointed."""
    key = load_or_create_signing_key(tmp_path / "keys" / "audit-ed25519.pem")
    keys = load_public_keys([tmp_path / "keys"])
    store = CheckpointStore(tmp_path / "checkpoints")
    url = libpq_url(database_url)

    def make(n: int = 11, *, checkpoint: bool = True) -> Chain:
        with owner.begin(None) as s:
            org = identity.create_org(s, slug=f"audit-{secrets.token_hex(4)}", name="Tamper Lab")
        c = Chain(org=org.id, app=platform.sessions, owner=owner, url=url, key=key, keys=keys, store=store,
                  tmp=tmp_path)
        c.write(n)
        c.seal()
        if checkpoint:
            c.checkpoint()
        return c

    yield make
    with psycopg.connect(url) as conn:
        assert triggers_always_on(conn), "a test left the audit triggers switched off"
