"""A Merkle tree over an organization's audit entries, as RFC 9162 (Certificate Transparency v2) builds one.

Pure functions: no database, no clock. Leaf i (0-based) is the entry with seq i + 1.

    leaf input   = int8_be(seq) || org_uuid (16 bytes) || SHA-256(body)      (56 bytes)
    leaf hash    = SHA-256(0x00 || leaf input)
    node hash    = SHA-256(0x01 || left || right)
    MTH(D[n])    = RFC 9162 §2.1.1: split at the largest power of two below n

Proofs are lists of subtree hashes; which subtrees a proof needs is computed first (as leaf ranges
`[lo, hi)`), so that a store can fetch them all at once (`inclusion_ranges`, `consistency_ranges`), then
every range is the fold of at most log2 n *perfect* aligned subtrees (`perfect_pieces`), which is what the
database keeps (domain/audit/tree.py). The verifiers are RFC 9162 §2.1.3.2 and §2.1.4.2, step by step.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH of the empty tree

Range = tuple[int, int]  # leaves [lo, hi)
Piece = tuple[int, int]  # (level, index): the perfect subtree over leaves [index * 2**level, (index + 1) * 2**level)


def leaf_input(seq: int, org: uuid.UUID, body_hash: bytes) -> bytes:
    return seq.to_bytes(8, "big", signed=True) + org.bytes + body_hash


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def entry_leaf(seq: int, org: uuid.UUID, body: bytes) -> bytes:
    """The leaf hash of an entry, recomputed from its body bytes."""
    return leaf_hash(leaf_input(seq, org, hashlib.sha256(body).digest()))


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


# ---------------------------------------------------------------- tree heads


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (RFC 9162 §2.1.1), iteratively: O(n) hashes, O(log n) memory."""
    return frontier_root(frontier_extend([], 0, leaves)[0])


Frontier = list[tuple[int, bytes]]  # the perfect pieces of [0, n): (level, hash), highest level first


def frontier_extend(frontier: Frontier, size: int, leaves: Iterable[bytes], *,
                    keep_from: int = 0) -> tuple[Frontier, list[tuple[int, int, bytes]]]:
    """Append leaf hashes to a tree of `size` leaves given by its frontier (the compact range of [0, size)).
    Returns the new frontier and every perfect subtree of level `keep_from` or more completed on the way, as
    (level, index, hash)."""
    stack = list(frontier)
    done: list[tuple[int, int, bytes]] = []
    n = size
    for leaf in leaves:
        level, h = 0, leaf
        if keep_from == 0:
            done.append((0, n, h))
        idx = n
        while stack and stack[-1][0] == level:
            _, left = stack.pop()
            h = node_hash(left, h)
            level += 1
            idx >>= 1
            if level >= keep_from:
                done.append((level, idx, h))
        stack.append((level, h))
        n += 1
    return stack, done


def frontier_root(frontier: Frontier) -> bytes:
    """MTH of the tree the frontier describes: its pieces folded from the right."""
    if not frontier:
        return EMPTY_ROOT
    h = frontier[-1][1]
    for _, left in reversed(frontier[:-1]):
        h = node_hash(left, h)
    return h


def perfect_pieces(lo: int, hi: int) -> list[Piece]:
    """The perfect aligned subtrees that make up the range [lo, hi) as RFC 9162's recursion splits it, largest
    first: MTH(D[lo:hi]) = fold_right(node_hash, their hashes). Valid for every range the RFC recursion produces
    (lo aligned to the largest power of two not above hi - lo), which is every range in this module."""
    out: list[Piece] = []
    while lo < hi:
        n = hi - lo
        size = n if n & (n - 1) == 0 else _split(n)
        level = size.bit_length() - 1
        if lo % size:
            raise ValueError(f"range [{lo}, {hi}) is not aligned as RFC 9162 splits trees")
        out.append((level, lo >> level))
        lo += size
    return out


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the hashes of its perfect pieces (as `perfect_pieces` orders them)."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


# ---------------------------------------------------------------- which subtrees a proof needs


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose MTHs make PATH(index, D[size]) (RFC 9162 §2.1.3.1), in proof order."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    out: list[Range] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m = lo + k, m - k
    out.reverse()  # the recursion appends on the way back up: deepest sibling first
    return out


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The leaf ranges whose MTHs make PROOF(first, D[second]) (RFC 9162 §2.1.4.1), in proof order."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    out: list[Range] = []
    lo, hi, m, whole = 0, second, first, True
    while True:
        n = hi - lo
        if m == n:
            if not whole:
                out.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    out.reverse()
    return out


def proof_pieces(ranges: Iterable[Range]) -> set[Piece]:
    return {p for r in ranges for p in perfect_pieces(*r)}


def assemble(ranges: Sequence[Range], piece: Callable[[int, int], bytes]) -> list[bytes]:
    """The proof's hashes from the perfect pieces (looked up by `piece(level, index)`)."""
    return [fold([piece(lv, ix) for lv, ix in perfect_pieces(*r)]) for r in ranges]


# ---------------------------------------------------------------- in memory (tests, small trees)


class MemoryTree:
    """Every perfect subtree of a list of leaf hashes: proofs by lookup."""

    def __init__(self, leaves: Iterable[bytes]) -> None:
        frontier, done = frontier_extend([], 0, leaves)
        self.size = sum(1 for lv, _, _ in done if lv == 0)
        self.nodes = {(lv, ix): h for lv, ix, h in done}
        self.frontier = frontier

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        return fold([self.nodes[p] for p in perfect_pieces(0, size)]) if size else EMPTY_ROOT

    def inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        return assemble(inclusion_ranges(index, self.size if size is None else size), lambda lv, ix: self.nodes[lv, ix])

    def consistency(self, first: int, second: int | None = None) -> list[bytes]:
        return assemble(consistency_ranges(first, self.size if second is None else second),
                        lambda lv, ix: self.nodes[lv, ix])


# ---------------------------------------------------------------- verifiers (RFC 9162)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2 (plus its trivial cases: an empty first tree, equal sizes)."""
    if first < 0 or second < first:
        return False
    if first == 0:
        return not proof and (first_root == EMPTY_ROOT)
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
