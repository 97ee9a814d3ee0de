"""Pure verification of an org's audit chain: no database, no clock.

The same code checks rows streamed from PostgreSQL and lines of an offline
export. It hashes the stored bytes (never re-serializes them) and reports the
first bad seq with what is wrong.

chain_hash(n) = sha256(chain_hash(n-1) || int8_be(seq) || org_uuid_bytes || sha256(body)),
chain_hash(0) = 32 zero bytes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

GENESIS = bytes(32)


def link(prev: bytes, seq: int, org: uuid.UUID, body_hash: bytes) -> bytes:
    return hashlib.sha256(prev + seq.to_bytes(8, "big", signed=True) + org.bytes + body_hash).digest()


@dataclass(frozen=True)
class Problem:
    seq: int | None
    what: str


@dataclass
class VerifyResult:
    org_id: str
    count: int = 0
    head_seq: int = 0
    head_hash: bytes = GENESIS
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        bad = [p for p in self.problems if p.seq is not None]
        return min(bad, key=lambda p: p.seq or 0) if bad else (self.problems[0] if self.problems else None)

    def summary(self) -> str:
        if self.ok:
            return f"ok: org {self.org_id}: {self.count} entries verified, head seq {self.head_seq}"
        p = self.first_problem
        assert p is not None
        where = f"seq {p.seq}" if p.seq is not None else "chain"
        return f"TAMPERED: org {self.org_id}: first bad {where}: {p.what}"


# Columns kept beside the body for querying; each must equal what the body says.
DERIVED_COLUMNS = (
    "occurred_at", "actor_type", "actor_id", "actor_display", "action", "entity_type", "entity_id",
    "severity", "reason", "request_id", "api_key_id",
)


def derived_from_body(b: Mapping[str, Any]) -> tuple[Any, ...]:
    a, e, c = b["actor"], b["entity"], b["context"]
    return (
        b["occurred_at"], a["type"], a["id"], a["display"], b["action"], e["type"], e["id"],
        b["severity"], b["reason"], c["request_id"], c["api_key_id"],
    )


def verify_rows(
    org_id: str,
    rows: Iterable[tuple[Any, ...]],
    *,
    anchors: Mapping[int, bytes] | None = None,
    start_seq: int = 1,
    start_prev: bytes = GENESIS,
    with_derived: bool = True,
    max_problems: int = 20,
) -> VerifyResult:
    """Verify rows `(seq, body, body_hash, prev_hash, chain_hash, row_org_id, *derived)` in seq order.

    `anchors` maps seq → chain hash that signed checkpoints vouch for.
    """
    org = uuid.UUID(org_id)
    org_b = org.bytes
    res = VerifyResult(org_id=str(org))
    problems = res.problems
    anchors = dict(anchors or {})
    sha = hashlib.sha256
    loads = orjson.loads
    expected = start_seq
    prev = start_prev
    for row in rows:
        seq, body, body_hash, prev_hash, chain_hash, row_org = row[0], row[1], row[2], row[3], row[4], row[5]
        body = bytes(body)
        if seq != expected:
            if seq > expected:
                problems.append(Problem(expected, f"entries missing: expected seq {expected}, next is {seq}"))
            else:
                problems.append(Problem(seq, f"seq out of order or duplicated: {seq} after {expected - 1}"))
            expected = seq
        if row_org != res.org_id:
            problems.append(Problem(seq, f"row belongs to org {row_org}, not {res.org_id}"))
        computed_body_hash = sha(body).digest()
        if computed_body_hash != bytes(body_hash):
            problems.append(Problem(seq, "body does not match its body_hash (entry edited)"))
        if bytes(prev_hash) != prev:
            problems.append(Problem(seq, f"prev_hash does not link to the chain hash of seq {seq - 1}"))
        computed = sha(prev + seq.to_bytes(8, "big", signed=True) + org_b + computed_body_hash).digest()
        if computed != bytes(chain_hash):
            problems.append(Problem(seq, "chain_hash is not the link of prev, seq, org and body"))
        try:
            b = loads(body)
            if b.get("org_id") != res.org_id:
                problems.append(Problem(seq, f"body names org {b.get('org_id')}, not {res.org_id}"))
            if with_derived and derived_from_body(b) != tuple(row[6:17]):
                bad = [
                    name for name, x, y in zip(DERIVED_COLUMNS, derived_from_body(b), row[6:17], strict=True)
                    if x != y
                ]
                problems.append(Problem(seq, f"column(s) {', '.join(bad)} differ from the hashed body"))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            problems.append(Problem(seq, "body is not a valid audit entry"))
        stored = bytes(chain_hash)
        if seq in anchors:
            if anchors.pop(seq) != stored:
                problems.append(Problem(seq, f"signed checkpoint of size {seq} disagrees with the chain here"))
        # Continue from the stored link so that one edited entry is reported once, not at every later seq.
        prev = stored
        expected = seq + 1
        res.count += 1
        if len(problems) >= max_problems:
            break
    res.head_seq = expected - 1
    res.head_hash = prev
    for size in sorted(anchors):
        problems.append(
            Problem(res.head_seq + 1, f"chain truncated: a signed checkpoint covers {size} entries, "
                                       f"the chain ends at seq {res.head_seq}")
        )
    return res
