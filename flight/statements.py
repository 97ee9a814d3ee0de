"""The statement registry: tickets and prepared statements by handle, bound to their caller.

A handle is random and single-server; its statement belongs to the caller's org, actor and bearer
token (and the role it was bound under), and holds the sandboxed DuckDB connection it was bound
on until its first execution. A ticket is consumed by its first DoGet; a prepared statement lives
until closed, its session ends, or it sits idle past its lifetime.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa
from cachetools import TLRUCache

from flight.auth import BearerAuthMiddleware
from lake.catalog import OrgDataset
from lake.sandbox import Deadline, Sandbox


@dataclass(frozen=True)
class Owner:
    """Who bound a statement: only the same caller (org, actor, bearer token) may use its handle."""

    org_id: str
    actor_type: str
    actor_id: str
    role: str  # a statement bound under one role is not run under another (roles change: auth.py)
    token: str

    @classmethod
    def of(cls, session: BearerAuthMiddleware) -> Owner:
        p = session.principal
        return cls(p.org_id, p.actor_type, p.actor_id, p.role, session.token)

    def same_caller(self, other: Owner) -> bool:
        return (self.org_id, self.actor_type, self.actor_id, self.token) == (
            other.org_id, other.actor_type, other.actor_id, other.token
        )


@dataclass
class Statement:
    """A statement whose SQL was checked and bound: a ticket to run, or a prepared statement."""

    handle: bytes
    sql: str
    owner: Owner
    schema: pa.Schema
    tables: tuple[str, ...]
    prepare_ms: float
    sandbox: Sandbox | None  # bound connection, used by the next execution
    deadline: Deadline  # the query's one time limit, from the arrival of its statement
    expires_at: float
    scan: OrgDataset | None = None  # set when the SQL just reads one whole table
    ttl_s: float = 0.0  # prepared statements: idle lifetime, renewed on use
    client_address: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def release(self) -> Sandbox | None:
        """Take the bound connection (once: concurrent callers get None)."""
        with self._lock:
            sandbox, self.sandbox = self.sandbox, None
        return sandbox


class _Handles(TLRUCache[bytes, Statement]):
    """Handles → statements, each until its own `expires_at` (stored again when that moves). What expires is
    kept in `expired`, for the registry to close: a statement's DuckDB connection must not just be dropped."""

    def __init__(self) -> None:
        super().__init__(math.inf, _deadline)  # no bound of its own: the registry bounds each session
        self.expired: list[Statement] = []

    def expire(self, time: float | None = None) -> list[tuple[bytes, Statement]]:
        gone = super().expire(time)
        self.expired.extend(entry for _, entry in gone)
        return gone

    def take_expired(self) -> list[Statement]:
        self.expire()
        expired, self.expired = self.expired, []
        return expired


def _deadline(handle: bytes, entry: Statement, now: float) -> float:
    return math.nextafter(entry.expires_at, math.inf)  # still valid at expires_at itself


@dataclass
class StatementRegistry:
    """Handles → statements, with expiry; closing an entry closes its DuckDB connection."""

    max_per_session: int
    _entries: _Handles = field(default_factory=_Handles)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: Statement) -> None:
        with self._lock, self._entries.timer:  # one instant for the whole step
            evicted = self._entries.take_expired()
            mine = [e for e in self._entries.values() if e.owner.token == entry.owner.token]
            for old in sorted(mine, key=lambda e: e.expires_at)[: max(0, len(mine) + 1 - self.max_per_session)]:
                evicted.append(self._entries.pop(old.handle))
            self._entries[entry.handle] = entry
            evicted += self._entries.take_expired()
            if entry.handle not in self._entries:  # expired already: the cache did not keep it
                evicted.append(entry)
        for old in evicted:
            close_sandbox(old.release())

    def lookup(self, handle: bytes, owner: Owner, *, consume: bool) -> tuple[Statement | None, bool]:
        """(entry, is it the caller's); the caller's entry is removed when `consume`."""
        with self._lock, self._entries.timer:  # one instant for the whole step
            evicted = self._entries.take_expired()
            entry = self._entries.get(handle)
            if entry is not None and entry.owner.same_caller(owner):
                if consume:
                    del self._entries[handle]
                elif entry.ttl_s:
                    entry.expires_at = time.monotonic() + entry.ttl_s
                    self._entries[handle] = entry  # the new deadline
        for old in evicted:
            close_sandbox(old.release())
        return entry, entry is not None and entry.owner.same_caller(owner)

    def close_session(self, token: str) -> None:
        with self._lock, self._entries.timer:  # one instant for the whole step
            entries = self._entries.take_expired()
            gone = [h for h, e in self._entries.items() if e.owner.token == token]
            entries += [self._entries.pop(h) for h in gone]
        for entry in entries:
            close_sandbox(entry.release())

    def close_all(self) -> None:
        with self._lock, self._entries.timer:  # one instant for the whole step
            entries = self._entries.take_expired() + list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            close_sandbox(entry.release())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)  # (what expired is closed by the next call)


def close_sandbox(sandbox: Sandbox | None) -> None:
    if sandbox is not None:
        sandbox.close()

