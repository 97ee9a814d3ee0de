"""A batch is claimed as one id range (migration 0027): two sinks never claim overlapping ranges, a range never
passes over a row whose transaction is still open, a backup's hold on the outbox stops claims, and rows stamped by
an older sink are finished by recovery."""

from __future__ import annotations

import collections
import threading

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.db import libpq_url
from lake.sink import OutboxRow
from tests.lake.lakekit import step_event


def _event_ids(kit, org: str) -> list[str]:
    return kit.table("step_events", org)["event_id"].to_pylist()


def test_two_sinks_claiming_at_once_never_claim_the_same_range(kit):
    org = kit.org()
    events = [step_event(org, i=i) for i in range(600)]
    for k in range(0, 600, 100):
        kit.insert("step_event", events[k:k + 100])
    sinks = [kit.sink(batch_rows=40), kit.sink(batch_rows=40)]
    claimed: dict[int, list[list[OutboxRow]]] = {0: [], 1: []}
    start = threading.Barrier(2)

    def claim_all(i: int) -> None:
        start.wait()
        while True:
            batch_id, rows = sinks[i].claim()
            if not rows:
                return
            claimed[i].append(rows)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert claimed[0] and claimed[1], "both sinks claimed"
    ids = [r.id for batches in claimed.values() for rows in batches for r in rows]
    assert not [i for i, n in collections.Counter(ids).items() if n > 1], "a row was claimed twice"
    with kit.owner.begin(None) as s:
        ours = {i for (i,) in s.execute(text("SELECT id FROM outbox WHERE org_id = :o"), {"o": org})}
        ranges = sorted(tuple(r) for r in s.execute(text("SELECT first_id, last_id FROM outbox_batches")))
        assert all(b is not None for (b,) in s.execute(
            text("SELECT batch_id FROM outbox WHERE org_id = :o"), {"o": org})), "every row shows its batch"
    assert ours <= set(ids)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False)), f"overlapping ranges {ranges}"
    with kit.owner.begin(None) as s, pytest.raises(IntegrityError, match="outbox_batches_disjoint"):
        first, last = ranges[0]
        s.execute(text("INSERT INTO outbox_batches (id, first_id, last_id, topics, row_count, claimed_by)"
                       " VALUES (-1, :f, :l, '{step_event}', 1, 'test')"), {"f": first, "l": last})

    kit.sink().drain()  # recovery finishes every claimed batch, in order
    assert sorted(_event_ids(kit, org)) == sorted(e["event_id"] for e in events)
    assert kit.outbox(org) == []


def test_a_range_never_passes_over_a_row_still_being_written(kit, database_url):
    org = kit.org()
    early, late = step_event(org, i=1), step_event(org, i=2)
    with psycopg.connect(libpq_url(database_url)) as writer:
        # The early row draws its id first, and its transaction stays open while a later row commits.
        drawn = writer.execute("INSERT INTO outbox (org_id, topic, payload) VALUES (%s, 'step_event', %s::jsonb)"
                               " RETURNING id", (org, psycopg.types.json.Jsonb(early))).fetchone()
        assert drawn is not None
        kit.insert("step_event", [late])
        early_id, ((late_id, _),) = drawn[0], kit.outbox(org)
        assert late_id > early_id
        sink = kit.sink()
        sink._fence.wait_s = 0.2
        _, rows = sink.claim()
        assert late_id not in {r.id for r in rows}, "the claim went past a row that had not committed yet"
        assert kit.outbox(org) == [(late_id, None)], "nothing of this org is claimed yet"
        writer.commit()
    sink.drain()
    assert sorted(_event_ids(kit, org)) == sorted([early["event_id"], late["event_id"]])
    assert kit.outbox(org) == []


def test_a_backup_holding_the_outbox_also_holds_the_claims(database_url):
    with psycopg.connect(libpq_url(database_url)) as hold:
        hold.execute("LOCK TABLE outbox IN SHARE MODE")  # as flasktrack/backup.py does
        locked = {str(r[0]) for r in hold.execute(
            "SELECT relation::regclass FROM pg_locks WHERE pid = pg_backend_pid() AND mode = 'ShareLock'"
            " AND relation IS NOT NULL")}
        hold.rollback()
    assert {"outbox_rows", "outbox_batches"} <= locked


def test_rows_stamped_by_an_older_sink_are_finished_by_recovery(kit):
    org = kit.org()
    events = [step_event(org, i=i) for i in range(5)]
    kit.insert("step_event", events)
    with kit.owner.begin(None) as s:  # the claim of a sink before migration 0027
        s.execute(text("UPDATE outbox_rows SET batch_id = (SELECT nextval(pg_get_serial_sequence('outbox_rows', 'id')))"
                       " WHERE org_id = :o"), {"o": org})
    assert all(b is not None for _, b in kit.outbox(org))
    kit.sink().drain()
    assert sorted(_event_ids(kit, org)) == sorted(e["event_id"] for e in events)
    assert kit.outbox(org) == []
