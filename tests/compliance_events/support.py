"""Helpers for compliance event tests."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from domain.roles import Role
from tests.support import PASSWORD, Org


def rid() -> dict[str, str]:
    return {"X-Request-ID": uuid.uuid4().hex}


def h(org: Org, role: Role) -> dict[str, str]:
    return {**org.headers(role), **rid()}


def sample_id(client: Any, org: Org, code: str = "S-1") -> str:
    r = client.get("/api/v1/samples", params={"q": code}, headers=org.headers(Role.lab_manager))
    return next(s["id"] for s in r.json()["items"] if s["code"] == code)


def new_sample(client: Any, org: Org) -> dict[str, Any]:
    r = client.post("/api/v1/samples", json={"sample_type": "plate", "name": f"plate {uuid.uuid4().hex[:6]}"},
                    headers=h(org, Role.technician))
    assert r.status_code == 201, r.text
    return r.json()


def raise_event(client: Any, org: Org, role: Role = Role.technician, **links: list[str]) -> dict[str, Any]:
    r = client.post("/api/v1/events", json={"kind": "deviation", "severity": "medium", "title": "Autoclave cycle short",
                                            "description": "Cycle ended at 15 min instead of 20.", "links": links},
                    headers=h(org, role))
    assert r.status_code == 201, r.text
    return r.json()


def due(days: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).isoformat()


__all__ = ["PASSWORD", "due", "h", "new_sample", "raise_event", "rid", "sample_id"]
