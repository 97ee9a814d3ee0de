"""Signed tree heads and witnesses: each checkpoint signs the Merkle root; a checkpoint kept outside the database
(a witness file) catches a superuser who rewrites history, appends correctly linked rows, advances the head and
gets the rewritten log signed again -- which the database's own checks cannot see once its checkpoints are gone."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import psycopg
from sqlalchemy import text

from domain.audit import merkle, service, tree
from domain.audit.chain import DERIVED_COLUMNS, derived_from_body
from domain.audit.checkpoints import CHECKPOINT_TYPE_V2, Checkpoint, sign
from tests.audit.conftest import Chain, relink, rows

ROOT = Path(__file__).resolve().parents[2]
MERKLE_TRIGGERS = ("audit_merkle_append_only", "audit_merkle_no_truncate")


def test_checkpoint_signs_the_tree_head(make_chain):
    c: Chain = make_chain(40)
    with c.app.begin(c.org) as s:
        size, _ = service.head(s, c.org)
        cp = max((x for _, x in c.store.list(str(c.org)) if x), key=lambda x: x.size)
        leaves = [merkle.leaf_hash(merkle.leaf_input(r[0], c.org, bytes(r[1]))) for r in s.execute(
            text("SELECT seq, body_hash FROM audit_log WHERE org_id = :o ORDER BY seq"), {"o": str(c.org)}).all()]
        stored = s.execute(text("SELECT count(*) FROM audit_merkle WHERE org_id = :o"), {"o": str(c.org)}).scalar()
        recorded = s.execute(text("SELECT root_hash FROM audit_checkpoints WHERE org_id = :o AND size = :n"),
                             {"o": str(c.org), "n": cp.size}).scalar()
    assert orjson.loads(cp.to_json())["type"] == CHECKPOINT_TYPE_V2
    assert cp.size == size == 41 and cp.root_hash == merkle.root(leaves) == bytes(recorded)
    assert cp.check_signature(c.keys) is None
    assert stored == 3  # two blocks of 16 leaves and the subtree of 32 above them: nothing below
    forged = Checkpoint(cp.org_id, cp.size, cp.head_hash, cp.issued_at, cp.key_id, cp.signature,
                        merkle.node_hash(cp.root_hash, cp.root_hash))
    assert forged.check_signature(c.keys) == f"checkpoint of size {cp.size} has an invalid signature"
    # the tree grows incrementally: the next checkpoint stores only what the new entries complete
    c.write(30, start=200)
    cp2 = c.checkpoint()
    with c.app.begin(c.org) as s:
        assert cp2.root_hash == tree.root_at(s, str(c.org), cp2.size)
        proof = tree.consistency_proof(s, str(c.org), cp.size, cp2.size)
        assert len(proof) <= 2 * cp2.size.bit_length()
    assert merkle.verify_consistency(cp.size, cp2.size, cp.root_hash, cp2.root_hash, proof)
    assert c.verify().ok


def test_checkpoints_signed_before_the_tree_still_verify(make_chain):
    c: Chain = make_chain(5, checkpoint=False)
    with c.app.begin(c.org) as s:
        size, head = service.head(s, c.org)
    old = sign(c.key, str(c.org), size, head, dt.datetime.now(dt.UTC))  # a /1 checkpoint: no root
    c.store.write(old)
    with psycopg.connect(c.url) as conn:
        conn.execute("INSERT INTO audit_checkpoints (org_id, size, head_hash, key_id, signature, issued_at) "
                     "VALUES (%s, %s, %s, %s, %s, %s)", (c.org, size, head, old.key_id, old.signature, old.issued_at))
    assert Checkpoint.from_json(old.to_json()).check_signature(c.keys) is None
    c.write(20, start=300)
    new = c.checkpoint()  # the tree is built from the first leaf on
    assert new.root_hash is not None
    with c.app.begin(c.org) as s:
        r = service.verify_org(s, c.org, store=c.store, keys=c.keys, workers=1, merkle_tree=True)
    assert r.ok, r.problems


def _rewrite_and_append(c: Chain, keep: int, total: int) -> None:
    """The attack: as the superuser, drop entries after `keep`, append forged ones to `total` (bodies and
    query columns that agree, links recomputed, the sealed head advanced), and remove every checkpoint the
    server can reach (its record, its files) and the stored tree, so nothing inside says what was there."""
    with psycopg.connect(c.url) as conn:
        for t in ("audit_log", "audit_checkpoints", "audit_merkle"):
            conn.execute(f"ALTER TABLE {t} DISABLE TRIGGER USER")
        template = orjson.loads(rows(conn, c.org)[-1]["body"])
        conn.execute("DELETE FROM audit_log WHERE org_id = %s AND seq > %s", (c.org, keep))
        for seq in range(keep + 1, total + 1):
            body = {**template, "action": "approve", "entity": {"type": "sample", "id": f"FORGED-{seq}"},
                    "reason": "nothing to see here"}
            raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
            cols = dict(zip(DERIVED_COLUMNS, derived_from_body(body), strict=True))
            names = ", ".join(cols)
            conn.execute(
                f"INSERT INTO audit_log (org_id, seq, body, body_hash, prev_hash, chain_hash, {names}) "
                f"VALUES (%s, %s, %s, %s, %s, %s, {', '.join(['%s'] * len(cols))})",
                (c.org, seq, raw, b"", b"", b"", *cols.values()))
        relink(conn, c.org, keep + 1)
        conn.execute("DELETE FROM audit_checkpoints WHERE org_id = %s", (c.org,))
        conn.execute("DELETE FROM audit_merkle WHERE org_id = %s", (c.org,))
        for t in ("audit_log", "audit_checkpoints", "audit_merkle"):
            conn.execute(f"ALTER TABLE {t} ENABLE TRIGGER USER")
        for t, trig in [("audit_log", "audit_log_append_only"), ("audit_log", "audit_log_no_truncate"),
                        ("audit_checkpoints", "audit_checkpoints_append_only"),
                        ("audit_checkpoints", "audit_checkpoints_no_truncate"),
                        *[("audit_merkle", x) for x in MERKLE_TRIGGERS]]:
            conn.execute(f"ALTER TABLE {t} ENABLE ALWAYS TRIGGER {trig}")
    shutil.rmtree(c.store.root / str(c.org), ignore_errors=True)


def test_witness_catches_an_appended_and_relinked_chain(make_chain, tmp_path):
    c: Chain = make_chain(30)  # signed at 31
    witness = max((x for _, x in c.store.list(str(c.org)) if x), key=lambda x: x.size)
    kept = tmp_path / "witness.json"
    kept.write_bytes(witness.to_json())  # the auditor's copy, outside the server
    w = Checkpoint.from_json(kept.read_bytes())
    # honest growth: the log still extends the witness, by a consistency proof from a later signed head
    c.write(9, start=400)
    c.checkpoint()
    with c.app.begin(c.org) as s:
        r = service.verify_org(s, c.org, store=c.store, keys=c.keys, workers=1, witness=w)
    assert r.ok, r.problems

    _rewrite_and_append(c, keep=20, total=60)
    c.checkpoint()  # the server, finding no checkpoint any more, signs the forged log as it now is
    with c.app.begin(c.org) as s:
        blind = service.verify_org(s, c.org, store=c.store, keys=c.keys, workers=1, merkle_tree=True)
    assert blind.ok, blind.problems  # from inside, a consistent forgery
    with c.app.begin(c.org) as s:
        r = service.verify_org(s, c.org, store=c.store, keys=c.keys, workers=1, witness=w)
    assert not r.ok
    what = " | ".join(p.what for p in r.problems)
    assert "signed checkpoint of size 31 disagrees with the chain" in what
    assert "no longer give the Merkle root the witness checkpoint signed" in what
    assert "not consistent with the witness checkpoint of size 31 (RFC 9162 consistency proof fails)" in what


def test_cli_verify_with_a_witness_file(database_url, data_dir, client, tmp_path):
    """`flasktrack audit verify --witness FILE`: exit 0 while the log extends the witness, 1 once history was
    rewritten and relinked, 2 for a file that is no checkpoint."""
    env = {**os.environ, "FLASKTRACK_DATABASE_URL": database_url, "FLASKTRACK_DATA_DIR": str(data_dir),
           "FLASKTRACK_LOG_LEVEL": "WARNING"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flasktrack.cli", *args], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=120)

    slug = f"witness-{uuid.uuid4().hex[:8]}"
    assert run("org", "create", slug, "Witness Lab").returncode == 0
    for i in range(3):
        assert run("user", "create", "--org", slug, "--email", f"w{i}@{slug}.example.org", "--name", f"W {i}",
                   "--role", "scientist", "--password", "a long enough password").returncode == 0
    r = run("audit", "checkpoint", "--org", slug)
    assert r.returncode == 0, r.stderr
    from sqlalchemy import create_engine

    eng = create_engine(database_url)
    with eng.begin() as conn:
        org = conn.execute(text("SELECT id FROM organizations WHERE slug = :s"), {"s": slug}).scalar_one()
    eng.dispose()
    store = next(p for p in data_dir.rglob(str(org)) if p.is_dir())
    witness = tmp_path / "witness.json"
    witness.write_bytes(sorted(store.glob("*.json"))[-1].read_bytes())
    ok = run("audit", "verify", "--org", slug, "--witness", str(witness))
    assert ok.returncode == 0, ok.stderr
    assert run("audit", "verify", "--witness", str(tmp_path / "nope.json")).returncode == 2
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{}")
    bad_file = run("audit", "verify", "--witness", str(garbage))
    assert bad_file.returncode == 2 and "not a signed audit checkpoint" in bad_file.stderr

    from domain.audit.checkpoints import CheckpointStore

    chain = Chain(org=org, app=None, owner=None, url=_libpq(database_url), key=None, keys={},  # type: ignore[arg-type]
                  store=CheckpointStore(store.parent), tmp=tmp_path)
    _rewrite_and_append(chain, keep=2, total=12)
    assert run("audit", "checkpoint", "--org", slug).returncode == 0  # signs the forgery, none the wiser
    assert run("audit", "verify", "--org", slug).returncode == 0
    r = run("audit", "verify", "--org", slug, "--witness", str(witness))
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"TAMPERED: org {slug}" in r.stderr and "witness" in r.stderr


def _libpq(url: str) -> str:
    from core.db import libpq_url

    return libpq_url(url)


def test_a_whole_export_is_checked_against_the_signed_tree_head(make_chain):
    from domain.audit.offline import verify_export
    from domain.audit.service import AuditFilter
    from domain.roles import SYSTEM_ACTOR, Caller, Role

    c: Chain = make_chain(25)
    cp = max((x for _, x in c.store.list(str(c.org)) if x), key=lambda x: x.size)
    caller = Caller(org_id=c.org, org_slug="x", role=Role.auditor, actor=SYSTEM_ACTOR)
    with c.app.begin(c.org) as s:
        lines = list(service.export_lines(s, caller, AuditFilter(), "jsonl", to_seq=cp.size))
    assert verify_export(lines, cp, c.keys).ok
    # a checkpoint signed over the right chain head but another tree: the export's entries give away which is true
    wrong = sign(c.key, cp.org_id, cp.size, cp.head_hash, cp.issued_at, merkle.node_hash(cp.head_hash, cp.head_hash))
    r = verify_export(lines, wrong, c.keys)
    assert not r.ok and any("do not give the Merkle root the checkpoint signed" in p.what for p in r.problems)
