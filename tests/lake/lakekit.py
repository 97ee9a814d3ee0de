"""Helpers for the lake tests: outbox payloads as the run engine writes them (the outbox contract in
lake/README.md), and a Kit bound to one test's lake folder on the shared test database."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from deltalake import DeltaTable
from sqlalchemy import text

from core.config import Settings
from core.db import TenantSessions
from domain.identity import service as identity
from lake.sink import Sink, SinkSettings
from lake.writer import Lake

ROOT = Path(__file__).resolve().parents[2]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def step_event(org: str, *, run_id: str | None = None, i: int = 0, event: str = "completed") -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "org_id": org, "run_id": run_id or str(uuid.uuid4()),
            "protocol_key": "cell-passage", "protocol_version": 1, "step_key": f"step_{i % 7}", "step_kind": "task",
            "event": event, "iteration": i % 3, "actor_type": "user", "actor_id": str(uuid.uuid4()),
            "actor_display": "Ada Lovelace", "occurred_at": now_iso(), "detail": {"i": i, "note": "ok"}}


def run_payload(org: str, *, run_id: str | None = None, revision: int = 1, status: str = "running") -> dict[str, Any]:
    return {"run_id": run_id or str(uuid.uuid4()), "org_id": org, "protocol_key": "cell-passage",
            "protocol_version": 1, "status": status, "launched_by": "ada", "launched_at": now_iso(),
            "updated_at": now_iso(), "ended_at": None, "subjects": [{"type": "sample", "id": "S-1"}],
            "parameters": {"passage": 3}, "time_scale": 1.0, "revision": revision}


def field(key: str, type_: str, label: str | None = None, unit: str | None = None,
          required: bool = False) -> dict[str, Any]:
    return {"key": key, "label": label or key.replace("_", " ").title(), "type": type_, "unit": unit,
            "required": required}


def form_payload(org: str, form_key: str, fields: list[dict[str, Any]], values: dict[str, Any], *,
                 version: int = 1, run_id: str | None = None, iteration: int = 0) -> dict[str, Any]:
    return {"submission_id": str(uuid.uuid4()), "org_id": org, "run_id": run_id or str(uuid.uuid4()),
            "protocol_key": "cell-passage", "protocol_version": version, "step_key": "measure",
            "form_key": form_key, "iteration": iteration, "submitted_by": "ada", "submitted_by_display": "Ada",
            "submitted_at": now_iso(), "fields": fields, "values": values}


@dataclass
class Kit:
    owner: TenantSessions
    database_url: str
    root: Path

    @property
    def lake_uri(self) -> str:
        return str(self.root / "lake")

    def lake(self) -> Lake:
        return Lake(self.lake_uri)

    def settings(self) -> Settings:
        return Settings(database_url=self.database_url, data_dir=self.root, lake_uri=self.lake_uri)

    def sink(self, **config: Any) -> Sink:
        return Sink(self.owner.engine, self.lake(), SinkSettings(**config))

    def org(self) -> str:
        with self.owner.begin(None) as s:
            return str(identity.create_org(s, slug=f"lake-{secrets.token_hex(4)}", name="Lake lab").id)

    def insert(self, topic: str, payloads: list[dict[str, Any]]) -> None:
        with self.owner.begin(None) as s:
            s.execute(text("INSERT INTO outbox (org_id, topic, payload) VALUES (:o, :t, CAST(:p AS jsonb))"),
                      [{"o": p["org_id"], "t": topic, "p": orjson.dumps(p).decode()} for p in payloads])

    def outbox(self, org: str) -> list[tuple[int, int | None]]:
        with self.owner.begin(None) as s:
            return [tuple(r) for r in s.execute(text("SELECT id, batch_id FROM outbox WHERE org_id = :o"),
                                                 {"o": org}).all()]

    def table(self, name: str, org: str | None = None) -> pa.Table:
        t = DeltaTable(f"{self.lake_uri}/{name}").to_pyarrow_table()
        return t.filter(pa.compute.equal(t["org_id"], org)) if org else t

    def spawn(self, fault: str | None = None, **env: str) -> subprocess.Popen[bytes]:
        """`flasktrack sink` in a fresh interpreter (deltalake must not be forked), configured by environment;
        with `fault`, the same service that dies at that fault point (tests/lake/crashing_sink.py)."""
        e = {**os.environ, "FLASKTRACK_DATABASE_URL": self.database_url, "FLASKTRACK_LAKE_URI": self.lake_uri,
             "FLASKTRACK_DATA_DIR": str(self.root), "FLASKTRACK_SINK_BATCH_MAX_AGE_S": "0.05",
             "FLASKTRACK_SINK_MAINTAIN_FIRST_AFTER_S": "3600", "FLASKTRACK_LOG_JSON": "true", **env}
        command = ["-m", "tests.lake.crashing_sink", fault] if fault else ["-m", "flasktrack.cli", "sink"]
        return subprocess.Popen([sys.executable, *command], cwd=ROOT, env=e,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
