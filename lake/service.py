"""`flasktrack sink`: the lake sink as a service.

Connects as its own least-privilege role, flasktrack_sink (migration 0020; core/db.py `sink_url`): it reads,
claims and deletes outbox rows of every org and reads the sealed audit log, and can do nothing else.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog

from core import metrics
from core.config import Settings
from core.db import TenantSessions, make_engine, sink_url
from core.heartbeat import start_heartbeat
from lake.sink import FaultHook, Sink, SinkSettings
from lake.writer import Lake

log = structlog.get_logger("flasktrack.sink")


def build_sink(settings: Settings, config: SinkSettings | None = None, *, fault_hook: FaultHook | None = None) -> Sink:
    return Sink(make_engine(sink_url(settings), pool_size=3), Lake.from_settings(settings), config,
                fault_hook=fault_hook)


def run_sink(settings: Settings, stop: threading.Event | None = None, *, fault_hook: FaultHook | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set): the batch in flight is finished, then the sink exits.
    `fault_hook`: the crash tests' seam (lake/sink.py), None in production."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("stopping the sink", signal=signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    sink = build_sink(settings, fault_hook=fault_hook)
    beats = start_heartbeat(TenantSessions(sink.engine), "sink", alive_dir=settings.alive_dir)
    metrics.serve(settings.metrics_host, settings.sink_metrics_port)
    log.info("lake sink starting", lake=sink.lake.root, batch_rows=sink.config.batch_rows,
             batch_max_age_s=sink.config.batch_max_age_s)
    try:
        sink.run(stop)
    finally:
        beats.set()
        sink.engine.dispose()
        log.info("lake sink stopped", batches=sink.batches, rows=sink.rows)
