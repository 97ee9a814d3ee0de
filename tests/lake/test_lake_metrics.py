"""The sink reports its lag (outbox depth and oldest age) and how long its Delta commits take."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.lake.lakekit import Kit, step_event


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_the_sink_reports_its_lag_and_commit_times(kit: Kit) -> None:
    org = kit.org()
    kit.insert("step_event", [step_event(org, i=i) for i in range(3)])
    sink = kit.sink(batch_rows=1000, batch_max_age_s=3600)
    due, _ = sink.due()
    assert not due  # three young rows: the batch stays open…
    assert sample("flasktrack_outbox_depth") >= 3  # … and the lag shows
    commits, rows = sample("flasktrack_delta_commit_seconds_count"), sample("flasktrack_lake_rows_total")
    assert sink.drain() >= 3
    assert sample("flasktrack_delta_commit_seconds_count") > commits
    assert sample("flasktrack_lake_rows_total") >= rows + 3
    sink.due()
    assert sample("flasktrack_outbox_oldest_age_seconds") < 3600
