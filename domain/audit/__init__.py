"""The audit log: append-only, hash-chained per organization, verifiable offline."""

from domain.audit.recorder import Severity, record

__all__ = ["Severity", "record"]
