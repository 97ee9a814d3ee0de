"""The audit log's rows as the API reads them, typed (domain/rows.py maps them)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.rows import columns


@dataclass(frozen=True)
class AuditRow:
    """One entry: its place in the org's chain, the hashed body (canonical JSON) and the chain hash."""

    seq: int
    body: bytes
    chain_hash: bytes


AUDIT_ROW_COLUMNS = columns(AuditRow)


@dataclass(frozen=True)
class SealedHead:
    """Where the sealer left the org's chain (audit_heads)."""

    seq: int
    chain_hash: bytes
