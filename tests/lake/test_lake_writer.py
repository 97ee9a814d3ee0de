"""The writer's commit retries (lake/writer.py): a commit that loses a race is decided again on the reloaded
table; one that keeps losing gives up after max_attempts."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from lake import writer
from lake.tables import SINK_APP_ID
from lake.writer import Append, CommitRetriesExhausted, Lake


def _rows(n: int) -> pa.Table:
    return pa.table({"org_id": ["org-1"] * n, "v": list(range(n))})


def _once(batch: int, data: pa.Table):
    def plan(dt: DeltaTable | None) -> Append | None:
        if dt is not None and (dt.transaction_version(SINK_APP_ID) or 0) >= batch:
            return None
        return Append(data, {SINK_APP_ID: batch})
    return plan


def test_a_lost_commit_race_is_decided_again_and_lands_once(tmp_path, monkeypatch):
    lake = Lake(str(tmp_path))
    real = writer.write_deltalake
    calls = []

    def racing(dt, data, **kwargs):
        calls.append(dt)
        if len(calls) == 1:  # another writer commits batch 1 first
            real(lake.uri("t"), data, mode="append", partition_by=["org_id"],
                 commit_properties=kwargs["commit_properties"])
            raise CommitFailedError("a concurrent commit won")
        return real(dt, data, **kwargs)

    monkeypatch.setattr(writer, "write_deltalake", racing)
    assert lake.append_once("t", _once(1, _rows(3))) is False  # decided again: batch 1 is there already
    assert DeltaTable(lake.uri("t")).to_pyarrow_table().num_rows == 3
    assert lake.append_once("t", _once(2, _rows(2))) is True
    assert DeltaTable(lake.uri("t")).to_pyarrow_table().num_rows == 5
    assert len(calls) == 2


def test_commits_that_keep_failing_give_up_after_max_attempts(tmp_path, monkeypatch):
    lake = Lake(str(tmp_path), max_attempts=3)
    lake.create("t", _rows(1).schema, None)  # commits only: creating the table is no attempt
    attempts = []

    def failing(dt, data, **kwargs):
        attempts.append(dt)
        raise CommitFailedError("always a conflict")

    monkeypatch.setattr(writer, "write_deltalake", failing)
    with pytest.raises(CommitRetriesExhausted):
        lake.append_once("t", _once(1, _rows(1)))
    assert len(attempts) == 3
