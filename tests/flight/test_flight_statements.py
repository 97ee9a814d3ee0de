"""The statement registry (flight/statements.py): expiry, renewal on use, the per-session bound, and that
every statement that leaves it, however it leaves, has its DuckDB connection closed."""

from __future__ import annotations

import time

import pyarrow as pa

from flight.statements import Owner, Statement, StatementRegistry
from lake.sandbox import Deadline


class FakeSandbox:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


ANA = Owner("org-a", "user", "ana", "analyst", "token-ana")
BOB = Owner("org-a", "user", "bob", "analyst", "token-bob")


BOXES: dict[bytes, FakeSandbox] = {}


def statement(handle: bytes, owner: Owner, expires_in: float, ttl_s: float = 0.0) -> Statement:
    BOXES[handle] = FakeSandbox()
    return Statement(handle=handle, sql="SELECT 1", owner=owner, schema=pa.schema([]), tables=(), prepare_ms=0.0,
                     sandbox=BOXES[handle], deadline=Deadline(0), expires_at=time.monotonic() + expires_in,
                     ttl_s=ttl_s)


def closed(s: Statement) -> bool:
    """Its connection was closed (a statement hands its connection over once: `release`)."""
    return BOXES[s.handle].closed


def test_a_statement_is_its_owners_until_consumed() -> None:
    registry = StatementRegistry(max_per_session=8)
    s = statement(b"t1", ANA, 60)
    registry.add(s)
    assert registry.lookup(b"t1", BOB, consume=True) == (s, False)  # someone else's: not consumed
    assert registry.lookup(b"t1", ANA, consume=True) == (s, True)
    assert registry.lookup(b"t1", ANA, consume=True) == (None, False)
    assert not closed(s)  # the consumer runs it on its bound connection


def test_expired_statements_are_gone_and_closed() -> None:
    registry = StatementRegistry(max_per_session=8)
    stale = statement(b"old", ANA, -1)
    soon = statement(b"soon", ANA, 0.05)
    registry.add(stale)
    registry.add(soon)
    assert closed(stale) and registry.lookup(b"old", ANA, consume=False) == (None, False)
    time.sleep(0.1)
    assert registry.lookup(b"soon", ANA, consume=False) == (None, False)
    assert closed(soon) and len(registry) == 0


def test_a_prepared_statement_lives_while_it_is_used() -> None:
    registry = StatementRegistry(max_per_session=8)
    prepared = statement(b"p", ANA, 0.15, ttl_s=0.15)
    registry.add(prepared)
    for _ in range(3):
        time.sleep(0.1)
        assert registry.lookup(b"p", ANA, consume=False) == (prepared, True)  # each use renews its lifetime
    time.sleep(0.2)
    assert registry.lookup(b"p", ANA, consume=False) == (None, False)
    assert closed(prepared)


def test_each_session_keeps_at_most_its_bound_the_soonest_to_expire_go_first() -> None:
    registry = StatementRegistry(max_per_session=2)
    first, second, third = (statement(b"a", ANA, 30), statement(b"b", ANA, 10), statement(b"c", ANA, 60))
    bobs = statement(b"x", BOB, 5)
    for s in (first, second, bobs, third):
        registry.add(s)
    assert closed(second) and not closed(first) and not closed(bobs)
    assert len(registry) == 3


def test_closing_a_session_or_everything_closes_the_connections() -> None:
    registry = StatementRegistry(max_per_session=8)
    anas = [statement(b"a1", ANA, 60), statement(b"a2", ANA, 60)]
    bobs = statement(b"b1", BOB, 60)
    for s in (*anas, bobs):
        registry.add(s)
    registry.close_session(ANA.token)
    assert all(closed(s) for s in anas) and not closed(bobs) and len(registry) == 1
    registry.close_all()
    assert closed(bobs) and len(registry) == 0
