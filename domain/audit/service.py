"""Audit log service: sealing, checkpoints, verification, queries, export, entity history."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.db import libpq_url
from domain.audit import merkle, tree
from domain.audit.chain import GENESIS, Problem, VerifyResult, verify_rows
from domain.audit.checkpoints import Checkpoint, CheckpointStore, SigningKey, sign
from domain.audit.parallel import ROW_COLUMNS, default_workers, verify_chain
from domain.audit.recorder import record
from domain.audit.rows import AUDIT_ROW_COLUMNS, AuditRow, SealedHead
from domain.errors import Conflict, Invalid, NotFound
from domain.roles import Actor, AuditScope, Caller, RequestContext, audit_scope
from domain.rows import from_row

# Identity and access entries; lab managers and scientists see the operational rest.
SECURITY_ENTITY_TYPES = ("organization", "user", "membership", "invitation", "api_key", "auth_session", "endpoint")
# Entries that record an attempt the platform refused or denied: history, never an entity's state.
REFUSAL_ACTIONS = ("refuse", "deny")

def seal(session: Session, org_id: uuid.UUID | str | None = None, limit: int = 5000, *, wait: bool = False) -> int:
    """Link pending entries into the chain now (one org, or all that the caller's role can reach).

    With `wait`, queue for the org's chain head instead of skipping it when another sealer holds it;
    either way, once this has sealed anything (or found nothing to seal), the head row stays locked
    until the caller's transaction ends, so the chain cannot move under a verification."""
    if org_id is None:
        return int(session.execute(text("SELECT audit_seal_all(:n)"), {"n": limit}).scalar_one())
    total = 0
    while True:
        n = int(session.execute(text("SELECT audit_seal(:o, :n, :w)"),
                                {"o": str(org_id), "n": limit, "w": wait}).scalar_one())
        total += n
        if n < limit:
            return total


def head(session: Session, org_id: uuid.UUID | str) -> tuple[int, bytes]:
    row = session.execute(
        text("SELECT seq, chain_hash FROM audit_log WHERE org_id = :o ORDER BY seq DESC LIMIT 1"),
        {"o": str(org_id)},
    ).first()
    return (int(row[0]), bytes(row[1])) if row else (0, GENESIS)


class ChainNotVerified(Conflict):
    """Refusing to sign a head that does not verify: a checkpoint must never vouch for tampering."""


def write_checkpoint(
    session: Session,
    org_id: uuid.UUID | str,
    key: SigningKey,
    store: CheckpointStore,
    *,
    requested_by: Actor | None = None,
    context: RequestContext | None = None,
) -> Checkpoint | None:
    """Seal what is pending and sign the org's head, store the file outside the database and its
    record inside. Nothing to sign for an empty chain; no new checkpoint when the head has not moved.
    A checkpoint someone asked for (`requested_by`) is itself an audit entry, sealed after the head it
    signs; the background sealer's periodic ones are not (each would move the head it just signed).

    Only what verifies is signed: the entries since the latest checkpoint file of this key must link
    from its signed head to the current one, which must be where the sealer left the chain
    (raises ChainNotVerified otherwise)."""
    org = str(org_id)
    seal(session, org, wait=True)  # and hold the head still while it is checked and signed
    size, head_hash = head(session, org)
    if size == 0:
        return None
    last = session.execute(text("SELECT max(size) FROM audit_checkpoints WHERE org_id = :o"), {"o": org}).scalar()
    if last is not None and int(last) >= size:
        return None
    _verify_since_last_checkpoint(session, org, size, head_hash, key, store)
    root = _extend_tree(session, org, size, key, store)
    cp = sign(key, org, size, head_hash, dt.datetime.now(dt.UTC), root)
    store.write(cp)
    session.execute(
        text(
            "INSERT INTO audit_checkpoints (org_id, size, head_hash, key_id, signature, issued_at, root_hash) "
            "VALUES (:o, :s, :h, :k, :sig, :t, :r)"
        ),
        {"o": cp.org_id, "s": cp.size, "h": cp.head_hash, "k": cp.key_id, "sig": cp.signature, "t": cp.issued_at,
         "r": cp.root_hash},
    )
    if requested_by is not None:
        record(session, org_id=org, actor=requested_by, action="checkpoint", entity_type="audit_checkpoint",
               entity_id=str(cp.size), after={"size": cp.size, "head_hash": cp.head_hash.hex(), "key_id": cp.key_id,
                                              "root_hash": root.hex(), "issued_at": cp.issued_at}, context=context)
    return cp


def _extend_tree(session: Session, org: str, size: int, key: SigningKey, store: CheckpointStore) -> bytes:
    """Grow the stored Merkle tree to `size` leaves and return its head. The stored subtrees must still give the
    root the latest tree-signing checkpoint signed (O(log n) reads), so a tampered tree is never signed over."""
    keys = {key.key_id: key.public}
    signed = [c for _, c in store.list(org) if c is not None and c.org_id == org and c.root_hash is not None
              and c.size <= size and c.check_signature(keys) is None]
    base = max(signed, key=lambda c: c.size, default=None)
    try:
        if base is not None and tree.root_at(session, org, base.size) != base.root_hash:
            raise ChainNotVerified(f"not signing the head of org {org}: the stored Merkle tree no longer gives the "
                                   f"root the checkpoint of size {base.size} signed")
        tree.extend(session, org, size)
        return tree.root_at(session, org, size)
    except tree.TreeGap as exc:
        raise ChainNotVerified(f"not signing the head of org {org}: Merkle tree: {exc}") from None


def _verify_since_last_checkpoint(
    session: Session, org: str, size: int, head_hash: bytes, key: SigningKey, store: CheckpointStore
) -> None:
    keys = {key.key_id: key.public}
    signed = [c for _, c in store.list(org)
              if c is not None and c.org_id == org and c.size <= size and c.check_signature(keys) is None]
    base = max(signed, key=lambda c: c.size, default=None)
    start_seq, start_prev = (base.size + 1, base.head_hash) if base else (1, GENESIS)
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor(binary=True) as cur:
        rows = cur.stream(f"SELECT {ROW_COLUMNS} FROM audit_log WHERE org_id = %s AND seq >= %s AND seq <= %s "
                          "ORDER BY seq", (org, base.size if base else 1, size), size=2000)
        try:
            if base:  # the entry the last checkpoint signed must still carry its signed hash
                first = next(rows, None)
                if first is None or first[0] != base.size or bytes(first[4]) != base.head_hash:
                    raise ChainNotVerified(f"not signing the head of org {org}: the chain no longer holds the "
                                           f"signed checkpoint of size {base.size}")
            res = verify_rows(org, rows, start_seq=start_seq, start_prev=start_prev)
        finally:
            rows.close()
    res.problems.extend(_head_problems(res, _sealed_head(session, org)))
    if res.head_seq != size or res.head_hash != head_hash:
        res.problems.append(Problem(size, "the head moved while it was being verified"))
    if not res.ok:
        raise ChainNotVerified(f"not signing the head of org {org}: {res.summary()}")


def checkpoint_now(session: Session, caller: Caller, key: SigningKey, store: CheckpointStore) -> Checkpoint | None:
    """The signed checkpoint of the current head: a new one (on record as the caller's), or the latest
    if the head has not moved."""
    org_id = caller.org_id
    cp = write_checkpoint(session, org_id, key, store, requested_by=caller.actor, context=caller.context)
    if cp is not None:
        return cp
    size, _ = head(session, org_id)
    if size == 0:
        return None
    matching = [c for _, c in store.list(str(org_id)) if c is not None and c.size == size]
    return matching[-1] if matching else None


def _checkpoint_anchors(
    session: Session,
    org_id: str,
    store: CheckpointStore,
    keys: dict[str, Ed25519PublicKey],
    problems: list[Problem],
    roots: dict[int, bytes] | None = None,
) -> dict[int, bytes]:
    """Check the checkpoint files and the database's record of them against each other;
    return size → head hash for every checkpoint that holds up (and fill `roots`: size → the Merkle tree
    head signed at that size, for those that sign one)."""
    anchors: dict[int, bytes] = {}
    files: dict[tuple[int, bytes, bytes], Checkpoint] = {}
    for path, cp in store.list(org_id):
        if cp is None:
            problems.append(Problem(None, f"checkpoint file {path.name} is unreadable"))
            continue
        if cp.org_id != org_id:
            problems.append(Problem(None, f"checkpoint file {path.name} is for org {cp.org_id}"))
            continue
        files[(cp.size, cp.head_hash, cp.signature)] = cp  # present in the store, whatever its worth
        bad = cp.check_signature(keys)
        if bad:
            problems.append(Problem(cp.size, bad))
            continue
        if cp.size in anchors and anchors[cp.size] != cp.head_hash:
            problems.append(Problem(cp.size, f"two signed checkpoints of size {cp.size} disagree"))
            continue
        anchors[cp.size] = cp.head_hash
        if roots is not None and cp.root_hash is not None:
            if roots.setdefault(cp.size, cp.root_hash) != cp.root_hash:
                problems.append(Problem(cp.size, f"two signed checkpoints of size {cp.size} disagree"))
    recorded = session.execute(
        text("SELECT size, head_hash, signature FROM audit_checkpoints WHERE org_id = :o ORDER BY size"),
        {"o": org_id},
    ).all()
    recorded_keys = {(int(r[0]), bytes(r[1]), bytes(r[2])) for r in recorded}
    for size, _h, _s in sorted(recorded_keys - set(files)):
        problems.append(
            Problem(size, f"checkpoint of size {size} recorded in the database is missing from the "
                          f"checkpoint store (store rolled back or replaced)")
        )
    for size, _h, _s in sorted(set(files) - recorded_keys):
        problems.append(
            Problem(size, f"signed checkpoint of size {size} is missing from the database's record "
                          f"(audit tables rolled back or rewritten)")
        )
    return anchors


def verify_org(
    session: Session,
    org_id: uuid.UUID | str,
    *,
    store: CheckpointStore,
    keys: dict[str, Ed25519PublicKey],
    chunk: int = 2000,
    workers: int | None = None,
    merkle_tree: bool = False,
    witness: Checkpoint | None = None,
) -> VerifyResult:
    """Verify one org's whole chain as stored, against its signed checkpoints and its sealed head.

    Seals what is pending first and keeps the org's head row locked for the rest of the
    transaction, so the chain verified is exactly the chain the head describes.

    `merkle_tree`: also rebuild the Merkle tree from the entries, compare it with the stored subtrees and with
    every signed tree head. `witness`: a signed checkpoint kept outside the database (implies `merkle_tree`):
    the chain must still hold its head, the tree its root, and the latest signed tree head must be consistent
    with it (an RFC 9162 consistency proof)."""
    org = str(org_id)
    problems: list[Problem] = []
    try:
        with session.begin_nested():
            seal(session, org, wait=True)
    except SQLAlchemyError as exc:
        # e.g. a row forged at the next seq: the sealer's INSERT collides with it
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        problems.append(Problem(None, f"pending entries cannot be sealed into the chain: {reason}"))
    roots: dict[int, bytes] = {}
    anchors = _checkpoint_anchors(session, org, store, keys, problems, roots)
    if witness is not None:
        bad = witness.check_signature(keys)
        if bad:
            problems.append(Problem(witness.size, f"witness: {bad}"))
            witness = None
        elif witness.org_id != org:
            problems.append(Problem(None, f"witness checkpoint is for org {witness.org_id}, not {org}"))
            witness = None
        elif anchors.setdefault(witness.size, witness.head_hash) != witness.head_hash:
            problems.append(Problem(witness.size, f"the witness checkpoint of size {witness.size} and a signed "
                                                  f"checkpoint of the same size disagree"))
    sealed_head = _sealed_head(session, org)
    raw = session.connection().connection.driver_connection
    assert raw is not None
    expected_size = sealed_head.seq if sealed_head else 0
    result = verify_chain(raw, org, anchors=anchors, expected_size=expected_size, url=_libpq_url(session),
                          workers=default_workers() if workers is None else workers, chunk=chunk)
    result.problems[:0] = problems
    if not result.stopped_early:
        result.problems.extend(_head_problems(result, sealed_head))
    if (merkle_tree or witness is not None) and not result.stopped_early:
        result.problems.extend(_tree_problems(session, org, result.head_seq, roots, witness))
    return result


def _tree_problems(session: Session, org: str, size: int, roots: dict[int, bytes],
                   witness: Checkpoint | None) -> list[Problem]:
    """The Merkle tree rebuilt from the entries against the signed tree heads, the stored subtrees and the witness."""
    out: list[Problem] = []
    sizes = set(roots) | ({witness.size} if witness is not None else set())
    try:
        rebuilt = tree.rebuild(session, org, size, sizes)
    except tree.TreeGap as exc:
        return [Problem(None, f"the Merkle tree cannot be rebuilt from the chain: {exc}")]
    for n, r in sorted(roots.items()):
        if n in rebuilt.roots and rebuilt.roots[n] != r:
            out.append(Problem(n, f"the Merkle tree head signed at size {n} differs from the tree over the entries"))
    if rebuilt.bad_nodes:
        out.append(Problem(None, f"{len(rebuilt.bad_nodes)} stored Merkle subtree(s) differ from the entries "
                                 f"(first: level {rebuilt.bad_nodes[0][0]}, index {rebuilt.bad_nodes[0][1]})"))
    if witness is None or witness.root_hash is None:
        return out
    m = witness.size
    if m > size:
        out.append(Problem(size + 1, f"the witness checkpoint covers {m} entries, the chain ends at seq {size}"))
        return out
    if rebuilt.roots.get(m) != witness.root_hash:
        out.append(Problem(m, f"the entries 1..{m} no longer give the Merkle root the witness checkpoint signed: "
                              f"history was rewritten"))
    # What a remote witness checks: the latest signed tree head extends the witness's, by a consistency proof.
    later = max((n for n in roots if m <= n <= size), default=None)
    if later is not None:
        try:
            proof = tree.consistency_proof(session, org, m, later)
        except tree.TreeGap as exc:
            out.append(Problem(later, f"no consistency proof from the witness to size {later}: {exc}"))
            return out
        if not merkle.verify_consistency(m, later, witness.root_hash, roots[later], proof):
            out.append(Problem(m, f"the signed tree head of size {later} is not consistent with the witness "
                                  f"checkpoint of size {m} (RFC 9162 consistency proof fails): history was "
                                  f"rewritten and signed over"))
    return out


def _libpq_url(session: Session) -> str | None:
    """Where helper processes connect: the session's own database and role."""
    bind = session.get_bind()
    url = getattr(bind, "url", None)
    if url is None or not str(url.drivername).startswith("postgresql"):
        return None
    return libpq_url(url)


def _sealed_head(session: Session, org: str) -> SealedHead | None:
    row = session.execute(text("SELECT seq, chain_hash FROM audit_heads WHERE org_id = :o"), {"o": org}).first()
    return from_row(SealedHead, row) if row else None


def _head_problems(result: VerifyResult, sealed_head: SealedHead | None) -> list[Problem]:
    """The chain must end exactly where the sealer left it (audit_heads)."""
    end = result.head_seq
    if sealed_head is None:
        return [Problem(1, "entries exist but no sealed head records them (inserted outside the sealer)")
                ] if end else []
    seq, head_hash = int(sealed_head.seq), bytes(sealed_head.chain_hash)
    if seq < end:
        return [Problem(seq + 1, f"entries {seq + 1}..{end} lie past the sealed head (seq {seq}): "
                                 f"appended outside the sealer")]
    if seq > end:
        return [Problem(end + 1, f"the sealed head is at seq {seq} but the chain ends at seq {end}: "
                                 f"entries removed")]
    if head_hash != result.head_hash:
        return [Problem(seq, "the last entry's chain hash differs from the sealed head's (rewritten after sealing)")]
    return []


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class AuditFilter:
    entity_type: str | None = None
    entity_id: str | None = None
    actor_id: str | None = None  # an actor id, or a member's email (resolved by resolve_filter)
    actor_name: str | None = None  # text contained in the actor's name as recorded (a person, an API key)
    action: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    reason_contains: str | None = None
    severity: str | None = None


def resolve_filter(session: Session, f: AuditFilter) -> AuditFilter:
    """An actor given by email becomes the id of the member of the caller's org with that email; an email no
    member has is refused (422) rather than answered with an empty page that reads as "did nothing"."""
    if f.actor_id is None or "@" not in f.actor_id:
        return f
    # users are visible through memberships of the transaction's org only (RLS), past members included
    row = session.execute(text("SELECT id FROM users WHERE lower(email) = lower(:e)"), {"e": f.actor_id}).first()
    if row is None:
        raise Invalid("no member of this organization has that email",
                      reasons=["actor: no member of this organization has that email"])
    return replace(f, actor_id=str(row.id))


def _scope_sql(caller: Caller) -> tuple[str, dict[str, object]]:
    """What part of the log each role may read."""
    scope = audit_scope(caller.role)  # the same rule decides what the lake (Flight SQL) shows
    if scope is AuditScope.whole:
        return "", {}
    if scope is AuditScope.work:
        return " AND entity_type <> ALL(:security_types)", {"security_types": list(SECURITY_ENTITY_TYPES)}
    if scope is AuditScope.own:
        return " AND actor_id = :self_id", {"self_id": caller.actor.id}
    return " AND false", {}


def _where(caller: Caller, f: AuditFilter) -> tuple[str, dict[str, object]]:
    sql = "org_id = :org"
    params: dict[str, object] = {"org": str(caller.org_id)}
    for col, val in (
        ("entity_type", f.entity_type), ("entity_id", f.entity_id), ("actor_id", f.actor_id),
        ("action", f.action), ("severity", f.severity),
    ):
        if val is not None:
            sql += f" AND {col} = :{col}"
            params[col] = val
    if f.since is not None:
        sql += " AND occurred_at >= :since"
        params["since"] = f.since
    if f.until is not None:
        sql += " AND occurred_at < :until"
        params["until"] = f.until
    if f.reason_contains:
        sql += " AND reason ILIKE :reason ESCAPE '\\'"
        params["reason"] = _contains(f.reason_contains)
    if f.actor_name:
        sql += " AND actor_display ILIKE :actor_name ESCAPE '\\'"
        params["actor_name"] = _contains(f.actor_name)
    scope, sp = _scope_sql(caller)
    return sql + scope, {**params, **sp}


def _contains(value: str) -> str:
    """An ILIKE pattern matching `value` anywhere, its wildcards taken literally."""
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def entry_view(row: AuditRow) -> dict[str, Any]:
    body = orjson.loads(bytes(row.body))
    return {
        "seq": row.seq,
        "occurred_at": body["occurred_at"],
        "actor": body["actor"],
        "action": body["action"],
        "entity_type": body["entity"]["type"],
        "entity_id": body["entity"]["id"],
        "before": body["before"],
        "after": body["after"],
        "reason": body["reason"],
        "severity": body["severity"],
        "context": body["context"],
        "chain_hash": bytes(row.chain_hash).hex(),
    }


CURSOR_PATTERN = r"^[1-9][0-9]{0,17}$"  # the seq to continue below: what the schema says is what is accepted


def encode_cursor(seq: int) -> str:
    return str(seq)


def decode_cursor(cursor: str) -> int:
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise Invalid("cursor is not valid", reasons=["cursor: not a cursor returned by this API"])
    return int(cursor)


def query(
    session: Session, caller: Caller, f: AuditFilter, *, limit: int = 100, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, `limit` per page; the cursor continues below the last seq returned."""
    seal(session, caller.org_id, wait=True)  # read what was written: queue behind a sealer holding the org
    where, params = _where(caller, resolve_filter(session, f))
    if cursor:
        where += " AND seq < :before_seq"
        params["before_seq"] = decode_cursor(cursor)
    rows = [from_row(AuditRow, r) for r in session.execute(
        text(f"SELECT {AUDIT_ROW_COLUMNS} FROM audit_log WHERE {where} ORDER BY seq DESC LIMIT :lim"),
        {**params, "lim": limit + 1},
    ).all()]
    more = len(rows) > limit
    rows = rows[:limit]
    return [entry_view(r) for r in rows], (encode_cursor(rows[-1].seq) if more and rows else None)


def export_lines(
    session: Session, caller: Caller, f: AuditFilter, fmt: str, *, to_seq: int | None = None
) -> Iterator[bytes]:
    """Stream the chain as JSONL (verifiable offline: bodies verbatim with their hashes) or CSV,
    oldest first, a chunk of rows at a time; up to `to_seq` when given."""
    seal(session, caller.org_id, wait=True)  # read what was written: queue behind a sealer holding the org
    where, params = _where(caller, resolve_filter(session, f))
    if to_seq is not None:
        where += " AND seq <= :to_seq"
        params["to_seq"] = to_seq
    raw = session.connection().connection.driver_connection
    assert raw is not None
    sql, pos = _to_pyformat(f"SELECT {ROW_COLUMNS} FROM audit_log WHERE {where} ORDER BY seq", params)
    csv_header = False
    with raw.cursor(name=f"export_{uuid.uuid4().hex}") as cur:
        cur.itersize = 5000
        cur.execute(sql, pos)
        for row in cur:
            if fmt == "jsonl":
                yield orjson.dumps(
                    {
                        "org_id": row[5],
                        "seq": row[0],
                        "body": bytes(row[1]).decode("utf-8"),
                        "body_hash": bytes(row[2]).hex(),
                        "prev_hash": bytes(row[3]).hex(),
                        "chain_hash": bytes(row[4]).hex(),
                    }
                ) + b"\n"
            else:
                buf = io.StringIO()
                w = csv.writer(buf)
                if not csv_header:
                    w.writerow(["seq", "occurred_at", "actor_type", "actor_id", "actor_display", "action",
                                "entity_type", "entity_id", "severity", "reason", "request_id", "before",
                                "after", "chain_hash"])
                    csv_header = True
                body = orjson.loads(bytes(row[1]))
                w.writerow([row[0], row[6], row[7], row[8], row[9], row[10], row[11], row[12], row[13],
                            row[14] or "", row[15] or "", orjson.dumps(body["before"]).decode(),
                            orjson.dumps(body["after"]).decode(), bytes(row[4]).hex()])
                yield buf.getvalue().encode()


def _to_pyformat(sql: str, params: dict[str, object]) -> tuple[str, dict[str, object]]:
    """`:name` → `%(name)s` for the raw psycopg server-side cursor."""
    import re

    return re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", sql.replace("%", "%%")), params


def entity_state(
    session: Session, caller: Caller, entity_type: str, entity_id: str, at: dt.datetime
) -> dict[str, Any]:
    """The entity as the audit log says it was at `at`: every entry about it up to then, oldest first, folded
    (each after-state's fields over the earlier ones; a delete ends it). Refusals are history, not state.
    An entity the caller's org has no entry about (unknown, or another org's) is not found."""
    seal(session, caller.org_id, wait=True)  # read what was written: queue behind a sealer holding the org
    where, params = _where(caller, AuditFilter(entity_type=entity_type, entity_id=entity_id))
    where += " AND action <> ALL(:refusals)"
    params["refusals"] = list(REFUSAL_ACTIONS)
    known = session.execute(text(f"SELECT 1 FROM audit_log WHERE {where} LIMIT 1"), params).first()
    if known is None:
        raise NotFound(f"no {entity_type} with this id in this organization's audit log")
    rows = session.execute(
        text(f"SELECT {AUDIT_ROW_COLUMNS} FROM audit_log WHERE {where} AND occurred_at <= :at ORDER BY seq"),
        {**params, "at": at},
    ).all()
    state: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    for row in rows:
        last = entry_view(from_row(AuditRow, row))
        if last["action"] == "delete":
            state = None
        elif isinstance(last["after"], dict):
            state = {**(state or {}), **last["after"]}
        elif state is None:
            state = {}  # an entry without an after-state still says the entity existed
    return {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "at": at,
        "exists": state is not None,
        "state": state,
        "as_of_seq": last["seq"] if last else None,
        "last_action": last["action"] if last else None,
        "entries": len(rows),
    }
