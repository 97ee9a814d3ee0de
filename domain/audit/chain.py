"""Pure verification of an org's audit chain: no database, no clock.

The same code checks rows streamed from PostgreSQL and lines of an offline
export. It hashes the stored bytes (never re-serializes them) and reports the
first bad seq with what is wrong.

chain_hash(n) = sha256(chain_hash(n-1) || int8_be(seq) || org_uuid_bytes || sha256(body)),
chain_hash(0) = 32 zero bytes.

Speed: every row goes through one tight test (two SHA-256, a few byte comparisons and the
derived-column check); only a row that fails it is examined again, slowly, to say exactly
what is wrong with it. Both paths check the same things, so the fast one never accepts a
row the careful one would reject.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
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
    stopped_early: bool = False  # gave up after max_problems: head_seq is not the chain's end

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


_SORT = orjson.OPT_SORT_KEYS
_CONTEXT_KEY = b',"context":{"api_key_id":'
_REQUEST_ID_KEY = b',"request_id":'


def _fast_check(org_s: str, with_derived: bool) -> Callable[[bytes, tuple[Any, ...]], bool]:
    """True when the body names this org and (with_derived) the row's query columns equal the body's
    values. Any doubt is False: the row then goes to `_diagnose`, which says what is wrong (or finds
    nothing, when nothing is).

    With derived columns it compares bytes instead of parsing the body: the recorder's canonical
    body (sorted keys, no whitespace) starts with
        {"action":A,"actor":{"display":D,"id":I,"type":T},"after":
    ends with
        },"entity":{"id":E,"type":ET},"occurred_at":O,"org_id":G,"reason":R,"severity":S,"v":1}
    and its last `,"context":{"api_key_id":` (a quote inside a JSON string is always escaped, so only
    structure can match it, and nothing after the top-level context is structure) is followed by
    K,"client_address":...,"request_id":Q,"user_agent": -- each value being the column's own JSON
    encoding. A JSON string token ends at its first unescaped quote, so for a body in that form these
    byte matches hold exactly when the body's values equal the columns; anything else fails them and gets
    the parsing check. (Bodies have that form by construction: the recorder writes them and the chain
    authenticates them. A hand-made body inserted straight into audit_pending with duplicate keys between
    "after" and "context" could pass here where the parsing check, which takes the last duplicate, would
    name a column.) "v":1 is the recorder's BODY_VERSION: other versions take the parsing check."""
    loads = orjson.loads
    dumps = orjson.dumps

    if not with_derived:
        def org_only(body: bytes, row: tuple[Any, ...]) -> bool:
            try:
                return bool(loads(body)["org_id"] == org_s)
            except Exception:  # noqa: BLE001 - anything odd goes to the careful path
                return False

        return org_only

    # The expected bytes around each body, memoized for this verification (few actors, keys and request ids
    # repeat over many entries).
    @lru_cache(maxsize=4096)
    def head_of(action: object, display: object, actor_id: object, actor_type: object) -> bytes:
        return dumps({"action": action, "actor": {"display": display, "id": actor_id, "type": actor_type}},
                     option=_SORT)[:-1] + b',"after":'

    @lru_cache(maxsize=4096)
    def context_of(api_key_id: object) -> bytes:
        return dumps(api_key_id) + b',"client_address":'

    @lru_cache(maxsize=4096)
    def request_id_of(request_id: object) -> bytes:
        return dumps(request_id) + b',"user_agent":'

    def derived(body: bytes, row: tuple[Any, ...]) -> bool:
        # row: seq, body, body_hash, prev_hash, chain_hash, org, occurred_at, actor_type, actor_id,
        #      actor_display, action, entity_type, entity_id, severity, reason, request_id, api_key_id
        try:
            if not body.startswith(head_of(row[10], row[9], row[8], row[7])):
                return False
            # keys written in sorted order already: the canonical encoding without paying for the sort
            tail = dumps({"entity": {"id": row[12], "type": row[11]}, "occurred_at": row[6], "org_id": org_s,
                          "reason": row[14], "severity": row[13], "v": 1})
            if not (body.endswith(tail[1:]) and body.endswith(b"},", 0, len(body) - len(tail) + 1)):
                return False
            at = body.rfind(_CONTEXT_KEY)
            if at < 0 or not body.startswith(context_of(row[16]), at + len(_CONTEXT_KEY)):
                return False
            at = body.find(_REQUEST_ID_KEY, at)
            return at > 0 and body.startswith(request_id_of(row[15]), at + len(_REQUEST_ID_KEY))
        except Exception:  # noqa: BLE001 - anything odd (e.g. a non-string column) goes to the careful path
            return False

    return derived


def _diagnose(
    res: VerifyResult, row: tuple[Any, ...], expected: int, prev: bytes, org_b: bytes, with_derived: bool
) -> None:
    """Say exactly what is wrong with one row (appends to res.problems)."""
    problems = res.problems
    seq, body, body_hash, prev_hash, chain_hash, row_org = row[0], bytes(row[1]), row[2], row[3], row[4], row[5]
    if seq != expected:
        if seq > expected:
            problems.append(Problem(expected, f"entries missing: expected seq {expected}, next is {seq}"))
        else:
            problems.append(Problem(seq, f"seq out of order or duplicated: {seq} after {expected - 1}"))
    if row_org != res.org_id:
        problems.append(Problem(seq, f"row belongs to org {row_org}, not {res.org_id}"))
    computed_body_hash = hashlib.sha256(body).digest()
    if computed_body_hash != bytes(body_hash):
        problems.append(Problem(seq, "body does not match its body_hash (entry edited)"))
    if seq > expected:
        prev = bytes(prev_hash)  # its predecessor is missing: check the row against its own stored link
    elif bytes(prev_hash) != prev:
        problems.append(Problem(
            seq, f"prev_hash does not link to the chain hash of seq {seq - 1} "
                 f"(that entry was rewritten, or this one)"))
    try:
        computed = hashlib.sha256(prev + seq.to_bytes(8, "big", signed=True) + org_b + computed_body_hash).digest()
    except OverflowError:
        computed = b""
    if computed != bytes(chain_hash):
        problems.append(Problem(seq, "chain_hash is not the link of prev, seq, org and body"))
    try:
        b = orjson.loads(body)
        if b.get("org_id") != res.org_id:
            problems.append(Problem(seq, f"body names org {b.get('org_id')}, not {res.org_id}"))
        if with_derived:
            from_body = derived_from_body(b)
            if from_body != tuple(row[6:17]):
                bad = [name for name, x, y in zip(DERIVED_COLUMNS, from_body, row[6:17], strict=True) if x != y]
                problems.append(Problem(seq, f"column(s) {', '.join(bad)} differ from the hashed body"))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        problems.append(Problem(seq, "body is not a valid audit entry"))


def verify_rows(
    org_id: str,
    rows: Iterable[tuple[Any, ...]],
    *,
    anchors: Mapping[int, bytes] | None = None,
    start_seq: int = 1,
    start_prev: bytes = GENESIS,
    with_derived: bool = True,
    max_problems: int = 20,
    final: bool = True,
) -> VerifyResult:
    """Verify rows `(seq, body, body_hash, prev_hash, chain_hash, row_org_id, *derived)` in seq order.

    `anchors` maps seq → chain hash that signed checkpoints vouch for. Stops after `max_problems`.
    `final=False` for a slice of the chain that more entries follow: anchors past its last row are
    then someone else's business, not a truncation.
    """
    org = uuid.UUID(org_id)
    org_b = org.bytes
    org_s = str(org)
    res = VerifyResult(org_id=org_s)
    problems = res.problems
    anchors = dict(anchors or {})
    sha = hashlib.sha256
    fast = _fast_check(org_s, with_derived)
    expected = start_seq
    prev = start_prev
    count = 0
    last_anchor = start_seq - 1  # the last seq a signed checkpoint vouched for, as verified so far
    stopped = False
    for row in rows:
        seq = row[0]
        body = row[1]
        stored = row[4]
        body_hash = sha(body).digest()
        if not (
            seq == expected
            and row[2] == body_hash
            and row[3] == prev
            and row[5] == org_s
            and sha(prev + seq.to_bytes(8, "big", signed=True) + org_b + body_hash).digest() == stored
            and fast(body, row)
        ):
            _diagnose(res, row, expected, prev, org_b, with_derived)
        if stored.__class__ is not bytes:
            stored = bytes(stored)
        if seq > expected and anchors:
            for gone in sorted(k for k in anchors if expected <= k < seq):
                del anchors[gone]
                problems.append(Problem(gone, f"entry {gone}, which a signed checkpoint vouches for, is missing"))
        if seq in anchors:
            if anchors.pop(seq) != stored:
                problems.append(Problem(
                    seq, f"signed checkpoint of size {seq} disagrees with the chain here: it was rewritten "
                         f"(links recomputed) after signing, somewhere in entries {last_anchor + 1}..{seq}"))
            last_anchor = seq
        # Continue from the stored link so that one edited entry is reported once, not at every later seq.
        prev = stored
        expected = seq + 1
        count += 1
        if len(problems) >= max_problems:
            stopped = True
            break
    res.count = count
    res.stopped_early = stopped
    res.head_seq = expected - 1
    res.head_hash = prev
    if final and not stopped:
        for size in sorted(anchors):
            problems.append(
                Problem(res.head_seq + 1, f"chain truncated: a signed checkpoint covers {size} entries, "
                                          f"the chain ends at seq {res.head_seq}")
            )
    return res
