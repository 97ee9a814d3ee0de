"""The Merkle tree (domain/audit/merkle.py) against RFC 9162's recursive definitions, written out naively here;
every proof verifies for random sizes, and a flipped byte anywhere fails it."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.audit import merkle


def mth(d: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, literally (d: leaf inputs)."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1."""
    n = len(d)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    return path(m, d[:k]) + [mth(d[k:])] if m < k else path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1."""
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def data(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def flip(b: bytes, at: int) -> bytes:
    at %= len(b)
    return b[:at] + bytes([b[at] ^ 0x01]) + b[at + 1:]


def test_rfc_definitions_for_every_size_up_to_70():
    for n in range(1, 71):
        d = data(n)
        t = merkle.MemoryTree(merkle.leaf_hash(x) for x in d)
        assert t.root() == mth(d) == merkle.root([merkle.leaf_hash(x) for x in d])
        for m in range(n):
            assert t.inclusion(m) == path(m, d)
        for m in range(1, n + 1):
            assert t.consistency(m) == subproof(m, d, True)
            assert t.root(m) == mth(d[:m])


def test_empty_tree_and_single_leaf():
    assert merkle.root([]) == hashlib.sha256(b"").digest()
    leaf = merkle.leaf_hash(b"x")
    assert merkle.root([leaf]) == leaf
    assert merkle.verify_inclusion(leaf, 0, 1, [], leaf)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 3000), st.data())
def test_every_inclusion_proof_verifies_and_any_flipped_byte_fails(n, draw):
    leaves = [merkle.leaf_hash(x) for x in data(n)]
    t = merkle.MemoryTree(leaves)
    r = t.root()
    m = draw.draw(st.integers(0, n - 1))
    proof = t.inclusion(m)
    assert len(proof) <= n.bit_length()
    assert merkle.verify_inclusion(leaves[m], m, n, proof, r)
    at = draw.draw(st.integers(0, 10**6))
    assert not merkle.verify_inclusion(flip(leaves[m], at), m, n, proof, r)
    assert not merkle.verify_inclusion(leaves[m], m, n, proof, flip(r, at))
    if proof:
        i = draw.draw(st.integers(0, len(proof) - 1))
        assert not merkle.verify_inclusion(leaves[m], m, n, [*proof[:i], flip(proof[i], at), *proof[i + 1:]], r)
        assert not merkle.verify_inclusion(leaves[m], m, n, proof[:-1], r)  # a hash dropped
        assert not merkle.verify_inclusion(leaves[m], m, n, [*proof, proof[0]], r)  # one too many
    if n > 1:  # the same proof for another position or another size
        other = draw.draw(st.integers(0, n - 1).filter(lambda x: x != m))
        assert not merkle.verify_inclusion(leaves[m], other, n, proof, r)


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 3000), st.data())
def test_every_consistency_proof_verifies_and_any_flipped_byte_fails(n, draw):
    leaves = [merkle.leaf_hash(x) for x in data(n)]
    t = merkle.MemoryTree(leaves)
    m = draw.draw(st.integers(1, n - 1))
    first, second = t.root(m), t.root()
    proof = t.consistency(m)
    assert merkle.verify_consistency(m, n, first, second, proof)
    at = draw.draw(st.integers(0, 10**6))
    assert not merkle.verify_consistency(m, n, flip(first, at), second, proof)
    assert not merkle.verify_consistency(m, n, first, flip(second, at), proof)
    i = draw.draw(st.integers(0, len(proof) - 1))
    assert not merkle.verify_consistency(m, n, first, second, [*proof[:i], flip(proof[i], at), *proof[i + 1:]])
    # a history rewritten below m: the old head is no prefix of the new tree
    j = draw.draw(st.integers(0, m - 1))
    forged = merkle.MemoryTree([*leaves[:j], merkle.leaf_hash(b"forged"), *leaves[j + 1:]])
    assert not merkle.verify_consistency(m, n, first, forged.root(), forged.consistency(m))


def test_frontier_extends_incrementally():
    leaves = [merkle.leaf_hash(x) for x in data(300)]
    frontier: merkle.Frontier = []
    size = 0
    for step in (1, 2, 5, 64, 100, 128):
        frontier, _ = merkle.frontier_extend(frontier, size, leaves[size:size + step])
        size += step
        assert merkle.frontier_root(frontier) == mth(data(300)[:size])
