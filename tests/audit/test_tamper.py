"""Tampering that verification must catch (docs: shared notes, audit-chain scenarios 1-15), done the
way an attacker with the database owner's (superuser's) connection would, and no false alarm on
honest data. Every test builds its own org: 12 honest entries, sealed, one signed checkpoint."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid

import orjson
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain import audit
from domain.audit import service
from domain.audit.chain import VerifyResult, link
from domain.audit.checkpoints import Checkpoint, load_or_create_signing_key, sign
from domain.audit.offline import verify_export
from domain.audit.service import AuditFilter
from domain.identity import service as identity
from domain.roles import SYSTEM_ACTOR, Caller, RequestContext, Role
from tests.audit.conftest import ALICE, Chain, relink, rows, set_head

N = 12  # entries per test chain: the org's creation + 11 written


def bad(r: VerifyResult, seq: int | None, *words: str) -> None:
    """Not ok, first bad seq as given, and the message says what happened."""
    assert not r.ok, "tampering went undetected"
    first = r.first_problem
    assert first is not None
    assert first.seq == seq, (first, r.problems)
    for w in words:
        assert any(w in p.what for p in r.problems), (w, r.problems)


def edit_body(body: bytes, **changes: object) -> bytes:
    """The attacker's edit: the canonical bytes of the entry with some fields changed."""
    d = orjson.loads(body)
    d.update(changes)
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS)


# ---------------------------------------------------------------- no false alarm


def test_honest_chain_verifies(make_chain):
    c: Chain = make_chain()
    r = c.verify()
    assert r.ok, r.problems
    assert (r.count, r.head_seq) == (N, N)
    with psycopg.connect(c.url) as conn:
        got = rows(conn, c.org)
    assert [x["seq"] for x in got] == list(range(1, N + 1))
    # what was hashed is what is read back: unicode verbatim, floats as decimal strings, µs timestamps
    upd = orjson.loads(got[2]["body"])
    assert upd["action"] == "update" and upd["after"]["volume_ml"] == "0.1"
    assert upd["after"]["nested"]["deep"]["x"] == [1, "0.0000001", {"y": "1e+20"}]
    assert upd["before"]["nested"]["deep"]["z"] == "-0.0" and upd["occurred_at"].endswith(".000008Z")
    assert "Ünïcødé ✓ 试剂 🧪".encode() in got[1]["body"]
    assert got[3]["reason"] == 'quote " backslash \\ newline \n tab \t and \u2028 separator'


def test_honest_edge_values_verify(make_chain):
    """Upper-case uuids, a non-UTC offset, the epoch, empty strings, key order, big nesting."""
    c: Chain = make_chain(0, checkpoint=False)
    odd = [
        dict(org_id=str(c.org).upper(), context=RequestContext(api_key_id=str(uuid.uuid4()).upper(), request_id="")),
        dict(occurred_at=dt.datetime(2025, 1, 1, 1, 2, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))),
        dict(occurred_at=dt.datetime(1970, 1, 1, tzinfo=dt.UTC), reason=""),
        dict(after={"z": 1, "a": {"c": [3, 2, 1], "b": 0.5}, "": "", "é": "e"}),
        dict(after={"deep": [[[[[[[[[["x"]]]]]]]]]], "n": 10**18, "neg": -1.5e-300}),
    ]
    for extra in odd:
        kw = dict(org_id=c.org, actor=ALICE, action="update", entity_type="sample", entity_id="S-odd") | extra
        with c.app.begin(c.org) as s:
            audit.record(s, **kw)  # type: ignore[arg-type]
    c.checkpoint()
    r = c.verify()
    assert r.ok and r.count == 1 + len(odd), r.problems


def test_checkpoints_alone_and_repeated_verify_are_quiet(make_chain):
    c: Chain = make_chain()
    c.write(3, start=20)
    c.checkpoint()
    for _ in range(2):
        r = c.verify()
        assert r.ok and r.count == N + 3, r.problems


# ---------------------------------------------------------------- 1-3: edits


def test_1_body_edited_in_the_middle(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        body = rows(conn, c.org)[5]["body"]
        conn.execute("UPDATE audit_log SET body = %s WHERE org_id = %s AND seq = 6",
                     (edit_body(body, reason="nothing to see"), c.org))
    bad(c.verify(), 6, "body does not match its body_hash")


def test_2_derived_column_edited(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        conn.execute("UPDATE audit_log SET actor_id = 'mallory' WHERE org_id = %s AND seq = 7", (c.org,))
        conn.execute("UPDATE audit_log SET entity_id = 'S-other', reason = 'tidied up' WHERE org_id = %s AND seq = 9",
                     (c.org,))
    r = c.verify()
    bad(r, 7, "column(s) actor_id differ from the hashed body")
    assert any(p.seq == 9 and "entity_id, reason" in p.what for p in r.problems), r.problems


def test_3_row_edited_with_its_own_hashes_recomputed(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        got = rows(conn, c.org)
        body = edit_body(got[5]["body"], action="view")
        bh = hashlib.sha256(body).digest()
        ch = link(bytes(got[4]["chain_hash"]), 6, c.org, bh)
        conn.execute("UPDATE audit_log SET body = %s, action = 'view', body_hash = %s, chain_hash = %s "
                     "WHERE org_id = %s AND seq = 6", (body, bh, ch, c.org))
    bad(c.verify(), 7, "prev_hash does not link to the chain hash of seq 6")


def test_3b_last_row_edited_with_hashes_recomputed(make_chain):
    """Nothing links after the last entry: the signed checkpoint and the sealed head catch it."""
    c: Chain = make_chain()
    with c.attacker() as conn:
        got = rows(conn, c.org)
        body = edit_body(got[-1]["body"], reason="rewritten")
        bh = hashlib.sha256(body).digest()
        ch = link(bytes(got[-2]["chain_hash"]), N, c.org, bh)
        conn.execute("UPDATE audit_log SET body = %s, reason = 'rewritten', body_hash = %s, chain_hash = %s "
                     "WHERE org_id = %s AND seq = %s", (body, bh, ch, c.org, N))
    bad(c.verify(), N, f"signed checkpoint of size {N} disagrees", "differs from the sealed head")


# ---------------------------------------------------------------- 4: a suffix rewritten


def test_4_suffix_rewritten_with_all_links_recomputed(make_chain):
    c: Chain = make_chain()  # checkpoint at 12
    c.write(4, start=40)
    c.checkpoint()  # and at 16
    with c.attacker() as conn:
        for r in rows(conn, c.org)[13:]:
            conn.execute("UPDATE audit_log SET body = %s WHERE org_id = %s AND seq = %s",
                         (edit_body(r["body"], after={"forged": True}), c.org, r["seq"]))
        relink(conn, c.org, 14)  # every link and the sealed head made consistent again
    r = c.verify()
    bad(r, 16, "signed checkpoint of size 16 disagrees", "somewhere in entries 13..16")
    assert len(r.problems) == 1, r.problems  # the checkpoint at 12 still holds


# ---------------------------------------------------------------- 5-7: deletions


def test_5_row_deleted(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        conn.execute("DELETE FROM audit_log WHERE org_id = %s AND seq = 6", (c.org,))
    bad(c.verify(), 6, "entries missing: expected seq 6, next is 7")


def test_6_rows_deleted_and_renumbered(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        conn.execute("DELETE FROM audit_log WHERE org_id = %s AND seq IN (6, 7)", (c.org,))
        for seq in range(8, N + 1):
            conn.execute("UPDATE audit_log SET seq = %s WHERE org_id = %s AND seq = %s", (seq - 2, c.org, seq))
        set_head(conn, c.org)
    r = c.verify()
    bad(r, 6, "prev_hash does not link", "chain_hash is not the link")
    assert any("chain truncated: a signed checkpoint covers 12 entries" in p.what for p in r.problems)


def test_6b_rows_deleted_renumbered_and_relinked(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        conn.execute("DELETE FROM audit_log WHERE org_id = %s AND seq = 6", (c.org,))
        for seq in range(7, N + 1):
            conn.execute("UPDATE audit_log SET seq = %s WHERE org_id = %s AND seq = %s", (seq - 1, c.org, seq))
        relink(conn, c.org, 6)
    bad(c.verify(), N, "chain truncated: a signed checkpoint covers 12 entries, the chain ends at seq 11")


def test_7_tail_truncated(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        conn.execute("DELETE FROM audit_log WHERE org_id = %s AND seq > 9", (c.org,))
        set_head(conn, c.org)
    bad(c.verify(), 10, "chain truncated: a signed checkpoint covers 12 entries, the chain ends at seq 9")


def test_7b_tail_truncated_past_the_last_checkpoint(make_chain):
    """Entries sealed after the last checkpoint and then removed: the sealed head still says where
    the chain ended (an attacker who also rewinds audit_heads is caught at the next checkpoint only)."""
    c: Chain = make_chain()
    c.write(3, start=30)
    c.seal()
    with c.attacker() as conn:
        conn.execute("DELETE FROM audit_log WHERE org_id = %s AND seq > %s", (c.org, N + 1))
    bad(c.verify(), N + 2, f"the sealed head is at seq {N + 3} but the chain ends at seq {N + 1}")


# ---------------------------------------------------------------- 8-10: reordering and forgery


def test_8_two_rows_swapped(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        conn.execute("UPDATE audit_log SET seq = 1000 WHERE org_id = %s AND seq = 5", (c.org,))
        conn.execute("UPDATE audit_log SET seq = 5 WHERE org_id = %s AND seq = 6", (c.org,))
        conn.execute("UPDATE audit_log SET seq = 6 WHERE org_id = %s AND seq = 1000", (c.org,))
    bad(c.verify(), 5, "chain_hash is not the link")


def test_8b_two_bodies_swapped_with_links_recomputed(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        got = rows(conn, c.org)
        for seq, src in ((5, got[5]), (6, got[4])):
            conn.execute("UPDATE audit_log SET body = %s, occurred_at = %s, action = %s, entity_type = %s, "
                         "entity_id = %s, severity = %s, reason = %s, request_id = %s, api_key_id = %s "
                         "WHERE org_id = %s AND seq = %s",
                         (src["body"], src["occurred_at"], src["action"], src["entity_type"], src["entity_id"],
                          src["severity"], src["reason"], src["request_id"], src["api_key_id"], c.org, seq))
        relink(conn, c.org, 5)
    bad(c.verify(), N, f"signed checkpoint of size {N} disagrees")


def _forged(c: Chain, seq: int, prev: bytes) -> dict[str, object]:
    body = audit.recorder.entry_body(org_id=c.org, occurred_at=dt.datetime.now(dt.UTC), actor=ALICE,
                                     action="approve", entity_type="batch", entity_id="B-forged")
    raw = audit.recorder.canonical_bytes(body)
    bh = hashlib.sha256(raw).digest()
    p = audit.recorder.entry_params(body)
    p.update(seq=seq, body_hash=bh, prev_hash=prev, chain_hash=link(prev, seq, c.org, bh))
    return p


FORGE = """INSERT INTO audit_log (org_id, seq, body, body_hash, prev_hash, chain_hash, occurred_at, actor_type,
  actor_id, actor_display, action, entity_type, entity_id, severity, reason, request_id, api_key_id)
  VALUES (%(org_id)s, %(seq)s, %(body)s, %(body_hash)s, %(prev_hash)s, %(chain_hash)s, %(occurred_at)s,
  %(actor_type)s, %(actor_id)s, %(actor_display)s, %(action)s, %(entity_type)s, %(entity_id)s, %(severity)s,
  %(reason)s, %(request_id)s, %(api_key_id)s)"""


def test_9_forged_row_inserted(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        for seq in range(N, 6, -1):
            conn.execute("UPDATE audit_log SET seq = %s WHERE org_id = %s AND seq = %s", (seq + 1, c.org, seq))
        prev = bytes(rows(conn, c.org)[5]["chain_hash"])
        conn.execute(FORGE, _forged(c, 7, prev))  # links perfectly to seq 6
    r = c.verify()
    bad(r, 8, "prev_hash does not link to the chain hash of seq 7", "lie past the sealed head")


def test_9b_forged_row_appended(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        conn.execute(FORGE, _forged(c, N + 1, bytes(rows(conn, c.org)[-1]["chain_hash"])))
    bad(c.verify(), N + 1, f"entries {N + 1}..{N + 1} lie past the sealed head (seq {N}): appended outside the sealer")
    # and the next honest entry cannot be sealed over it: reported, not crashed
    c.write(1, start=50)
    r = c.verify()
    bad(r, N + 1, "lie past the sealed head")
    assert any("pending entries cannot be sealed" in p.what for p in r.problems), r.problems


def test_9c_forged_rows_inserted_and_everything_relinked(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        for seq in range(N, 3, -1):
            conn.execute("UPDATE audit_log SET seq = %s WHERE org_id = %s AND seq = %s", (seq + 1, c.org, seq))
        conn.execute(FORGE, _forged(c, 4, bytes(rows(conn, c.org)[2]["chain_hash"])))
        relink(conn, c.org, 4)
    bad(c.verify(), N, f"signed checkpoint of size {N} disagrees")


def test_10_row_moved_to_another_org(make_chain):
    a: Chain = make_chain()
    b: Chain = make_chain(3)
    with a.attacker() as conn:
        conn.execute("UPDATE audit_log SET org_id = %s, seq = 5 WHERE org_id = %s AND seq = 6", (b.org, a.org))
        set_head(conn, a.org)
        set_head(conn, b.org)
    bad(a.verify(), 6, "entries missing: expected seq 6, next is 7")
    rb = b.verify()
    bad(rb, 5, f"body names org {a.org}, not {b.org}", "chain_hash is not the link")


def test_11_timestamp_changed_by_one_microsecond(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        conn.execute("UPDATE audit_log SET occurred_at = occurred_at + interval '1 microsecond' "
                     "WHERE org_id = %s AND seq = 8", (c.org,))
    bad(c.verify(), 8, "column(s) occurred_at differ from the hashed body")


def test_11b_hashed_timestamp_changed_by_one_microsecond(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        got = rows(conn, c.org)[7]
        ts = dt.datetime.strptime(orjson.loads(got["body"])["occurred_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        moved = (ts + dt.timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        conn.execute("UPDATE audit_log SET body = %s, occurred_at = %s WHERE org_id = %s AND seq = 8",
                     (edit_body(got["body"], occurred_at=moved), moved, c.org))
    bad(c.verify(), 8, "body does not match its body_hash")


# ---------------------------------------------------------------- 12: checkpoints


def _record_checkpoint(c: Chain, cp: Checkpoint) -> None:
    c.store.write(cp)
    with c.app.begin(c.org) as s:
        s.execute(text("INSERT INTO audit_checkpoints (org_id, size, head_hash, key_id, signature, issued_at) "
                       "VALUES (:o, :s, :h, :k, :sig, :t)"),
                  {"o": cp.org_id, "s": cp.size, "h": cp.head_hash, "k": cp.key_id, "sig": cp.signature,
                   "t": cp.issued_at})


def test_12a_checkpoint_signed_with_a_wrong_key(make_chain):
    c: Chain = make_chain()
    c.write(2, start=60)
    c.seal()
    with c.app.begin(c.org) as s:
        size, head = service.head(s, c.org)
    rogue = load_or_create_signing_key(c.tmp / "rogue" / "key.pem")  # not among the trusted keys
    _record_checkpoint(c, sign(rogue, str(c.org), size, head, dt.datetime.now(dt.UTC)))
    r = c.verify()
    bad(r, size, f"checkpoint of size {size} is signed with unknown key {rogue.key_id}")
    assert len(r.problems) == 1, r.problems


def test_12b_checkpoint_claiming_the_trusted_key_with_a_bad_signature(make_chain):
    c: Chain = make_chain()
    c.write(1, start=60)
    c.seal()
    with c.app.begin(c.org) as s:
        size, head = service.head(s, c.org)
    rogue = load_or_create_signing_key(c.tmp / "rogue2" / "key.pem")
    forged = sign(rogue, str(c.org), size, head, dt.datetime.now(dt.UTC))
    forged = Checkpoint(forged.org_id, forged.size, forged.head_hash, forged.issued_at, c.key.key_id,
                        forged.signature)
    _record_checkpoint(c, forged)
    bad(c.verify(), size, f"checkpoint of size {size} has an invalid signature")


def test_12c_older_checkpoint_replayed(make_chain):
    """The database rolled back to an older checkpoint (chain, head and checkpoint record): the newer
    signed checkpoint file outside the database gives it away."""
    c: Chain = make_chain()  # checkpoint at 12
    c.write(4, start=70)
    c.checkpoint()  # at 16
    with c.attacker() as conn:
        conn.execute("DELETE FROM audit_log WHERE org_id = %s AND seq > %s", (c.org, N))
        conn.execute("DELETE FROM audit_checkpoints WHERE org_id = %s AND size > %s", (c.org, N))
        set_head(conn, c.org)
    r = c.verify()
    bad(r, N + 1, "chain truncated: a signed checkpoint covers 16 entries",
        "signed checkpoint of size 16 is missing from the database's record")


def test_12d_checkpoint_store_rolled_back(make_chain):
    c: Chain = make_chain()
    c.write(2, start=80)
    cp = c.checkpoint()
    for path, stored in c.store.list(str(c.org)):
        if stored and stored.size == cp.size:
            path.unlink()
    bad(c.verify(), cp.size, f"checkpoint of size {cp.size} recorded in the database is missing from the "
                             "checkpoint store")


def test_12e_two_checkpoints_of_the_same_size_disagree(make_chain):
    c: Chain = make_chain()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    _record_checkpoint(c, sign(c.key, str(c.org), N, hashlib.sha256(b"another history").digest(), later))
    bad(c.verify(), N, f"two signed checkpoints of size {N} disagree")


def test_checkpoint_refused_over_tampering(make_chain):
    """The signer verifies what it signs: tampering since the last checkpoint, or under it, is never
    laundered into a new signed checkpoint."""
    c: Chain = make_chain()
    c.write(2, start=150)
    c.seal()
    with c.attacker() as conn:
        conn.execute("UPDATE audit_log SET actor_id = 'mallory' WHERE org_id = %s AND seq = %s", (c.org, N + 1))
    with pytest.raises(service.ChainNotVerified, match=f"first bad seq {N + 1}"), c.app.begin(c.org) as s:
        service.write_checkpoint(s, c.org, c.key, c.store)
    d: Chain = make_chain()
    d.write(2, start=160)
    with d.attacker() as conn:  # the signed prefix rewritten: consistent links, but not what was signed
        got = rows(conn, d.org)
        conn.execute("UPDATE audit_log SET body = %s WHERE org_id = %s AND seq = 5",
                     (edit_body(got[4]["body"], reason="x"), d.org))
        relink(conn, d.org, 5)
    with pytest.raises(service.ChainNotVerified, match=f"no longer holds the signed checkpoint of size {N}"):
        with d.app.begin(d.org) as s:
            service.write_checkpoint(s, d.org, d.key, d.store)
    assert len(d.store.list(str(d.org))) == 1


# ---------------------------------------------------------------- 13: wiped and restarted


def test_13_whole_chain_wiped_and_restarted(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        conn.execute("DELETE FROM audit_log WHERE org_id = %s", (c.org,))
        conn.execute("DELETE FROM audit_heads WHERE org_id = %s", (c.org,))
    c.write(3, start=90)  # a fresh, internally perfect chain from genesis
    bad(c.verify(), 4, "chain truncated: a signed checkpoint covers 12 entries, the chain ends at seq 3")


def test_13b_wiped_restarted_longer_and_checkpoint_records_wiped(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        conn.execute("DELETE FROM audit_log WHERE org_id = %s", (c.org,))
        conn.execute("DELETE FROM audit_heads WHERE org_id = %s", (c.org,))
        conn.execute("DELETE FROM audit_checkpoints WHERE org_id = %s", (c.org,))
    c.write(N + 3, start=100)
    bad(c.verify(), N, f"signed checkpoint of size {N} disagrees",
        f"signed checkpoint of size {N} is missing from the database's record")


# ---------------------------------------------------------------- 14: replica role


def test_14_update_under_replica_role_is_refused_then_a_trigger_disabled_one_is_detected(make_chain):
    c: Chain = make_chain()
    with psycopg.connect(c.url) as conn:
        if not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
            pytest.skip("session_replication_role needs a superuser")
        conn.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("UPDATE audit_log SET actor_id = 'mallory' WHERE org_id = %s AND seq = 4", (c.org,))
        conn.rollback()
        conn.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("DELETE FROM audit_log WHERE org_id = %s", (c.org,))
        conn.rollback()
    assert c.verify().ok
    with c.attacker() as conn:
        conn.execute("UPDATE audit_log SET actor_id = 'mallory' WHERE org_id = %s AND seq = 4", (c.org,))
    bad(c.verify(), 4, "column(s) actor_id differ")


# ---------------------------------------------------------------- 15: the export, offline


def _export(c: Chain) -> tuple[list[bytes], Checkpoint]:
    c.seal()
    size = c.size()
    cp = next((x for _, x in c.store.list(str(c.org)) if x and x.size == size), None) or c.checkpoint()
    caller = Caller(org_id=c.org, org_slug="x", role=Role.auditor, actor=SYSTEM_ACTOR)
    with c.app.begin(c.org) as s:
        lines = list(service.export_lines(s, caller, AuditFilter(), "jsonl", to_seq=cp.size))
    return lines, cp


def _relink_lines(lines: list[bytes], org: uuid.UUID, start: int) -> list[bytes]:
    out, prev = [], None
    for i, line in enumerate(lines):
        d = orjson.loads(line)
        if i >= start:
            bh = hashlib.sha256(d["body"].encode()).digest()
            d.update(body_hash=bh.hex(), prev_hash=prev, chain_hash=link(bytes.fromhex(prev), d["seq"], org, bh).hex())
        prev = d["chain_hash"]
        out.append(orjson.dumps(d) + b"\n")
    return out


def test_15_export_edited_or_a_line_dropped(make_chain):
    c: Chain = make_chain()
    lines, cp = _export(c)
    assert len(lines) == N and verify_export(lines, cp, c.keys).ok
    # a body edited
    d = orjson.loads(lines[4])
    assert "Alice" in d["body"]
    d["body"] = d["body"].replace("Alice", "Alicia", 1)
    edited = lines[:4] + [orjson.dumps(d) + b"\n"] + lines[5:]
    bad(verify_export(edited, cp, c.keys), 5, "body does not match its body_hash")
    # the same edit with every hash after it recomputed: the signed checkpoint disagrees
    bad(verify_export(_relink_lines(edited, c.org, 4), cp, c.keys), N, f"signed checkpoint of size {N} disagrees")
    # a line dropped in the middle, at the end, at the start
    bad(verify_export(lines[:6] + lines[7:], cp, c.keys), 7, "entries missing: expected seq 7, next is 8")
    bad(verify_export(lines[:-1], cp, c.keys), N, f"chain truncated: a signed checkpoint covers {N} entries")
    bad(verify_export(lines[1:], cp, c.keys), 1, "export starts at seq 2")
    # a line that is not an export entry at all, anywhere
    bad(verify_export(lines[:3] + [b"{not json\n"] + lines[3:], cp, c.keys), 4, "line 4 is not an export entry")
    bad(verify_export([b"garbage\n"] + lines, cp, c.keys), 1, "line 1 is not an export entry")
    # the right lines with a checkpoint from another org, or none that covers them
    other = sign(c.key, str(uuid.uuid4()), N, cp.head_hash, cp.issued_at)
    assert not verify_export(lines, other, c.keys).ok


def test_15b_export_with_an_older_checkpoint_replayed(make_chain):
    c: Chain = make_chain()
    _, older = _export(c)
    c.write(3, start=110)
    lines, newer = _export(c)
    assert newer.size == N + 3 and verify_export(lines, newer, c.keys).ok
    bad(verify_export(lines, older, c.keys), N + 1, f"the checkpoint covers only {N} entries")


def test_15c_export_of_a_tampered_database_does_not_verify(make_chain):
    c: Chain = make_chain()
    with c.attacker() as conn:
        got = rows(conn, c.org)
        conn.execute("UPDATE audit_log SET body = %s WHERE org_id = %s AND seq = 3",
                     (edit_body(got[2]["body"], reason="laundered"), c.org))
        relink(conn, c.org, 3)
    lines, cp = _export(c)
    bad(verify_export(lines, cp, c.keys), N, f"signed checkpoint of size {N} disagrees")


# ---------------------------------------------------------------- verification in parallel slices


def _delete(*seqs: int):
    def go(c: Chain, conn: psycopg.Connection) -> None:
        conn.execute("DELETE FROM audit_log WHERE org_id = %s AND seq = ANY(%s)", (c.org, list(seqs)))
    return go


def _edit(seq: int, relink_from: int | None = None):
    def go(c: Chain, conn: psycopg.Connection) -> None:
        body = rows(conn, c.org)[seq - 1]["body"]
        conn.execute("UPDATE audit_log SET body = %s WHERE org_id = %s AND seq = %s",
                     (edit_body(body, reason="edited"), c.org, seq))
        if relink_from:
            relink(conn, c.org, relink_from, move_head=False)
    return go


def _truncate(c: Chain, conn: psycopg.Connection) -> None:
    conn.execute("DELETE FROM audit_log WHERE org_id = %s AND seq > 9", (c.org,))
    set_head(conn, c.org)


def _append(c: Chain, conn: psycopg.Connection) -> None:
    conn.execute(FORGE, _forged(c, N + 1, bytes(rows(conn, c.org)[-1]["chain_hash"])))


@pytest.mark.parametrize("tamper", [
    None, _delete(5), _delete(4), _delete(4, 5), _delete(7, 8), _delete(1), _edit(6), _edit(8), _edit(4, 4),
    _edit(5, 5), _edit(4, 5), _truncate, _append,
], ids=["honest", "del5", "del4", "del4-5", "del7-8", "del1", "edit6", "edit8", "relink4", "relink5",
        "row4-rewritten", "truncate", "append"])
def test_parallel_slices_report_what_one_process_reports(make_chain, monkeypatch, tamper):
    """Slices 1..4, 5..8, 9.. verified by the caller and two helper processes: same verdict and same first
    bad seq as one process, including at the seams (checkpoints at 8 and 12)."""
    from domain.audit import parallel

    monkeypatch.setattr(parallel, "PARALLEL_MIN_ENTRIES", 1)
    started: list[object] = []

    class Counted(parallel._Helper):  # noqa: SLF001
        def __init__(self, *args: object) -> None:
            started.append(args)
            super().__init__(*args)

    monkeypatch.setattr(parallel, "_Helper", Counted)
    c: Chain = make_chain(5)  # 6 entries, checkpoint at 6
    c.write(2, start=200)
    c.checkpoint()  # at 8
    c.write(4, start=210)
    c.checkpoint()  # at 12
    if tamper is not None:
        with c.attacker() as conn:
            tamper(c, conn)
    one, three = c.verify(workers=1), c.verify(workers=3)
    assert len(started) == 2  # two helper processes took slices 5..8 and 9..
    assert one.ok == three.ok == (tamper is None), (one.problems, three.problems)
    assert one.count == three.count and one.head_seq == three.head_seq and one.head_hash == three.head_hash
    if tamper is not None:
        assert one.first_problem == three.first_problem, (one.problems, three.problems)


def test_a_failed_helper_slice_is_verified_by_the_caller(make_chain, monkeypatch):
    from domain.audit import parallel

    monkeypatch.setattr(parallel, "PARALLEL_MIN_ENTRIES", 1)

    def broken(self: object) -> object:
        raise RuntimeError("helper died")

    monkeypatch.setattr(parallel._Helper, "result", broken)  # noqa: SLF001
    c: Chain = make_chain()
    assert c.verify(workers=2).ok
    with c.attacker() as conn:
        conn.execute("DELETE FROM audit_log WHERE org_id = %s AND seq = 9", (c.org,))
    bad(c.verify(workers=2), 9, "entries missing: expected seq 9, next is 10")


# ---------------------------------------------------------------- append-only, as the app


def _snapshot(c: Chain) -> tuple[object, ...]:
    with psycopg.connect(c.url) as conn:
        return tuple(conn.execute(f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {t} t "
                                  "WHERE org_id = %s", (c.org,)).fetchone()
                     for t in ("audit_log", "audit_pending", "audit_checkpoints", "audit_heads"))


@pytest.mark.parametrize("table", ["audit_log", "audit_pending", "audit_checkpoints", "audit_heads"])
def test_app_role_cannot_update_delete_or_truncate(make_chain, table):
    c: Chain = make_chain()
    with c.sealers_held():
        c.write(1, start=120)  # something pending too
        before = _snapshot(c)
        for sql in (f"UPDATE {table} SET org_id = org_id", f"DELETE FROM {table}", f"TRUNCATE {table}"):
            with pytest.raises(DBAPIError) as err, c.app.begin(c.org) as s:
                s.execute(text(sql))
            assert isinstance(err.value.orig, psycopg.errors.InsufficientPrivilege), (sql, err.value)
        assert _snapshot(c) == before


@pytest.mark.parametrize("table", ["audit_log", "audit_pending", "audit_checkpoints"])
def test_owner_is_stopped_by_the_append_only_triggers(make_chain, table):
    c: Chain = make_chain()
    with c.sealers_held():
        c.write(1, start=130)
        before = _snapshot(c)
        with psycopg.connect(c.url) as conn:
            for sql in (f"UPDATE {table} SET org_id = org_id WHERE org_id = %s",
                        f"DELETE FROM {table} WHERE org_id = %s"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                    conn.execute(sql, (c.org,))
                conn.rollback()
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(f"TRUNCATE {table} CASCADE")
            conn.rollback()
        assert _snapshot(c) == before


def test_app_role_cannot_fake_the_sealer(make_chain):
    """The sealer's escape hatch (flasktrack.sealing) is a setting anyone may set: it must not let
    the app delete pending entries."""
    c: Chain = make_chain()
    with c.sealers_held():
        c.write(1, start=140)
        before = _snapshot(c)
        with pytest.raises(DBAPIError), c.app.begin(c.org) as s:
            s.execute(text("SELECT set_config('flasktrack.sealing', 'on', true)"))
            s.execute(text("DELETE FROM audit_pending"))
        assert _snapshot(c) == before


def test_a_pending_entry_of_another_org_is_refused(make_chain):
    a: Chain = make_chain(1, checkpoint=False)
    b: Chain = make_chain(1, checkpoint=False)
    with pytest.raises(DBAPIError), a.app.begin(a.org) as s:
        audit.record(s, org_id=b.org, actor=ALICE, action="create", entity_type="sample", entity_id="x")
    assert a.verify().ok and b.verify().ok


def test_create_org_is_audited_in_the_new_chain(owner, platform, tmp_path):
    with owner.begin(None) as s:
        org = identity.create_org(s, slug=f"audit-{secrets.token_hex(4)}", name="Fresh")
    with platform.sessions.begin(org.id) as s:
        service.seal(s, org.id)
        first = s.execute(text("SELECT seq, action, entity_type FROM audit_log WHERE org_id = :o"),
                          {"o": org.id}).all()
    assert [tuple(r) for r in first] == [(1, "create", "organization")]
