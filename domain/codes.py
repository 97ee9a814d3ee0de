"""Human-readable identifiers, unique per organization: `S-000123`, `B-000007`, `LOC-000042`.

Each organization has one counter per prefix; taking a value locks that counter's row until the transaction
ends, so two creations never share a code, and a rolled-back creation leaves a gap rather than a duplicate.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

_NEXT = text(
    "INSERT INTO code_sequences (org_id, prefix, last_value) VALUES (:o, :p, 1)"
    " ON CONFLICT (org_id, prefix) DO UPDATE SET last_value = code_sequences.last_value + 1"
    " RETURNING last_value"
)


def next_code(session: Session, org_id: uuid.UUID | str, prefix: str) -> str:
    """The organization's next code with `prefix` (1–4 capital letters), e.g. `S-000124`."""
    n = session.execute(_NEXT, {"o": str(org_id), "p": prefix}).scalar_one()
    return f"{prefix}-{n:06d}"
