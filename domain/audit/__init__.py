"""The audit log: append-only, hash-chained per organization, verifiable offline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from domain.audit.recorder import Severity, record, record_denial

__all__ = ["Severity", "record", "record_denial"]


def __getattr__(name: str) -> Any:
    # Lazy, so that a verification helper process (domain.audit.parallel) starts without SQLAlchemy.
    if name in __all__:
        from domain.audit import recorder

        return getattr(recorder, name)
    raise AttributeError(f"module 'domain.audit' has no attribute {name!r}")
