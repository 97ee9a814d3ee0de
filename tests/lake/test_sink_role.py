"""The sink connects as its own role, flasktrack_sink, which can move every organization's outbox rows and read
the sealed audit log, and nothing else: no other table, no insert into the outbox, no change of a payload."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from lake.service import build_sink
from tests.lake.lakekit import step_event


def test_the_sink_moves_every_orgs_rows_as_its_own_role(kit):
    orgs = [kit.org(), kit.org()]
    for org in orgs:
        kit.insert("step_event", [step_event(org, i=i) for i in range(3)])
    sink = build_sink(kit.settings())
    try:
        with sink.engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == "flasktrack_sink"
        assert sink.drain() >= 6
    finally:
        sink.engine.dispose()
    assert all(kit.outbox(org) == [] for org in orgs)
    assert {r["org_id"] for r in kit.table("step_events").to_pylist()} >= set(orgs)


@pytest.mark.parametrize("statement", [
    "SELECT count(*) FROM users",
    "SELECT count(*) FROM runs",
    "UPDATE outbox SET payload = '{}'::jsonb",
    "INSERT INTO outbox (org_id, topic, payload) SELECT org_id, topic, payload FROM outbox LIMIT 1",
    "DELETE FROM audit_log",
    "UPDATE audit_heads SET seq = 0",
])
def test_the_sink_role_can_do_nothing_else(kit, statement):
    sink = build_sink(kit.settings())
    try:
        with sink.engine.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text(statement))
    finally:
        sink.engine.dispose()
