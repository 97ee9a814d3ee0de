"""Helpers for material tests: storage locations (inserted directly: the registry service lands beside this one),
samples and batches over the API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from core.db import TenantSessions
from domain.roles import Role
from tests.support import Org


def location(owner: TenantSessions, org_id: uuid.UUID, name: str | None = None) -> uuid.UUID:
    """A storage location of the org's registry."""
    ident = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    with owner.begin(org_id) as s:
        s.execute(text("INSERT INTO registry_items (id, org_id, kind, code, name, status, created_at, created_by,"
                       " updated_at) VALUES (:i, :o, 'location', :c, :n, 'active', :t, 'test', :t)"),
                  {"i": ident, "o": org_id, "c": f"LOC-{ident.hex[:8]}", "n": name or f"Freezer {ident.hex[:6]}",
                   "t": now})
    return ident


def sample(client: TestClient, org: Org, role: Role = Role.technician, **fields: Any) -> dict[str, Any]:
    body = {"sample_type": "culture", "name": f"culture {uuid.uuid4().hex[:6]}", **fields}
    r = client.post("/api/v1/samples", json=body, headers={**org.headers(role), "X-Request-ID": str(uuid.uuid4())})
    assert r.status_code == 201, r.text
    return r.json()


def batch(client: TestClient, org: Org, role: Role = Role.technician, **fields: Any) -> dict[str, Any]:
    body = {"batch_type": "media", "name": f"MS medium {uuid.uuid4().hex[:6]}", **fields}
    r = client.post("/api/v1/batches", json=body, headers={**org.headers(role), "X-Request-ID": str(uuid.uuid4())})
    assert r.status_code == 201, r.text
    return r.json()


def status(client: TestClient, org: Org, sample_id: str, to: str, reason: str = "bench work",
           role: Role = Role.technician) -> Any:
    return client.post(f"/api/v1/samples/{sample_id}/status", json={"status": to, "reason": reason},
                       headers=org.headers(role))


def seal(owner: TenantSessions, org_id: uuid.UUID) -> None:
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_id})
