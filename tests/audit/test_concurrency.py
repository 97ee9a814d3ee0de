"""No fork, no gap, no lost entry: concurrent writers (committing, rolling back, killed mid-transaction)
with the background sealer running leave every org a gapless chain that verifies; and, as
properties over random entries, verification never false-alarms and catches any byte flipped."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from core.db import TenantSessions, app_url, libpq_url, make_engine
from domain import audit
from domain.audit import service
from domain.audit.chain import GENESIS, link, verify_rows
from domain.audit.checkpoints import CheckpointStore
from domain.audit.recorder import entry_body, entry_params
from domain.audit.sealer import Sealer
from domain.identity import service as identity
from domain.roles import Actor, RequestContext
from tests.audit.conftest import ALICE


class Rollback(Exception):
    pass


def _org(owner: TenantSessions) -> uuid.UUID:
    with owner.begin(None) as s:
        return identity.create_org(s, slug=f"conc-{secrets.token_hex(4)}", name="Concurrency Lab").id


def _chain(owner: TenantSessions, org: uuid.UUID) -> list[tuple[int, str]]:
    with owner.begin(None) as s:
        return [(r[0], r[1]) for r in s.execute(
            text("SELECT seq, entity_id FROM audit_log WHERE org_id = :o ORDER BY seq"), {"o": org}).all()]


def _wait_sealed(owner: TenantSessions, orgs: list[uuid.UUID], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with owner.begin(None) as s:
            left = s.execute(text("SELECT count(*) FROM audit_pending WHERE org_id = ANY(:o)"),
                             {"o": orgs}).scalar_one()
        if left == 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"{left} entries still pending after {timeout}s")


def _assert_gapless(owner: TenantSessions, platform: Any, org: uuid.UUID, committed: list[str], tmp: Any) -> None:
    chain = _chain(owner, org)
    assert [seq for seq, _ in chain] == list(range(1, len(chain) + 1)), "gap or duplicate seq"
    assert sorted(e for _, e in chain[1:]) == sorted(committed), "lost, duplicated or phantom entries"
    assert chain[0][1] == str(org)  # the org's own creation
    with platform.sessions.begin(org) as s:
        r = service.verify_org(s, org, store=CheckpointStore(tmp), keys={})
    assert r.ok and r.count == len(committed) + 1, r.problems


def _run(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()


def test_16_writers_one_org_with_the_sealer_running(owner, platform, tmp_path):
    org = _org(owner)
    committed: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def writer(w: int) -> None:
        try:
            start.wait()
            for k in range(30):
                eid = f"w{w:02d}-{k:03d}"
                with platform.sessions.begin(org) as s:
                    audit.record(s, org_id=org, actor=ALICE, action="update", entity_type="sample", entity_id=eid,
                                 after={"k": k, "w": w, "x": k / 7})
                committed.append(eid)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    sealer = Sealer(platform.sessions, interval_s=0.01).start()
    try:
        _run([threading.Thread(target=writer, args=(w,)) for w in range(16)])
        assert not errors, errors
        _wait_sealed(owner, [org])
    finally:
        sealer.stop()
    assert len(committed) == 16 * 30
    _assert_gapless(owner, platform, org, committed, tmp_path)


KILLED_WRITER = r"""
import sys, time, psycopg
url, org, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = psycopg.connect(url)
conn.execute("SELECT set_config('flasktrack.org_id', %s, true)", (org,))
for i in range(n):
    conn.execute(
        "INSERT INTO audit_pending (org_id, body, occurred_at, actor_type, actor_id, actor_display, action,"
        " entity_type, entity_id, severity) VALUES (%s, %s, now(), 'user', 'k', 'killed', 'update', 'sample', %s,"
        " 'info')", (org, b'{"never":"committed"}', f"killed-{i}"))
print("inside", flush=True)
time.sleep(600)
"""


def test_64_writers_many_orgs_rollbacks_and_killed_writers_leave_gapless_chains(owner, settings, platform, tmp_path):
    """64 writer threads over 4 orgs (at most 32 transactions open at once: the test server's
    connections are shared), every 5th transaction rolled back after writing its entry, one writer
    process SIGKILLed and one backend terminated while their transactions hold pending entries."""
    orgs = [_org(owner) for _ in range(4)]
    app = TenantSessions(make_engine(app_url(settings), pool_size=16))  # 16 + 16 overflow: 32 at most
    committed: dict[uuid.UUID, list[str]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(64)
    url = libpq_url(app_url(settings))

    # a writer process killed mid-transaction, holding uncommitted pending entries
    killed = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, url, str(orgs[0]), "3"],
                              stdout=subprocess.PIPE, text=True)
    # and a connection whose backend is terminated mid-transaction
    victim = psycopg.connect(url)
    victim.execute("SELECT set_config('flasktrack.org_id', %s, true)", (str(orgs[1]),))
    params = entry_params(entry_body(org_id=orgs[1], occurred_at=dt.datetime.now(dt.UTC), actor=ALICE,
                                     action="update", entity_type="sample", entity_id="terminated"))
    victim.execute("INSERT INTO audit_pending (org_id, body, occurred_at, actor_type, actor_id, actor_display, "
                   "action, entity_type, entity_id, severity) VALUES (%(org_id)s, %(body)s, %(occurred_at)s, "
                   "%(actor_type)s, %(actor_id)s, %(actor_display)s, %(action)s, %(entity_type)s, %(entity_id)s, "
                   "%(severity)s)", params)
    victim_pid = victim.info.backend_pid
    assert killed.stdout is not None and killed.stdout.readline().strip() == "inside"

    def writer(w: int) -> None:
        org = orgs[w % len(orgs)]
        rng = random.Random(w)
        try:
            start.wait()
            if w == 7:
                os.kill(killed.pid, signal.SIGKILL)  # mid-run, while the others write
            if w == 9:
                with owner.begin(None) as s:
                    s.execute(text("SELECT pg_terminate_backend(:p)"), {"p": victim_pid})
            for k in range(12):
                eid = f"w{w:02d}-{k:02d}"
                try:
                    with app.begin(org) as s:
                        audit.record(s, org_id=org, actor=Actor("user", f"u{w}", f"Writer {w}"), action="update",
                                     entity_type="sample", entity_id=eid, after={"k": k, "ratio": rng.random()},
                                     context=RequestContext(request_id=f"r{w}-{k}"))
                        if (w * 12 + k) % 5 == 0:
                            raise Rollback
                        if rng.random() < 0.3:
                            time.sleep(rng.random() / 200)  # hold the transaction open a little
                except Rollback:
                    continue
                with lock:
                    committed[org].append(eid)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    sealer = Sealer(platform.sessions, interval_s=0.01).start()
    try:
        _run([threading.Thread(target=writer, args=(w,)) for w in range(64)])
        assert not errors, errors
        assert killed.wait(timeout=30) == -signal.SIGKILL
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        victim.close()
        _wait_sealed(owner, orgs)
    finally:
        sealer.stop()
        if killed.poll() is None:
            killed.kill()
        app.engine.dispose()
    total = sum(len(v) for v in committed.values())
    assert total == 64 * 12 - sum(1 for w in range(64) for k in range(12) if (w * 12 + k) % 5 == 0)
    for org in orgs:
        _assert_gapless(owner, platform, org, committed[org], tmp_path)
    with owner.begin(None) as s:  # nothing of the killed or terminated transactions survived
        assert s.execute(text("SELECT count(*) FROM audit_log WHERE entity_id IN ('terminated') "
                              "OR entity_id LIKE 'killed-%'")).scalar_one() == 0


# ---------------------------------------------------------------- properties

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_column_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63) + 1, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)
_instant = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1),
                        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-7, minutes=-30))]))
_entry = st.fixed_dictionaries({
    "action": _column_text.filter(bool), "entity_type": _column_text.filter(bool), "entity_id": _column_text,
    "before": _json, "after": _json, "reason": st.none() | _column_text, "occurred_at": _instant,
    "actor": st.builds(Actor, st.sampled_from(["user", "api_key", "system"]), _column_text, _column_text),
    "severity": st.sampled_from(list(audit.Severity)),
    "context": st.builds(RequestContext, st.none() | _column_text, st.none() | _text, st.none() | _text,
                         st.none() | st.uuids().map(str)),
})


def _rows_as_stored(org: uuid.UUID, entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows verify_org streams for these entries, built the way the recorder and audit_seal build them."""
    out, prev = [], GENESIS
    for seq, e in enumerate(entries, start=1):
        p = entry_params(entry_body(org_id=org, **e))
        bh = hashlib.sha256(p["body"]).digest()
        ch = link(prev, seq, org, bh)
        out.append((seq, p["body"], bh, prev, ch, str(org), p["occurred_at"], p["actor_type"], p["actor_id"],
                    p["actor_display"], p["action"], p["entity_type"], p["entity_id"], p["severity"], p["reason"],
                    p["request_id"], p["api_key_id"]))
        prev = ch
    return out


@settings(max_examples=60, deadline=None)
@given(entries=st.lists(_entry, min_size=1, max_size=6), data=st.data())
def test_property_no_false_alarm_and_every_flipped_byte_is_caught(entries, data):
    org = uuid.uuid4()
    rows = _rows_as_stored(org, entries)
    r = verify_rows(str(org), rows)
    assert r.ok and r.count == len(rows), r.problems
    # any single byte of any body flipped
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    body = bytearray(rows[i][1])
    at = data.draw(st.integers(0, len(body) - 1), label="byte")
    body[at] ^= data.draw(st.integers(1, 255), label="xor")
    tampered = [*rows[:i], (rows[i][0], bytes(body), *rows[i][2:]), *rows[i + 1:]]
    r = verify_rows(str(org), tampered)
    assert not r.ok and r.first_problem is not None and r.first_problem.seq == i + 1, r.problems
    # any query column changed
    col = data.draw(st.integers(6, 16), label="column")
    new = data.draw(_column_text.filter(lambda v: v != rows[i][col]), label="value")
    edited = [*rows[:i], (*rows[i][:col], new, *rows[i][col + 1:]), *rows[i + 1:]]
    r = verify_rows(str(org), edited)
    assert not r.ok and r.first_problem is not None and r.first_problem.seq == i + 1, r.problems


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.tuples(_entry, st.booleans()), min_size=1, max_size=5))
def test_property_random_entries_through_the_database_verify(owner, platform, tmp_path, entries):
    """Random contents, some transactions rolled back, sealed by the database: verify never false-alarms."""
    org = _org(owner)
    kept = 0
    for e, commit in entries:
        e = {k: v for k, v in e.items() if k != "actor"}
        try:
            with platform.sessions.begin(org) as s:
                audit.record(s, org_id=org, actor=ALICE, **e)
                if not commit:
                    raise Rollback
            kept += 1
        except Rollback:
            pass
    with platform.sessions.begin(org) as s:
        r = service.verify_org(s, org, store=CheckpointStore(tmp_path), keys={})
    assert r.ok and r.count == kept + 1, r.problems
