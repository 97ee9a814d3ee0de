"""Verifying a JSONL export with its signed checkpoint, without any database."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.audit.chain import GENESIS, Problem, VerifyResult, verify_rows
from domain.audit.checkpoints import Checkpoint


def _rows(lines: Iterable[bytes], org: list[str], problems: list[Problem]) -> Iterator[tuple[Any, ...]]:
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            d = orjson.loads(line)
            row = (
                int(d["seq"]), d["body"].encode("utf-8"), bytes.fromhex(d["body_hash"]),
                bytes.fromhex(d["prev_hash"]), bytes.fromhex(d["chain_hash"]), d["org_id"],
            )
        except (orjson.JSONDecodeError, KeyError, ValueError, AttributeError, TypeError):
            problems.append(Problem(None, f"line {n} is not an export entry"))
            return
        if not org:
            org.append(row[5])
        yield row


def verify_export(
    lines: Iterable[bytes], checkpoint: Checkpoint | None, keys: dict[str, Ed25519PublicKey]
) -> VerifyResult:
    problems: list[Problem] = []
    it = iter(lines)
    first_line = b""
    for first_line in it:
        if first_line.strip():
            break
    if not first_line.strip():
        return VerifyResult(org_id="00000000-0000-0000-0000-000000000000", problems=[Problem(None, "export is empty")])
    first = orjson.loads(first_line)
    org_id = str(first.get("org_id"))
    start_seq = int(first.get("seq", 1))
    # An export that starts past seq 1 is checked from its first link on (its prefix is not in the file).
    start_prev = GENESIS if start_seq == 1 else bytes.fromhex(first["prev_hash"])
    anchors: dict[int, bytes] = {}
    if checkpoint is not None:
        bad = checkpoint.check_signature(keys)
        if bad:
            problems.append(Problem(checkpoint.size, bad))
        elif checkpoint.org_id != org_id:
            problems.append(Problem(None, f"checkpoint is for org {checkpoint.org_id}, the export for {org_id}"))
        else:
            anchors[checkpoint.size] = checkpoint.head_hash
    org_seen: list[str] = []

    def all_lines() -> Iterator[bytes]:
        yield first_line
        yield from it

    res = verify_rows(org_id, _rows(all_lines(), org_seen, problems), anchors=anchors,
                      start_seq=start_seq, start_prev=start_prev, with_derived=False)
    if checkpoint is not None and not problems and checkpoint.size < res.head_seq:
        problems.append(Problem(checkpoint.size + 1,
                                f"the checkpoint covers only {checkpoint.size} entries but the export runs to seq "
                                f"{res.head_seq}: an older checkpoint, or entries appended after signing"))
    res.problems[:0] = problems
    return res
