"""A backup taken while the sink is busy (rows arriving, batches committing every 50 ms) restores to a database and a
lake that agree: after the restored sink drains, the lake holds exactly the rows the database snapshot had ever
received, each once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from core.config import Settings
from core.db import TenantSessions, make_engine
from flasktrack.backup import create_backup, restore_backup
from flasktrack.postgres import scratch_database, upgrade_schema
from lake.sink import Sink, SinkSettings
from lake.writer import Lake
from tests.lake.lakekit import Kit, step_event


def test_a_backup_beside_a_busy_sink_restores_every_row_exactly_once(database_url: str, tmp_path: Path) -> None:
    with scratch_database(database_url, "ft_bkl_src") as src_url, \
            scratch_database(database_url, "ft_bkl_dst") as dst_url:
        upgrade_schema(src_url)
        owner = TenantSessions(make_engine(src_url, pool_size=4))
        kit = Kit(owner, src_url, tmp_path / "src")
        org = kit.org()
        inserted: list[str] = []  # event ids, in commit order (one writer)
        stop = threading.Event()

        def technicians() -> None:
            i = 0
            while not stop.is_set():
                batch = [step_event(org, i=i + j) for j in range(20)]
                kit.insert("step_event", batch)
                inserted.extend(p["event_id"] for p in batch)
                i += 20
                time.sleep(0.005)

        sink = kit.spawn()
        writer = threading.Thread(target=technicians)
        writer.start()
        try:
            deadline = time.monotonic() + 60
            # The table's folder appears before its first commit: wait for the commit itself.
            first_commit = Path(kit.lake_uri) / "step_events" / "_delta_log" / f"{0:020d}.json"
            while not first_commit.exists() or kit.table("step_events", org).num_rows < 200:
                assert time.monotonic() < deadline, "the sink never wrote"
                time.sleep(0.1)
            committed_before = len(inserted)
            report = create_backup(kit.settings(), tmp_path / "backup")
            time.sleep(0.5)  # the sink goes on past the backup's lake versions
        finally:
            stop.set()
            writer.join()
            sink.terminate()
            sink.wait(30)
        assert report.tables["step_events"] >= 1
        owner.engine.dispose()

        restored = Settings(database_url=dst_url, data_dir=tmp_path / "dst", lake_uri=str(tmp_path / "dst" / "lake"))
        restore_backup(restored, tmp_path / "backup")
        dst_owner = TenantSessions(make_engine(dst_url, pool_size=2))
        Sink(dst_owner.engine, Lake(restored.resolved_lake_uri), SinkSettings()).drain()
        dst_owner.engine.dispose()

        back = Kit(dst_owner, dst_url, tmp_path / "dst").table("step_events", org)["event_id"].to_pylist()
        assert len(back) == len(set(back)), "a row reached the restored lake twice"
        assert committed_before <= len(back) <= len(inserted)
        assert sorted(back) == sorted(inserted[:len(back)]), "the restored lake is not the snapshot's rows"
