"""Streaming an org's chain out of PostgreSQL into `verify_rows`, in one process or in slices
across several.

Each link is checked against the *stored* chain hash of the entry before it, so the chain
splits into independent slices by seq: a slice is verified on its own (its first entry
linked to its own stored prev_hash), and the seams are checked afterwards (each slice's
first prev_hash must be the chain hash its predecessor ended on, with no seq missing in
between). Hashing is CPU-bound Python, so slices go to worker processes, each with its own
connection; the caller's transaction, which holds the org's head row locked, verifies the
first slice itself.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

from domain.audit.chain import Problem, VerifyResult, verify_rows

# The row layout verify_rows expects: seq, body, hashes, the org, then the derived columns.
ROW_COLUMNS = """seq, body, body_hash, prev_hash, chain_hash, org_id::text,
  to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  actor_type, actor_id, actor_display, action, entity_type, entity_id, severity, reason, request_id,
  api_key_id::text"""

# Below this many entries one process is faster than starting to share the work.
PARALLEL_MIN_ENTRIES = 100_000


def default_workers() -> int:
    env = os.environ.get("FLASKTRACK_VERIFY_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(2, os.cpu_count() or 1))


def _stream(conn: Any, org: str, lo: int, hi: int | None, chunk: int) -> Generator[tuple[Any, ...], None, None]:
    sql = f"SELECT {ROW_COLUMNS} FROM audit_log WHERE org_id = %s AND seq >= %s"
    params: tuple[Any, ...] = (org, lo)
    if hi is not None:
        sql += " AND seq <= %s"
        params = (org, lo, hi)
    with conn.cursor(binary=True) as cur:
        rows = cur.stream(sql + " ORDER BY seq", params, size=chunk)
        try:
            yield from rows
        finally:
            rows.close()


def verify_slice(
    conn: Any, org: str, lo: int, hi: int | None, anchors: Mapping[int, bytes], chunk: int, *, final: bool = True
) -> tuple[VerifyResult, int | None, bytes | None]:
    """Verify entries lo..hi (to the end when hi is None) on a psycopg connection.
    Returns the result, the first seq found and that entry's stored prev_hash (for the seam)."""
    rows = _stream(conn, org, lo, hi, chunk)
    try:
        if lo == 1:
            return verify_rows(org, rows, anchors=anchors, final=final), None, None
        first = next(rows, None)
        if first is None:
            return VerifyResult(org_id=org, head_seq=lo - 1), None, None
        first_prev = bytes(first[3])

        def all_rows() -> Iterator[tuple[Any, ...]]:
            yield first
            yield from rows

        res = verify_rows(org, all_rows(), anchors=anchors, start_seq=lo, start_prev=first_prev, final=final)
        return res, int(first[0]), first_prev
    finally:
        rows.close()


def _worker(url: str, org: str, lo: int, hi: int | None, anchors: dict[int, bytes],
            chunk: int) -> tuple[VerifyResult, int | None, bytes | None]:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_config('flasktrack.org_id', %s, true)", (org,))
        return verify_slice(conn, org, lo, hi, anchors, chunk, final=False)


class _Helper:
    """A slice verified by `python -m domain.audit.parallel` (a fresh interpreter: no fork of a threaded
    server, no re-import of the caller's __main__); arguments and result travel as pickles on its pipes."""

    def __init__(self, *args: Any) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, "-m", "domain.audit.parallel"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, cwd=root)
        assert self.proc.stdin is not None
        self.proc.stdin.write(pickle.dumps(args))
        self.proc.stdin.close()

    def result(self) -> tuple[VerifyResult, int | None, bytes | None]:
        assert self.proc.stdout is not None
        data = self.proc.stdout.read()
        if self.proc.wait() != 0 or not data:
            raise RuntimeError(f"audit verification helper failed (exit {self.proc.returncode})")
        out: tuple[VerifyResult, int | None, bytes | None] = pickle.loads(data)  # noqa: S301 - our own child
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def verify_chain(
    conn: Any,
    org: str,
    *,
    anchors: Mapping[int, bytes],
    expected_size: int,
    url: str | None,
    workers: int,
    chunk: int = 2000,
    max_problems: int = 20,
) -> VerifyResult:
    """The whole chain of `org` verified on `conn` (the caller's transaction), with `workers - 1`
    helper processes connecting to `url` when the chain is long enough to be worth it."""
    if workers < 2 or url is None or expected_size < PARALLEL_MIN_ENTRIES:
        return verify_slice(conn, org, 1, None, anchors, chunk)[0]
    starts = [1 + i * expected_size // workers for i in range(workers)]
    bounds = [(lo, starts[i + 1] - 1 if i + 1 < workers else None) for i, lo in enumerate(starts)]

    def part(lo: int, hi: int | None) -> dict[int, bytes]:
        return {k: v for k, v in anchors.items() if k >= lo and (hi is None or k <= hi)}

    helpers = [_Helper(url, org, lo, hi, part(lo, hi), chunk) for lo, hi in bounds[1:]]
    try:
        parts = [verify_slice(conn, org, bounds[0][0], bounds[0][1], part(*bounds[0]), chunk, final=False)]
        for h, (lo, hi) in zip(helpers, bounds[1:], strict=True):
            try:
                parts.append(h.result())
            except (RuntimeError, OSError, pickle.UnpicklingError, EOFError):
                # a helper that could not run (no connection, killed): do its slice here instead
                parts.append(verify_slice(conn, org, lo, hi, part(lo, hi), chunk, final=False))
    finally:
        for h in helpers:
            h.kill()
    return _stitch(org, bounds, parts, anchors, max_problems)


def _stitch(
    org: str,
    bounds: list[tuple[int, int | None]],
    parts: list[tuple[VerifyResult, int | None, bytes | None]],
    anchors: Mapping[int, bytes],
    max_problems: int,
) -> VerifyResult:
    """One result from the slices' results, checking the seams between them."""
    out = VerifyResult(org_id=org)
    problems = out.problems
    prev = parts[0][0]
    problems.extend(prev.problems)
    out.count = prev.count
    out.stopped_early = prev.stopped_early
    for (lo, _hi), (res, first_seq, first_prev) in zip(bounds[1:], parts[1:], strict=True):
        if first_seq is None:
            continue  # an empty slice: whatever it should have held shows as a gap at the next seam
        if not out.stopped_early:
            if prev.head_seq != lo - 1 or first_seq != lo:
                # the gap spans the seam: report it once, from where the entries stop
                res.problems[:] = [p for p in res.problems
                                   if not (p.seq == lo and p.what.startswith("entries missing"))]
                problems.append(Problem(prev.head_seq + 1, f"entries missing: expected seq {prev.head_seq + 1}, "
                                                           f"next is {first_seq}"))
                for gone in sorted(k for k in anchors if prev.head_seq < k < first_seq):
                    problems.append(Problem(gone, f"entry {gone}, which a signed checkpoint vouches for, "
                                                  f"is missing"))
            elif first_prev != prev.head_hash:
                problems.append(Problem(lo, f"prev_hash does not link to the chain hash of seq {lo - 1} "
                                            f"(that entry was rewritten, or this one)"))
        problems.extend(res.problems)
        out.count += res.count
        out.stopped_early = out.stopped_early or res.stopped_early
        prev = res
    out.head_seq = prev.head_seq
    out.head_hash = prev.head_hash
    if not out.stopped_early:
        for size in sorted(k for k in anchors if k > out.head_seq):
            problems.append(Problem(out.head_seq + 1, f"chain truncated: a signed checkpoint covers {size} "
                                                      f"entries, the chain ends at seq {out.head_seq}"))
    if len(problems) > max_problems:
        problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
        del problems[max_problems:]
        out.stopped_early = True
    return out


if __name__ == "__main__":
    _args = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - written by our own parent
    sys.stdout.buffer.write(pickle.dumps(_worker(*_args)))
