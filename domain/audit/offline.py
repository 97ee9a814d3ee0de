"""Verifying a JSONL export with its signed checkpoint, without any database."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.audit import merkle
from domain.audit.chain import GENESIS, Problem, VerifyResult, verify_rows
from domain.audit.checkpoints import Checkpoint

_UNKNOWN_ORG = "00000000-0000-0000-0000-000000000000"


def _parse(line: bytes) -> tuple[Any, ...] | None:
    try:
        d = orjson.loads(line)
        return (
            int(d["seq"]), d["body"].encode("utf-8"), bytes.fromhex(d["body_hash"]),
            bytes.fromhex(d["prev_hash"]), bytes.fromhex(d["chain_hash"]), str(d["org_id"]),
        )
    except (orjson.JSONDecodeError, KeyError, ValueError, AttributeError, TypeError, UnicodeEncodeError):
        return None


def _numbered(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    for n, line in enumerate(lines, start=1):
        if line.strip():
            yield n, line


def verify_export(
    lines: Iterable[bytes],
    checkpoint: Checkpoint | None,
    keys: dict[str, Ed25519PublicKey],
    *,
    from_seq: int = 1,
) -> VerifyResult:
    """Verify an export (JSONL lines as `export_lines` writes them) against its signed checkpoint.

    The export must run from `from_seq` (1: the whole chain from genesis; later: a slice, whose first
    link is then taken on trust) to the checkpoint's size."""
    problems: list[Problem] = []
    numbered = _numbered(lines)
    first_line = next(numbered, None)
    if first_line is None:
        return VerifyResult(org_id=_UNKNOWN_ORG, problems=[Problem(None, "export is empty")])
    first = _parse(first_line[1])
    if first is None:
        org = checkpoint.org_id if checkpoint is not None else _UNKNOWN_ORG
        return VerifyResult(org_id=org, problems=[Problem(from_seq, f"line {first_line[0]} is not an export entry")])
    org_id = first[5]
    try:
        org_id = str(uuid.UUID(org_id))
    except ValueError:
        return VerifyResult(org_id=_UNKNOWN_ORG, problems=[Problem(first[0], f"line {first_line[0]} names no org")])
    start_seq, start_prev = from_seq, GENESIS
    if first[0] != from_seq:
        problems.append(Problem(from_seq, f"export starts at seq {first[0]}, not {from_seq}: "
                                          f"entries missing at its start"))
        start_seq = first[0]
    if start_seq != 1:
        # the slice's own first link is taken as given (its predecessor is not in the file)
        start_prev = first[3]
    anchors: dict[int, bytes] = {}
    if checkpoint is not None:
        bad = checkpoint.check_signature(keys)
        if bad:
            problems.append(Problem(checkpoint.size, bad))
        elif checkpoint.org_id != org_id:
            problems.append(Problem(None, f"checkpoint is for org {checkpoint.org_id}, the export for {org_id}"))
        else:
            anchors[checkpoint.size] = checkpoint.head_hash

    last_seq = [start_seq - 1]
    # A whole export (from seq 1) under a checkpoint that signs a tree head: the tree over its entries too.
    tree_size = checkpoint.size if (checkpoint is not None and checkpoint.root_hash is not None and start_seq == 1
                                    and anchors) else 0
    org_u = uuid.UUID(org_id)
    leaves: list[bytes] = []

    def rows() -> Iterator[tuple[Any, ...]]:
        yield first
        last_seq[0] = first[0]
        if first[0] <= tree_size:
            leaves.append(merkle.leaf_hash(merkle.leaf_input(first[0], org_u, first[2])))
        for n, line in numbered:
            row = _parse(line)
            if row is None:
                problems.append(Problem(last_seq[0] + 1, f"line {n} is not an export entry"))
                return
            last_seq[0] = row[0]
            if row[0] <= tree_size:
                leaves.append(merkle.leaf_hash(merkle.leaf_input(row[0], org_u, row[2])))
            yield row

    res = verify_rows(org_id, rows(), anchors=anchors, start_seq=start_seq, start_prev=start_prev,
                      with_derived=False)
    signed_root = checkpoint.root_hash if checkpoint is not None else None
    if tree_size and len(leaves) == tree_size and res.ok and merkle.root(leaves) != signed_root:
        problems.append(Problem(tree_size, "the entries do not give the Merkle root the checkpoint signed"))
    if checkpoint is not None and not problems and not res.problems and checkpoint.size < res.head_seq:
        problems.append(Problem(checkpoint.size + 1,
                                f"the checkpoint covers only {checkpoint.size} entries but the export runs to seq "
                                f"{res.head_seq}: an older checkpoint, or entries appended after signing"))
    res.problems[:0] = problems
    return res
