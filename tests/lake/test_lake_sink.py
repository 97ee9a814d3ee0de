"""The sink moves each outbox topic into its typed, documented, org-partitioned Delta table."""

from __future__ import annotations

import datetime as dt
import threading
import time

import orjson
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from sqlalchemy import text

from lake.service import run_sink
from lake.sink import AnotherSinkActive
from lake.tables import SINK_APP_ID
from tests.lake.lakekit import field, form_payload, run_payload, step_event

FIELDS = [field("ph", "number", "pH", "pH"), field("cells", "integer", "Viable cells", "cells/mL"),
          field("sterile", "boolean", "Sterile"), field("notes", "text", "Notes"),
          field("medium", "choice", "Medium"), field("harvest_date", "date", "Harvest date"),
          field("read_at", "datetime", "Read at"), field("sample", "sample_ref", "Sample"),
          field("batch", "batch_ref", "Batch"), field("photo", "evidence_ref", "Photo")]
VALUES = {"ph": "7.25", "cells": 120000, "sterile": True, "notes": "clear", "medium": "DMEM",
          "harvest_date": "2024-05-01", "read_at": "2024-05-01T07:30:00.000000Z", "sample": "S-1",
          "batch": "B-9", "photo": None}


def test_every_topic_lands_typed_partitioned_and_documented(kit):
    org = kit.org()
    run_id = "r-" + org[:8]
    events = [step_event(org, run_id=run_id, i=i) for i in range(5)]
    kit.insert("step_event", events)
    kit.insert("run", [run_payload(org, run_id=run_id, revision=1), run_payload(org, run_id=run_id, revision=2)])
    kit.insert("form_submission", [form_payload(org, "cell_count", FIELDS, VALUES, run_id=run_id)])
    assert kit.sink().drain() >= 8
    assert kit.outbox(org) == []

    ev = kit.table("step_events", org)
    assert sorted(ev["event_id"].to_pylist()) == sorted(e["event_id"] for e in events)
    assert ev.schema.field("occurred_at").type == pa.timestamp("us", tz="UTC")
    assert orjson.loads(ev["detail"][0].as_py()).keys() == {"i", "note"}
    runs = kit.table("runs", org)
    assert sorted(runs["revision"].to_pylist()) == [1, 2]
    assert orjson.loads(runs["subjects"][0].as_py()) == [{"type": "sample", "id": "S-1"}]

    form = DeltaTable(f"{kit.lake_uri}/form_cell_count")
    assert form.metadata().partition_columns == ["org_id"]
    row = kit.table("form_cell_count", org).to_pylist()[0]
    assert row["ph"] == 7.25 and row["cells"] == 120000 and row["sterile"] is True and row["notes"] == "clear"
    assert row["harvest_date"] == dt.date(2024, 5, 1)
    assert row["read_at"] == dt.datetime(2024, 5, 1, 7, 30, tzinfo=dt.UTC)
    assert row["photo"] is None and row["sample"] == "S-1" and row["run_id"] == run_id
    schema = pa.schema(form.schema().to_arrow())
    types = {f.name: f.type for f in schema}
    assert types["ph"] == pa.float64() and types["cells"] == pa.int64() and types["harvest_date"] == pa.date32()
    assert types["read_at"] == pa.timestamp("us", tz="UTC") and types["medium"] == pa.string()
    meta = {f.name: f.metadata for f in form.schema().fields}
    assert meta["cells"]["comment"] == "Viable cells" and meta["cells"]["unit"] == "cells/mL"
    assert meta["submitted_at"]["comment"]
    assert "Viable cells" in form.metadata().description and "cell_count" in form.metadata().description
    assert DeltaTable(f"{kit.lake_uri}/step_events").metadata().description.startswith("Every step event")
    assert form.transaction_version(SINK_APP_ID) > 0


def test_malformed_rows_are_kept_in_sink_rejects_not_dropped(kit):
    org = kit.org()
    bad_int = form_payload(org, "rejects_demo", [field("n", "integer")], {"n": 1.5})
    bad_type = form_payload(org, "rejects_demo", [field("n", "duration")], {"n": "PT1H"})
    good = form_payload(org, "rejects_demo", [field("n", "integer")], {"n": 2})
    no_time = step_event(org)
    del no_time["occurred_at"]
    kit.insert("form_submission", [bad_int, bad_type, good])
    kit.insert("step_event", [no_time])
    kit.sink().drain()
    rejects = kit.table("sink_rejects", org)
    assert rejects.num_rows == 3
    kept = {orjson.loads(p).get("submission_id") or orjson.loads(p)["event_id"] for p in rejects["payload"].to_pylist()}
    assert kept == {bad_int["submission_id"], bad_type["submission_id"], no_time["event_id"]}
    assert any("integer" in e for e in rejects["error"].to_pylist())
    kept_forms = [orjson.loads(p) for p in rejects["payload"].to_pylist() if "submission_id" in orjson.loads(p)]
    assert all(p["fields"] and p["values"] for p in kept_forms), "rejected payloads are kept whole"
    assert kit.table("form_rejects_demo", org)["n"].to_pylist() == [2]
    assert kit.outbox(org) == []


def test_freshness_heartbeat_and_scheduled_maintenance_with_the_service_running(kit, monkeypatch):
    monkeypatch.setenv("FLASKTRACK_SINK_MAINTAIN_FIRST_AFTER_S", "1.5")
    monkeypatch.setenv("FLASKTRACK_SINK_MAINTAIN_SCAN_S", "0.2")
    stop = threading.Event()
    t = threading.Thread(target=run_sink, args=(kit.settings(), stop), daemon=True)
    t.start()
    try:
        org = kit.org()
        time.sleep(0.5)  # the sink is idle and polling
        e = step_event(org)
        inserted = time.monotonic()
        kit.insert("step_event", [e])
        seen = None
        while time.monotonic() - inserted < 5.0:
            try:
                if e["event_id"] in kit.table("step_events", org)["event_id"].to_pylist():
                    seen = time.monotonic() - inserted
                    break
            except Exception:  # noqa: BLE001 - table not created yet
                pass
            time.sleep(0.05)
        assert seen is not None and seen < 5.0, "a completed step was not queryable within 5 s"
        with kit.owner.begin(None) as s:
            beat = s.execute(text("SELECT max(at) FROM service_heartbeats WHERE service = 'sink'")).scalar()
        assert beat is not None
        checkpoint = kit.root / "lake" / "step_events" / "_delta_log" / "_last_checkpoint"
        # The table is maintained on the first scan after it exists (tables are scheduled one by one), so
        # this waits for that event; the bound only turns a hang into a failure.
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert checkpoint.exists(), "the scheduled maintenance did not run"
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()


def test_maintenance_is_per_table_a_failed_table_is_retried_soon_and_a_new_table_is_not_left_waiting(kit, monkeypatch):
    from lake import maintain

    org = kit.org()
    kit.insert("step_event", [step_event(org)])
    sink = kit.sink(maintain_retry_s=0.01, maintain_interval_s=86_400)
    sink.drain()
    real = maintain.maintain_table
    calls: list[str] = []

    def flaky(lake, name, **kw):
        calls.append(name)
        if name == "step_events" and calls.count(name) == 1:
            raise OSError("storage hiccup")
        return real(lake, name, **kw)

    monkeypatch.setattr(maintain, "maintain_table", flaky)
    first = sink.maintain_due(first_due=0.0)
    assert "step_events" not in first and first, "the other tables were maintained despite one failure"
    time.sleep(0.02)
    assert "step_events" in sink.maintain_due(first_due=0.0), "the failed table is retried soon"
    # A table created after the round is maintained at the next scan, not a day later.
    kit.insert("form_submission", [form_payload(org, "late_table", [field("n", "integer")], {"n": 1})])
    sink.drain()
    later = sink.maintain_due(first_due=0.0)
    assert "form_late_table" in later and "step_events" not in later
    assert not {"form_late_table", "step_events"} & set(sink.maintain_due(first_due=0.0)), "then a day's wait"


def test_one_active_sink_at_a_time(kit):
    a, b = kit.sink(), kit.sink()
    with a.leadership(wait=False), pytest.raises(AnotherSinkActive):
        b.drain()
    b.drain()  # released
