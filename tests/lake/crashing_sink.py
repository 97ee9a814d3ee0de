"""The crash tests' sink process: `flasktrack sink`, configured by environment the same way, that dies at one
fault point of a batch's life (lake/sink.py `FaultPoint`) as a killed process would: os._exit(70), with no
cleanup and nothing acknowledged.

    python -m tests.lake.crashing_sink between_tables
"""

from __future__ import annotations

import os
import sys
from typing import get_args

from core.config import get_settings
from core.logging import configure_logging
from lake.service import run_sink
from lake.sink import FaultHook, FaultPoint

CRASHED = 70  # the exit status the tests expect


def crash_at(point: str) -> FaultHook:
    if point not in get_args(FaultPoint):
        raise SystemExit(f"no fault point {point!r}; one of {', '.join(get_args(FaultPoint))}")

    def hook(reached: FaultPoint) -> None:
        if reached == point:
            sys.stderr.write(f"sink: injected fault at {point}\n")
            sys.stderr.flush()
            os._exit(CRASHED)

    return hook


if __name__ == "__main__":
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    run_sink(settings, fault_hook=crash_at(sys.argv[1]))
