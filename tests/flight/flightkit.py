"""Test kit: a small two-org lake, an in-test Authenticator, ADBC helpers."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
from deltalake import write_deltalake

from flight.auth import Principal, QueryEvent

ORG_A = str(uuid.UUID(int=0xA))
ORG_B = str(uuid.UUID(int=0xB))
ORG_C = str(uuid.UUID(int=0xC))  # an org with no data yet
PASSWORD = "correct horse battery staple"

USERS = {
    "ana@a.example": Principal(ORG_A, "analyst", "user", "user-ana", "Ana (analyst, A)"),
    "aud@a.example": Principal(ORG_A, "auditor", "user", "user-aud", "Aud (auditor, A)"),
    "tec@a.example": Principal(ORG_A, "technician", "user", "user-tec", "Tec (technician, A)"),
    "bob@b.example": Principal(ORG_B, "analyst", "user", "user-bob", "Bob (analyst, B)"),
    "cy@c.example": Principal(ORG_C, "admin", "user", "user-cy", "Cy (admin, C)"),
}
API_KEYS = {"ftak_b_owner_key": Principal(ORG_B, "owner", "api_key", "key-b1", "B's owner key")}


@dataclass
class RecordingAuthenticator:
    """Users by e-mail + PASSWORD, or username "apikey" + an API key; records every event."""

    events: list[tuple[Principal | None, QueryEvent]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, username: str, password: str, client_address: str | None) -> Principal | None:
        if username == "apikey":
            return API_KEYS.get(password)
        principal = USERS.get(username)
        return principal if principal is not None and password == PASSWORD else None

    def refresh(self, principal: Principal) -> Principal | None:
        return principal

    def record_query(self, principal: Principal | None, event: QueryEvent) -> None:
        with self._lock:
            self.events.append((principal, event))

    def events_for(self, sql: str) -> list[tuple[Principal | None, QueryEvent]]:
        with self._lock:
            return [(p, e) for p, e in self.events if e.sql == sql]

    def wait_for(self, sql: str, timeout: float = 5.0) -> list[tuple[Principal | None, QueryEvent]]:
        """Events are recorded when a stream ends, just after the client has its last batch."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events_for(sql)
            if found:
                return found
            time.sleep(0.01)
        return []


@dataclass(frozen=True)
class Lake:
    uri: str
    runs_v0_at: dt.datetime  # between the commits of runs version 0 and version 1
    created_at: dt.datetime  # before any table existed


def _comment(name: str, type_: pa.DataType, comment: str) -> pa.Field:
    return pa.field(name, type_, metadata={"comment": comment})


def build_lake(root: Path) -> Lake:
    created_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    lake = root / "lake"
    ts = pa.timestamp("us", tz="UTC")
    t0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)

    runs_schema = pa.schema(
        [
            _comment("org_id", pa.string(), "Organization (tenant) id"),
            _comment("run_id", pa.string(), "The protocol run"),
            _comment("status", pa.string(), "Run status"),
            pa.field("updated_at", ts),
        ]
    )
    runs_v0 = pa.table(
        {
            "org_id": [ORG_A, ORG_A, ORG_B, ORG_B],
            "run_id": ["a-run-1", "a-run-2", "b-run-1", "b-secret-run"],
            "status": ["completed", "running", "completed", "B-CONFIDENTIAL"],
            "updated_at": [t0, t0, t0, t0],
        },
        schema=runs_schema,
    )
    write_deltalake(str(lake / "runs"), runs_v0, partition_by=["org_id"], description="Protocol runs")
    time.sleep(0.05)
    runs_v0_at = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    runs_v1 = pa.table(
        {"org_id": [ORG_A], "run_id": ["a-run-3"], "status": ["running"], "updated_at": [t0]},
        schema=runs_schema,
    )
    write_deltalake(str(lake / "runs"), runs_v1, partition_by=["org_id"], mode="append")

    events = pa.table(
        {
            "org_id": [ORG_A, ORG_B],
            "event_id": ["a-ev-1", "b-ev-1"],
            "step_key": ["weigh", "weigh"],
            "occurred_at": pa.array([t0, t0], ts),
        }
    )
    write_deltalake(str(lake / "step_events"), events, partition_by=["org_id"])
    audit = pa.table({"org_id": [ORG_A, ORG_B], "seq": [1, 1], "action": ["create", "create"]})
    write_deltalake(str(lake / "audit_log"), audit, partition_by=["org_id"])

    form_schema = pa.schema(
        [
            _comment("org_id", pa.string(), "Organization (tenant) id"),
            _comment("run_id", pa.string(), "The protocol run"),
            _comment("ph", pa.float64(), "pH of the culture"),
            _comment("colony_count", pa.int64(), "Colonies counted"),
            _comment("submitted_at", ts, "When the form was submitted (UTC)"),
        ]
    )
    form_x = pa.table(
        {
            "org_id": [ORG_A, ORG_A, ORG_B],
            "run_id": ["a-run-1", "a-run-2", "b-run-1"],
            "ph": [7.1, 6.9, 1.0],
            "colony_count": [120, 80, 999_999],
            "submitted_at": [t0, t0, t0],
        },
        schema=form_schema,
    )
    write_deltalake(str(lake / "form_x"), form_x, partition_by=["org_id"], description="Form X: culture check")
    # A form only org B has ever used: org A must not even learn its columns.
    form_b = pa.table({"org_id": [ORG_B], "b_only_secret_column": ["B-CONFIDENTIAL"]})
    write_deltalake(str(lake / "form_bsecret"), form_b, partition_by=["org_id"])
    # A table nobody may read through Flight: not partitioned by org.
    write_deltalake(str(lake / "internal_state"), pa.table({"k": ["x"], "v": ["B-CONFIDENTIAL"]}))

    # A form whose definition grew a field: older files lack the column.
    evolving = str(lake / "form_evolving")
    write_deltalake(evolving, pa.table({"org_id": [ORG_A, ORG_B], "n": [1, 2]}), partition_by=["org_id"])
    grown = pa.table({"org_id": [ORG_A], "n": [3], "grade": ["B"]})
    write_deltalake(evolving, grown, partition_by=["org_id"], mode="append", schema_mode="merge")

    # Enough of org A's rows to need several batches.
    n = 50_000
    big = pa.table(
        {
            "org_id": pa.array([ORG_A] * n),
            "i": pa.array(range(n), pa.int64()),
            "label": pa.array([f"row-{i}" for i in range(n)]),
        }
    )
    write_deltalake(str(lake / "form_big"), big, partition_by=["org_id"])
    return Lake(str(lake), runs_v0_at, created_at)


def connect(uri: str, username: str, password: str = PASSWORD) -> Any:
    return flight_sql.connect(uri, db_kwargs={"username": username, "password": password}, autocommit=True)


def query(conn: Any, sql: str) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()
