"""The sealed audit log → the `audit_log` Delta table, exactly once by construction.

No outbox: each org's chain already has a gapless `seq`. The Delta table records, per org, the app
transaction `audit_log:<org_id>` whose version is the last seq exported. A round reads those versions
from the table, fetches the entries after them from PostgreSQL, and appends them in one commit that
advances every included org's version. A crash before the commit exports nothing; after it, the next
round starts past what was committed.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from sqlalchemy import Engine, text

from lake.tables import AUDIT_LOG, PARTITION, audit_app_id
from lake.writer import Append, Lake

TABLE = AUDIT_LOG.name

_HEADS = text("SELECT org_id::text, seq FROM audit_heads WHERE seq > 0")
_ENTRIES = text(
    """SELECT w.org, a.seq, a.occurred_at, a.actor_type, a.actor_id, a.actor_display, a.action, a.entity_type,
              a.entity_id, a.severity, a.reason, a.request_id, a.api_key_id::text, a.body, a.body_hash,
              a.prev_hash, a.chain_hash, a.sealed_at
       FROM unnest(CAST(:orgs AS text[]), CAST(:after AS bigint[])) AS w(org, after)
       CROSS JOIN LATERAL (
         SELECT * FROM audit_log l WHERE l.org_id = w.org::uuid AND l.seq > w.after ORDER BY l.seq LIMIT :lim
       ) a
       ORDER BY w.org, a.seq"""
)


def _to_table(rows: list[Any]) -> pa.Table:
    cols: dict[str, list[Any]] = {c.name: [] for c in AUDIT_LOG.columns}
    for r in rows:
        cols[PARTITION].append(r[0])
        for name, v in zip(("seq", "occurred_at", "actor_type", "actor_id", "actor_display", "action",
                            "entity_type", "entity_id", "severity", "reason", "request_id", "api_key_id"),
                           r[1:13], strict=True):
            cols[name].append(v)
        cols["body"].append(bytes(r[13]).decode("utf-8"))
        cols["body_hash"].append(bytes(r[14]).hex())
        cols["prev_hash"].append(bytes(r[15]).hex())
        cols["chain_hash"].append(bytes(r[16]).hex())
        cols["sealed_at"].append(r[17])
    schema = AUDIT_LOG.schema
    return pa.Table.from_arrays([pa.array(cols[f.name], f.type) for f in schema], schema=schema)


def export_audit(engine: Engine, lake: Lake, *, max_rows: int = 50_000) -> int:
    """One round: append every org's newly sealed entries (up to about max_rows). Returns rows written."""
    with engine.connect() as conn:
        heads = {org: seq for org, seq in conn.execute(_HEADS).all()}
    if not heads:
        return 0
    written = 0

    def plan(dt: DeltaTable | None) -> Append | None:
        nonlocal written
        done = {org: (dt.transaction_version(audit_app_id(org)) or 0) if dt is not None else 0 for org in heads}
        behind = sorted(org for org, seq in heads.items() if seq > done[org])
        if not behind:
            return None
        per_org = max(1_000, max_rows // len(behind))
        with engine.connect() as conn:
            rows = conn.execute(_ENTRIES, {"orgs": behind, "after": [done[o] for o in behind], "lim": per_org}).all()
        keep: list[Any] = []
        last: dict[str, int] = {}
        for r in rows:
            expected = last.get(r[0], done[r[0]]) + 1
            if r[1] != expected:
                continue  # never past a gap: the chain is gapless, so a gap means a row we cannot see yet
            keep.append(r)
            last[r[0]] = r[1]
        written = len(keep)
        return Append(_to_table(keep), {audit_app_id(org): seq for org, seq in last.items()})

    return written if lake.append_once(TABLE, plan, description=AUDIT_LOG.description) else 0
