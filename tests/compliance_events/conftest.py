"""Compliance event tests use the run tests' Temporal servers and worker: the dev server with the real worker
process (which serves the event workflow and the compliance watch) behind the API `client`, and the time-skipping
server for CAPA due times."""

from tests.runs.conftest import client, dev_env, skipping_env, temporal_api, worker_process

__all__ = ["client", "dev_env", "skipping_env", "temporal_api", "worker_process"]
