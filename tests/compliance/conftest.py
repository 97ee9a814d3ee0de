"""Compliance tests run protocols: the run tests' Temporal servers, workers and API client (tests/runs/conftest.py)."""

from tests.runs.conftest import (  # noqa: F401 - fixtures
    client,
    dev_env,
    skipping_env,
    skipping_worker,
    temporal_api,
    worker_process,
)
