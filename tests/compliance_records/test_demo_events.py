"""The demo lab's compliance story: a contamination closed through CAPA, and last month's rDNA audit finalized and
immutable; seeded once."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from core.db import TenantSessions
from flasktrack.demo import seed_demo
from flasktrack.demo_events import AUDIT_TITLE, CONTAMINATED_PLATE
from tests.samples.test_demo_lab import login


def test_the_demo_contamination_closed_through_capa_and_the_audit_is_final(client, owner: TenantSessions) -> None:
    seed_demo(owner)
    seed_demo(owner)  # a second start adds nothing
    h = login(client, "manager@demo.example.org")
    found = client.get("/api/v1/events", params={"kind": "contamination"}, headers=h).json()["items"]
    [event] = [e for e in found if CONTAMINATED_PLATE.split(",")[0] in e["title"] or e["source"] == "contamination"]
    detail = client.get(f"/api/v1/events/{event['id']}", headers=h).json()
    assert detail["status"] == "closed" and detail["source"] == "contamination"
    assert [a["status"] for a in detail["actions"]] == ["done", "done"]
    assert detail["signature"]["signer_name"] == "Maria Manager"

    auditor = login(client, "auditor@demo.example.org")
    [audit] = [a for a in client.get("/api/v1/audits", headers=auditor).json()["items"] if a["title"] == AUDIT_TITLE]
    assert audit["status"] == "finalized" and audit["outcome"] == "pass"
    findings = client.get(f"/api/v1/audits/{audit['id']}", headers=auditor).json()["findings"]
    assert [f["event_id"] for f in findings] == [event["id"]]
    with pytest.raises(sa_exc.DBAPIError, match="finalized"), owner.begin(None) as s:
        s.execute(text("UPDATE audits SET outcome = 'fail' WHERE id = :a"), {"a": audit["id"]})
