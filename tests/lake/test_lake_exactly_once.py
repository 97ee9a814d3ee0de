"""Exactly once: the sink is killed (os._exit in a separate process) at each point of a batch's life and
of an audit export; after a restart every outbox row and audit entry is in Delta exactly once."""

from __future__ import annotations

import collections
import signal
import time

import pytest
from deltalake import DeltaTable
from sqlalchemy import text

from domain.audit import recorder
from domain.audit import service as audit
from domain.roles import Actor
from lake.tables import audit_app_id
from tests.lake.lakekit import field, form_payload, run_payload, step_event


def _once(values: list[str], expected: list[str]) -> None:
    dup = [v for v, n in collections.Counter(values).items() if n > 1]
    assert not dup, f"duplicated: {dup[:5]}"
    assert sorted(values) == sorted(expected)


def _rows(kit, name: str, org: str) -> int:
    try:
        return kit.table(name, org).num_rows
    except Exception:  # noqa: BLE001 - the table was never created
        return 0


def _serve_until_drained(kit, org: str, batch_rows: int) -> None:
    """Restart as the service would run, wait for the outbox to empty, stop it with SIGTERM."""
    p = kit.spawn(FLASKTRACK_SINK_BATCH_ROWS=str(batch_rows))
    deadline = time.monotonic() + 40
    while kit.outbox(org) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 0, out.decode()[-3000:]
    assert kit.outbox(org) == []


@pytest.mark.parametrize("fault", ["before_commit", "between_tables", "after_commit"])
def test_killed_sink_restarts_without_loss_or_duplicates(kit, fault):
    _crash_and_restart(kit, fault, batch_rows=50_000)


def test_killed_while_a_backlog_drains_with_the_next_batch_claimed_ahead(kit):
    _crash_and_restart(kit, "between_tables", batch_rows=70)


def _crash_and_restart(kit, fault: str, batch_rows: int) -> None:
    org = kit.org()
    events = [step_event(org, i=i) for i in range(400)]
    forms = [form_payload(org, "crash_check", [field("v", "integer")], {"v": i}) for i in range(60)]
    runs = [run_payload(org) for _ in range(20)]
    kit.insert("step_event", events)
    kit.insert("form_submission", forms)
    kit.insert("run", runs)

    p = kit.spawn(fault, FLASKTRACK_SINK_BATCH_ROWS=str(batch_rows))
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 70, out.decode()[-3000:]
    left = kit.outbox(org)
    written = {t: _rows(kit, t, org) for t in ("form_crash_check", "runs", "step_events")}
    if batch_rows < 480:
        # Died in the middle of a multi-table batch while the next one was being claimed: nothing is
        # written twice so far, and whatever is not yet acknowledged is still in the outbox.
        assert len(left) < 480 and sum(1 for _, b in left if b is not None) >= batch_rows
        assert sum(written.values()) + len(left) >= 480
    else:
        assert len(left) == 480 and all(b is not None for _, b in left), "rows stay in the outbox, claimed"
    # Tables commit in name order: form_crash_check, runs, step_events.
    assert batch_rows < 480 or written == {
        "before_commit": {"form_crash_check": 0, "runs": 0, "step_events": 0},
        "between_tables": {"form_crash_check": 60, "runs": 0, "step_events": 0},
        "after_commit": {"form_crash_check": 60, "runs": 20, "step_events": 400},
    }[fault]

    _serve_until_drained(kit, org, batch_rows)
    _once(kit.table("step_events", org)["event_id"].to_pylist(), [e["event_id"] for e in events])
    _once(kit.table("form_crash_check", org)["submission_id"].to_pylist(), [f["submission_id"] for f in forms])
    _once(kit.table("runs", org)["run_id"].to_pylist(), [r["run_id"] for r in runs])


def _audit(kit, org: str, n: int) -> None:
    with kit.owner.begin(org) as s:
        for i in range(n):
            recorder.record(s, org_id=org, actor=Actor("user", "u-1", "Ada"), action="update",
                            entity_type="sample", entity_id=f"S-{i}", after={"i": i})
    with kit.owner.begin(org) as s:
        audit.seal(s, org)


def test_audit_export_is_exactly_once_across_a_crash(kit):
    org = kit.org()  # creating the org writes its first entry
    _audit(kit, org, 40)
    p = kit.spawn("audit_after_commit")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 70, out.decode()[-3000:]
    assert kit.table("audit_log", org).num_rows == 41

    _audit(kit, org, 25)
    kit.sink().drain()
    kit.sink().drain()  # nothing new: nothing written
    t = kit.table("audit_log", org)
    seqs = t["seq"].to_pylist()
    assert sorted(seqs) == list(range(1, 67)) and len(set(seqs)) == 66
    assert DeltaTable(f"{kit.lake_uri}/audit_log").transaction_version(audit_app_id(org)) == 66
    with kit.owner.begin(org) as s:
        pg = {r.seq: (bytes(r.chain_hash).hex(), bytes(r.body).decode()) for r in s.execute(
            text("SELECT seq, chain_hash, body FROM audit_log WHERE org_id = :o"), {"o": org})}
    lake = {r["seq"]: (r["chain_hash"], r["body"]) for r in t.to_pylist()}
    assert lake == pg
