"""Helpers for the registry tests: make records over HTTP, read their audit trail."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from core.db import TenantSessions
from domain.roles import Role
from tests.support import Org

BASE = "/api/v1/registry"


def make(client: TestClient, org: Org, kind: str, name: str, role: Role = Role.lab_manager, **body: Any
         ) -> dict[str, Any]:
    r = client.post(f"{BASE}/{kind}", json={"name": name, **body}, headers=org.headers(role))
    assert r.status_code == 201, r.text
    return dict(r.json())


def trail(owner: TenantSessions, org: Org, entity_id: str) -> list[dict[str, Any]]:
    """The sealed audit entries about one entity, oldest first (bodies decoded)."""
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org.id})
        rows = s.execute(text("SELECT body FROM audit_log WHERE org_id = :o AND entity_id = :e ORDER BY seq"),
                         {"o": org.id, "e": entity_id}).all()
    return [json.loads(bytes(r.body)) for r in rows]


def actions(owner: TenantSessions, org: Org, action: str) -> list[dict[str, Any]]:
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org.id})
        rows = s.execute(text("SELECT body FROM audit_log WHERE org_id = :o AND action = :a ORDER BY seq"),
                         {"o": org.id, "a": action}).all()
    return [json.loads(bytes(r.body)) for r in rows]
