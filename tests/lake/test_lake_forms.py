"""Typed form tables: every field type round-trips, new protocol versions evolve the table, a changed
field type gets its own column, and compaction changes no query result."""

from __future__ import annotations

import datetime as dt
import tempfile
from decimal import Decimal

import duckdb
import orjson
import pyarrow as pa
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lake.sink import OutboxRow, Part, prepare
from lake.tables import SINK_APP_ID, column_name
from lake.writer import Append, Lake
from tests.lake.lakekit import field, form_payload, step_event


def query(uri: str, sql: str, org: str) -> list[tuple]:
    """DuckDB over the Delta table's Arrow dataset, the way the Flight SQL server reads it."""
    con = duckdb.connect()
    con.register("t", DeltaTable(uri).to_pyarrow_dataset())
    return [tuple(r.values()) for r in con.sql(sql, params=[org]).to_arrow_table().to_pylist()]


def test_a_new_version_adds_a_column_and_old_rows_read_null(kit):
    org = kit.org()
    v1 = [field("ph", "number", "pH"), field("volume", "number", "Volume", "mL")]
    v2 = [*v1, field("operator", "text", "Operator")]
    kit.insert("form_submission", [form_payload(org, "evolve", v1, {"ph": "7.1", "volume": "2.5"}) for _ in range(3)])
    kit.sink().drain()
    uri = f"{kit.lake_uri}/form_evolve"
    sql = "SELECT submission_id, ph, volume FROM t WHERE org_id = ? ORDER BY submission_id"
    before = query(uri, sql, org)

    kit.insert("form_submission", [form_payload(org, "evolve", v2, {"ph": "6.9", "volume": "1", "operator": "Bo"},
                                                version=2)])
    kit.sink().drain()
    rows = query(uri, "SELECT operator, count(*) FROM t WHERE org_id = ? GROUP BY 1 ORDER BY 1 NULLS FIRST", org)
    assert rows == [(None, 3), ("Bo", 1)]
    assert [r for r in query(uri, sql, org) if r in before] == before  # old rows unchanged
    assert DeltaTable(uri).schema().fields[-1].metadata["comment"] == "Operator"


def test_a_changed_type_goes_to_its_own_column_never_coerced(kit):
    org = kit.org()
    v1 = [field("volume", "number", "Volume", "mL"), field("ph", "text", "pH")]
    v2 = [field("volume", "integer", "Volume", "µL"), field("ph", "choice", "pH")]  # ph: both strings
    kit.insert("form_submission", [form_payload(org, "retype", v1, {"volume": "2.5", "ph": "7"})])
    # A fresh table seeing both versions in one batch applies the same rule: the older version wins the name.
    kit.insert("form_submission", [form_payload(org, "retype", v2, {"volume": 250, "ph": "8"}, version=2)])
    kit.sink().drain()
    t = DeltaTable(f"{kit.lake_uri}/form_retype")
    types = {f.name: f.type for f in pa.schema(t.schema().to_arrow())}
    assert types["volume"] == pa.float64() and types["volume__integer"] == pa.int64() and types["ph"] == pa.string()
    rows = sorted(kit.table("form_retype", org).select(["protocol_version", "volume", "volume__integer", "ph"])
                  .to_pylist(), key=lambda r: r["protocol_version"])
    assert rows == [{"protocol_version": 1, "volume": 2.5, "volume__integer": None, "ph": "7"},
                    {"protocol_version": 2, "volume": None, "volume__integer": 250, "ph": "8"}]
    meta = {f.name: f.metadata for f in t.schema().fields}
    assert meta["volume__integer"]["unit"] == "µL" and meta["volume"]["unit"] == "mL"
    assert "volume__integer" in t.metadata().description


def test_full_payload_puts_the_fields_back():
    assert orjson.loads(OutboxRow(1, "o", "form_submission", "{}", "[]").full_payload()) == {"fields": []}
    row = OutboxRow(1, "o", "form_submission", '{"a": 1}', '[{"key": "x"}]')
    assert orjson.loads(row.full_payload()) == {"a": 1, "fields": [{"key": "x"}]}


def test_column_name_rule():
    taken = {"ph": pa.float64(), "notes": pa.string(), "org_id": pa.string()}
    assert column_name("ph", "number", taken) == "ph"
    assert column_name("ph", "integer", taken) == "ph__integer"
    assert column_name("notes", "sample_ref", taken) == "notes"  # same storage type: same column
    assert column_name("org_id", "text", taken) == "org_id__text"  # never a metadata column
    assert column_name("fresh", "date", taken) == "fresh"


def test_compaction_checkpoint_and_vacuum_keep_query_results(kit, monkeypatch):
    org = kit.org()
    kit.insert("step_event", [step_event(org, i=i) for i in range(200)])
    kit.sink(batch_rows=25).drain()  # 8 small batches: 8 files in this org's partition
    uri = f"{kit.lake_uri}/step_events"
    sql = ("SELECT step_key, iteration, count(*), min(occurred_at), max(event_id) FROM t WHERE org_id = ? "
           "GROUP BY ALL ORDER BY ALL")
    before = query(uri, sql, org)
    files_before = len(DeltaTable(uri).file_uris())
    version = DeltaTable(uri).transaction_version(SINK_APP_ID)

    args = ["lake", "maintain", "--table", "step_events", "--retention-hours", "0", "--allow-short-retention"]
    result = CliRunner().invoke(_cli(kit, monkeypatch), args)
    assert result.exit_code == 0, result.output
    assert "step_events: compacted" in result.output
    after = DeltaTable(uri)
    assert query(uri, sql, org) == before
    assert len(after.file_uris()) < files_before
    assert after.transaction_version(SINK_APP_ID) == version  # exactly-once state survives maintenance
    assert any(p.name.endswith(".checkpoint.parquet") for p in (kit.root / "lake/step_events/_delta_log").iterdir())

    more = [step_event(org, i=i) for i in range(10)]
    kit.insert("step_event", more)
    kit.sink().drain()
    assert query(uri, "SELECT count(*) FROM t WHERE org_id = ?", org) == [(210,)]


def _cli(kit, monkeypatch):
    import flasktrack.cli as cli

    monkeypatch.setattr(cli, "get_settings", kit.settings)
    monkeypatch.setattr(cli, "configure_logging", lambda *a: None)  # would bind loggers to CliRunner's stderr
    return cli.app


# ---------------------------------------------------------------- every field type round-trips

TS = "%Y-%m-%dT%H:%M:%S.%fZ"
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
VALUE_STRATEGIES = {
    "number": st.decimals(min_value=-10**12, max_value=10**12, places=4, allow_nan=False).map(lambda d: str(d)),
    "integer": st.integers(min_value=-2**63, max_value=2**63 - 1),
    "boolean": st.booleans(),
    "text": _text,
    "choice": _text,
    "date": st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2200, 12, 31)).map(dt.date.isoformat),
    "datetime": st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                             timezones=st.just(dt.UTC)).map(lambda d: d.strftime(TS)),
    "sample_ref": _text,
    "batch_ref": _text,
    "evidence_ref": _text,
}


def _expected(ftype: str, v):
    if v is None:
        return None
    if ftype == "number":
        return float(Decimal(v))
    if ftype == "date":
        return dt.date.fromisoformat(v)
    if ftype == "datetime":
        return dt.datetime.strptime(v, TS).replace(tzinfo=dt.UTC)
    return v


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({k: st.none() | s for k, s in VALUE_STRATEGIES.items()}), min_size=1,
                max_size=5))
def test_random_values_of_every_field_type_round_trip_through_delta(submissions):
    org = "00000000-0000-0000-0000-000000000001"
    fields = [field(f"f_{t}", t) for t in VALUE_STRATEGIES]
    payloads = [form_payload(org, "roundtrip", fields, {f"f_{t}": v for t, v in values.items()})
                for values in submissions]
    rows = [OutboxRow(i + 1, org, "form_submission", orjson.dumps(p).decode()) for i, p in enumerate(payloads)]
    parts = prepare(1, rows)
    assert set(parts) == {"form_roundtrip"}, parts.get("sink_rejects") and parts["sink_rejects"].fixed
    part: Part = parts["form_roundtrip"]
    with tempfile.TemporaryDirectory() as d:
        lake = Lake(d)
        lake.append_once("form_roundtrip", lambda t: Append(part.data(None)[0], {SINK_APP_ID: 1}))
        back = {r["submission_id"]: r for r in DeltaTable(f"{d}/form_roundtrip").to_pyarrow_table().to_pylist()}
    # The sink's claim splits the field definitions off (parsed once per form version): same result.
    split = [OutboxRow(r.id, r.org_id, r.topic, orjson.dumps({k: v for k, v in p.items() if k != "fields"}).decode(),
                       orjson.dumps(p["fields"]).decode()) for r, p in zip(rows, payloads, strict=True)]
    assert prepare(1, split)["form_roundtrip"].data(None)[0].equals(part.data(None)[0])
    assert orjson.loads(split[0].full_payload()) == payloads[0]
    for p in payloads:
        got = back[p["submission_id"]]
        for t in VALUE_STRATEGIES:
            assert got[f"f_{t}"] == _expected(t, p["values"][f"f_{t}"]), (t, p["values"][f"f_{t}"])
