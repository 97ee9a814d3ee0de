"""The Merkle tree of an organization's audit log, kept in the database (`audit_merkle`).

Stored: the hash of every complete aligned subtree of 2**STORED_LEVEL leaves or more (about n / 8 rows for n
entries). Below that level a subtree is recomputed from at most 2**STORED_LEVEL leaves, each from its
`audit_log` row (seq, org, body_hash). So:

- `extend` (at each checkpoint) hashes only the entries since the last stored block: the tree grows
  incrementally, never a pass over the whole chain per checkpoint;
- a tree head or a proof reads O(log n) stored subtrees plus at most 2 blocks of leaves;
- `rebuild` recomputes everything from the entries (whole-log verification) and compares.

A stored hash that was tampered with can only make a proof fail against a signed root, never make a forged
entry verify: proofs are always checked against a root a checkpoint signed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, SMALLINT
from sqlalchemy.orm import Session

from domain.audit import merkle
from domain.audit.merkle import Piece

STORED_LEVEL = 4
BLOCK = 1 << STORED_LEVEL


def _raw(session: Session):  # type: ignore[no-untyped-def]
    raw = session.connection().connection.driver_connection
    assert raw is not None
    return raw


def stored_size(session: Session, org: str) -> int:
    """How many leaves the stored blocks cover (a multiple of BLOCK)."""
    n = session.execute(text("SELECT max(idx) FROM audit_merkle WHERE org_id = :o AND level = :lv"),
                        {"o": org, "lv": STORED_LEVEL}).scalar()
    return 0 if n is None else (int(n) + 1) * BLOCK


def _leaves(session: Session, org: str, lo: int, hi: int) -> Iterator[bytes]:
    """Leaf hashes of leaves [lo, hi) (seq lo + 1 .. hi), in order, streamed."""
    org_u = uuid.UUID(org)
    with _raw(session).cursor(binary=True) as cur:
        rows = cur.stream("SELECT seq, body_hash FROM audit_log WHERE org_id = %s AND seq > %s AND seq <= %s "
                          "ORDER BY seq", (org, lo, hi), size=5000)
        expected = lo + 1
        for seq, body_hash in rows:
            if seq != expected:
                raise TreeGap(f"entry {expected} is missing from the chain")
            yield merkle.leaf_hash(merkle.leaf_input(seq, org_u, bytes(body_hash)))
            expected += 1
        if expected != hi + 1:
            raise TreeGap(f"the chain ends at seq {expected - 1}, before {hi}")


class TreeGap(Exception):
    """The chain lacks entries the tree needs (truncated or renumbered)."""


def _stored(session: Session, org: str, pieces: Iterable[Piece]) -> dict[Piece, bytes]:
    ps = sorted(set(pieces))
    if not ps:
        return {}
    rows = session.execute(
        text("SELECT level, idx, hash FROM audit_merkle m JOIN unnest(:lv, :ix) AS p(lv, ix) "
             "ON m.level = p.lv AND m.idx = p.ix WHERE m.org_id = :o").bindparams(
            bindparam("lv", type_=ARRAY(SMALLINT)), bindparam("ix", type_=ARRAY(BIGINT))),
        {"o": org, "lv": [p[0] for p in ps], "ix": [p[1] for p in ps]},
    ).all()
    return {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}


def extend(session: Session, org: str, size: int) -> int:
    """Store every complete block (and the subtrees above it) of the first `size` leaves not stored yet.
    Returns how many subtree hashes were stored. The caller holds the org's chain head (write_checkpoint)."""
    have = stored_size(session, org)
    want = size // BLOCK * BLOCK
    if want <= have:
        return 0
    frontier_pieces = merkle.perfect_pieces(0, have)
    got = _stored(session, org, frontier_pieces)
    missing = [p for p in frontier_pieces if p not in got]
    if missing:
        raise TreeGap(f"stored subtree(s) {missing[:3]} missing below {have} leaves")
    frontier: merkle.Frontier = [(lv, got[lv, ix]) for lv, ix in frontier_pieces]
    _, new = merkle.frontier_extend(frontier, have, _leaves(session, org, have, want), keep_from=STORED_LEVEL)
    raw = _raw(session)
    with raw.cursor() as cur:
        for i in range(0, len(new), 5000):
            part = new[i:i + 5000]
            cur.execute(
                "INSERT INTO audit_merkle (org_id, level, idx, hash) "
                "SELECT %s, lv, ix, h FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[]) AS t(lv, ix, h) "
                "ON CONFLICT DO NOTHING",
                (org, [x[0] for x in part], [x[1] for x in part], [x[2] for x in part]))
    return len(new)


@dataclass
class Pieces:
    """The perfect subtrees some proofs need, fetched in a few queries."""

    hashes: dict[Piece, bytes] = field(default_factory=dict)

    def __call__(self, level: int, index: int) -> bytes:
        return self.hashes[level, index]


def fetch_pieces(session: Session, org: str, pieces: set[Piece]) -> Pieces:
    """Stored subtrees by one query; lower ones from their blocks' leaves (one query for all blocks)."""
    high = [p for p in pieces if p[0] >= STORED_LEVEL]
    low = [p for p in pieces if p[0] < STORED_LEVEL]
    out = Pieces(_stored(session, org, high))
    missing = [p for p in high if p not in out.hashes]
    if missing:
        raise TreeGap(f"stored subtree(s) {sorted(missing)[:3]} missing (the tree was not extended that far)")
    if low:
        seqs = sorted({i + 1 for lv, ix in low for i in range(ix << lv, (ix + 1) << lv)})
        org_u = uuid.UUID(org)
        rows = session.execute(
            text("SELECT seq, body_hash FROM audit_log WHERE org_id = :o AND seq = ANY(:s)").bindparams(
                bindparam("s", type_=ARRAY(BIGINT))), {"o": org, "s": seqs}).all()
        leaves = {int(r[0]) - 1: merkle.leaf_hash(merkle.leaf_input(int(r[0]), org_u, bytes(r[1]))) for r in rows}
        if len(leaves) != len(seqs):
            raise TreeGap("entries the proof needs are missing from the chain")
        for lv, ix in low:
            lo = ix << lv
            out.hashes[lv, ix] = merkle.root([leaves[i] for i in range(lo, lo + (1 << lv))])
    return out


def root_at(session: Session, org: str, size: int) -> bytes:
    if size == 0:
        return merkle.EMPTY_ROOT
    ranges = [(0, size)]
    return merkle.assemble(ranges, fetch_pieces(session, org, merkle.proof_pieces(ranges)))[0]


def inclusion_proofs(session: Session, org: str, indexes: Iterable[int], size: int) -> dict[int, list[bytes]]:
    """Inclusion proofs of many leaves in the tree of `size`, with their pieces fetched together."""
    plans = {i: merkle.inclusion_ranges(i, size) for i in indexes}
    got = fetch_pieces(session, org, merkle.proof_pieces(r for rs in plans.values() for r in rs))
    return {i: merkle.assemble(rs, got) for i, rs in plans.items()}


def consistency_proof(session: Session, org: str, first: int, second: int) -> list[bytes]:
    if first == 0 or first == second:
        return []
    ranges = merkle.consistency_ranges(first, second)
    return merkle.assemble(ranges, fetch_pieces(session, org, merkle.proof_pieces(ranges)))


@dataclass
class Rebuilt:
    size: int
    roots: dict[int, bytes]  # tree size -> root, for each size asked about that the chain reaches
    bad_nodes: list[Piece]  # stored subtrees that differ from the recomputed ones (or are missing)


def rebuild(session: Session, org: str, size: int, at_sizes: Iterable[int]) -> Rebuilt:
    """Recompute the tree over leaves [0, size) from the chain's entries (body_hash, which the chain verifier
    checks against the bodies): the roots at `at_sizes`, and every stored subtree compared with its recomputed
    hash. O(n): the whole-log verification's share."""
    wanted = sorted({s for s in at_sizes if 0 < s <= size})
    stored = {(int(r[0]), int(r[1])): bytes(r[2]) for r in session.execute(
        text("SELECT level, idx, hash FROM audit_merkle WHERE org_id = :o"), {"o": org}).all()}
    frontier: merkle.Frontier = []
    roots: dict[int, bytes] = {}
    bad: list[Piece] = []
    n = 0
    leaves = _leaves(session, org, 0, size)
    for target in [*wanted, size]:
        chunk = (next(leaves) for _ in range(target - n))
        frontier, done = merkle.frontier_extend(frontier, n, chunk, keep_from=STORED_LEVEL)
        for lv, ix, h in done:
            if stored.pop((lv, ix), h) != h:
                bad.append((lv, ix))
        n = target
        roots[target] = merkle.frontier_root(frontier)
    for _ in leaves:  # none left: this checks the chain ends at `size`
        pass
    bad.extend(p for p in stored if (p[1] + 1) << p[0] <= size)  # stored, but the chain has no such subtree
    return Rebuilt(size=size, roots=roots, bad_nodes=sorted(bad))
