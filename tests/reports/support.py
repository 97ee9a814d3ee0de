"""Helpers for the report tests: tissue-culture form rows in the outbox as the run engine writes them, drained into
the platform's lake."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from core.db import TenantSessions
from domain.roles import Role
from lake.sink import Sink, SinkSettings
from lake.writer import Lake
from tests.lake.lakekit import field, form_payload, run_payload
from tests.support import PASSWORD, Org

SUBCULTURE_FIELDS = [field("media_batch", "batch_ref", "Medium batch used"),
                     field("new_batch", "batch_ref", "New culture batch"),
                     field("vessels", "integer", "Vessels"),
                     field("explants_per_vessel", "integer", "Explants per vessel")]
SHOOT_FIELDS = [field("shoots", "integer", "Healthy shoots in the batch"),
                field("contaminated_vessels", "integer", "Contaminated vessels discarded"),
                field("growth_room_temp_c", "number", "Growth room temperature", "°C"),
                field("photoperiod_h", "integer", "Photoperiod", "h")]


def insert(owner: TenantSessions, topic: str, payloads: list[dict[str, Any]]) -> None:
    from tests.lake.lakekit import Kit

    Kit(owner, "", None).insert(topic, payloads)  # type: ignore[arg-type]


def subculture(owner: TenantSessions, org: Org, *, line: str, medium: str, operator: str, vessels: int,
               contaminated: int, month: str = "2026-10", iteration: int = 0, run_id: str | None = None) -> str:
    """One subculture and its shoot count in a run whose subject is `line` (the run's row included)."""
    run_id = run_id or str(uuid.uuid4())
    o = str(org.id)
    if iteration == 0:
        run = run_payload(o, run_id=run_id, status="completed")
        run.update(protocol_key="plant-tissue-subculture", subjects=[{"type": "batch", "id": line}])
        insert(owner, "run", [run])
    sub = form_payload(o, "plant_subculture", SUBCULTURE_FIELDS,
                       {"media_batch": medium, "new_batch": f"{line}-P{iteration + 1}", "vessels": vessels,
                        "explants_per_vessel": 5}, run_id=run_id, iteration=iteration)
    sub.update(protocol_key="plant-tissue-subculture", step_key="subculture", submitted_by_display=operator,
               submitted_at=f"{month}-0{iteration + 1}T10:00:00.000000Z")
    count = form_payload(o, "shoot_count", SHOOT_FIELDS,
                         {"shoots": vessels * 4, "contaminated_vessels": contaminated, "growth_room_temp_c": 24.5,
                          "photoperiod_h": 16}, run_id=run_id, iteration=iteration)
    count.update(protocol_key="plant-tissue-subculture", step_key="shoot_count",
                 submitted_at=f"{month}-2{iteration + 1}T10:00:00.000000Z")
    insert(owner, "form_submission", [sub, count])
    return run_id


def drain(owner: TenantSessions, lake_uri: str) -> None:
    Sink(owner.engine, Lake(lake_uri), SinkSettings()).drain()


def definition(client: TestClient, org: Org, role: Role, key: str) -> dict[str, Any]:
    r = client.get("/api/v1/reports/definitions", headers=org.headers(role))
    assert r.status_code == 200, r.text
    [d] = [d for d in r.json() if d["key"] == key]
    return d


def new_report(client: TestClient, org: Org, role: Role, key: str, parameters: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    d = definition(client, org, role, key)
    r = client.post("/api/v1/reports", headers=org.headers(role),
                    json={"definition_id": d["id"], "parameters": parameters or {}})
    assert r.status_code == 201, r.text
    return r.json()


def sign(meaning: str = "approved", reason: str = "checked against the raw records") -> dict[str, Any]:
    return {"signature": {"password": PASSWORD, "meaning": meaning, "reason": reason}}
