"""Liveness reports from long-running services into service_heartbeats."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from sqlalchemy import text

from core.db import TenantSessions

# Through its SECURITY DEFINER function: the application role cannot read or write the table itself.
_UPSERT = text("SELECT service_heartbeat(:s, :i)")


def beat(sessions: TenantSessions, service: str) -> None:
    with sessions.begin(None) as s:
        s.execute(_UPSERT, {"s": service, "i": f"{socket.gethostname()}:{os.getpid()}"})


def alive_file(service: str, folder: Path | str) -> Path:
    """Touched after each beat that reached the database, in the folder `FLASKTRACK_ALIVE_DIR` names: a container
    health check reads its age (docker-compose.yml sets /tmp), so a service that hangs or lost its database is
    restarted. Unset (a developer's machine), no file is written and nothing is left behind."""
    return Path(folder) / f"flasktrack-{service}.alive"


def start_heartbeat(sessions: TenantSessions, service: str, every_s: float = 5.0,
                    alive_dir: Path | None = None) -> threading.Event:
    """Report every few seconds from a daemon thread; set the returned event to stop."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                beat(sessions, service)
                if alive_dir is not None:
                    alive_file(service, alive_dir).touch()
            except Exception:  # noqa: BLE001, S110 - a missed beat shows as "down", which is the point
                pass
            stop.wait(every_s)

    threading.Thread(target=run, name=f"heartbeat-{service}", daemon=True).start()
    return stop
