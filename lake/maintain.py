"""Lake housekeeping: compaction, checkpoints, vacuum.

The sink commits about once a second per active table, so files stay small; compaction rewrites each
partition's small files into a few large ones (same rows, same query results; app transaction versions
survive it). A checkpoint lets readers load the table without replaying the whole log. Vacuum deletes
files no version within the retention window refers to: the retention is how far back time travel
works (default 720 h = 30 days). Versions finalized reports read are kept whatever the retention (`pinned`: table →
oldest pinned version, from domain.reports.service.pinned_versions): the vacuum's retention is stretched back to the
pinned version's commit, and the table's expired log files are kept, so time travel to it still works.

Runs inside the sink service on a schedule (FLASKTRACK_SINK_MAINTAIN_INTERVAL_S, daily by default) and
on demand as `flasktrack lake maintain`. Safe beside a running sink: compaction and vacuum do not
conflict with appends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from lake.writer import Lake

log = structlog.get_logger("flasktrack.lake")

DEFAULT_RETENTION_HOURS = 720


@dataclass(frozen=True)
class TableReport:
    table: str
    version: int
    files_removed: int  # by compaction
    files_added: int
    vacuumed: int  # files deleted by vacuum
    seconds: float

    def summary(self) -> str:
        return (f"{self.table}: compacted {self.files_removed} files into {self.files_added}, checkpoint at "
                f"version {self.version}, vacuumed {self.vacuumed} files ({self.seconds:.2f} s)")


def pinned_retention_hours(dt: DeltaTable, version: int, retention_hours: int) -> int:
    """The retention that keeps `version` readable: at least back to its commit (plus an hour)."""
    for entry in dt.history():
        if entry.get("version") == version and entry.get("timestamp"):
            age_h = (time.time() * 1000 - float(entry["timestamp"])) / 3_600_000
            return max(retention_hours, math.ceil(age_h) + 1)
    return max(retention_hours, 24 * 365 * 100)  # the version's commit is not in the log: keep everything


def maintain_table(lake: Lake, name: str, *, retention_hours: int = DEFAULT_RETENTION_HOURS,
                   enforce_retention: bool = True, attempts: int = 5, pinned: int | None = None) -> TableReport:
    """Compact, checkpoint and vacuum one table. `enforce_retention=False` allows a retention shorter
    than the table's `delta.deletedFileRetentionDuration` (7 days by default)."""
    started = time.perf_counter()
    for attempt in range(attempts):
        dt = lake.open(name)
        if dt is None:
            raise FileNotFoundError(name)
        try:
            metrics = dt.optimize.compact()
            break
        except CommitFailedError:
            lake.forget(name)  # a concurrent commit touched the same files: recompute
            time.sleep(0.05 * (attempt + 1))
    else:
        metrics = {"numFilesRemoved": 0, "numFilesAdded": 0}
        log.warning("compaction gave up after conflicts", table=name)
    dt = lake.open(name)
    assert dt is not None
    dt.create_checkpoint()
    if pinned is None:
        dt.cleanup_metadata()  # log files past delta.logRetentionDuration (30 days by default)
    else:  # a finalized report reads this table at `pinned`: its files and its log stay
        retention_hours = pinned_retention_hours(dt, pinned, retention_hours)
    removed = dt.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=enforce_retention)
    return TableReport(name, dt.version(), int(metrics.get("numFilesRemoved", 0)),
                       int(metrics.get("numFilesAdded", 0)), len(removed), time.perf_counter() - started)


def maintain_lake(lake: Lake, *, tables: Iterable[str] | None = None, retention_hours: int = DEFAULT_RETENTION_HOURS,
                  enforce_retention: bool = True, pinned: Mapping[str, int] | None = None) -> list[TableReport]:
    """Maintain every table of the lake (or the named ones), keeping the `pinned` versions (table → version)."""
    reports = []
    for name in tables if tables is not None else lake.tables():
        r = maintain_table(lake, name, retention_hours=retention_hours, enforce_retention=enforce_retention,
                           pinned=(pinned or {}).get(name))
        log.info("table maintained", table=name, files_removed=r.files_removed, files_added=r.files_added,
                 vacuumed=r.vacuumed, version=r.version)
        reports.append(r)
    return reports
