"""Formal audits: scoped by an auditor, findings linked to evidence and events, finalized with the auditor's
signature; a finalized audit cannot change, not through the API and not as the database owner."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from domain.roles import Role
from tests.evidence.support import png, uploaded
from tests.support import PASSWORD


def _h(org, role: Role) -> dict[str, str]:
    return {**org.headers(role), "X-Request-ID": uuid.uuid4().hex}


def _event(client, org) -> str:
    r = client.post("/api/v1/events", json={"kind": "deviation", "severity": "low", "title": "Checklist skipped",
                                            "description": "rDNA checklist item not confirmed."},
                    headers=_h(org, Role.technician))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _audit(client, org, **extra) -> dict:
    today = dt.date.today()
    start = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    r = client.post("/api/v1/audits", json={"title": "rDNA work, last month", "framework": "NIH Guidelines",
                                            "period_start": start.isoformat(),
                                            "period_end": (today.replace(day=1) - dt.timedelta(days=1)).isoformat(),
                                            "labs": ["Plant transformation lab"], **extra},
                    headers=_h(org, Role.auditor))
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_an_auditor_finalizes_an_audit_which_then_cannot_change(client, org_a, owner):
    audit = _audit(client, org_a)
    assert audit["status"] == "draft" and audit["code"].startswith("AU-")
    photo = uploaded(client, org_a, png(uuid.uuid4().int % 65536))
    event = _event(client, org_a)
    path = f"/api/v1/audits/{audit['id']}"
    r = client.post(f"{path}/findings", json={"severity": "minor", "title": "Checklist item skipped",
                                              "description": "Run R-17 co-cultivation", "evidence": [photo["id"]],
                                              "event_id": event}, headers=_h(org_a, Role.auditor))
    assert r.status_code == 201, r.text
    assert r.json()["findings"][0]["number"] == 1 and r.json()["findings"][0]["event_id"] == event
    # Only its auditor records findings and finalizes (another auditor-capable role may not).
    r = client.post(f"{path}/findings", json={"severity": "observation", "title": "t", "description": "d"},
                    headers=_h(org_a, Role.admin))
    assert r.status_code == 403
    r = client.post(f"{path}/finalize", json={"outcome": "conditional", "summary": "one minor finding",
                                              "password": "wrong"}, headers=_h(org_a, Role.auditor))
    assert r.status_code == 403
    r = client.post(f"{path}/finalize", json={"outcome": "conditional", "summary": "one minor finding",
                                              "password": PASSWORD}, headers=_h(org_a, Role.auditor))
    assert r.status_code == 200, r.text
    final = r.json()
    assert final["status"] == "finalized" and final["outcome"] == "conditional"
    assert final["signature"]["meaning"] == "responsibility"
    assert final["signature"]["content_hash"] == final["content_hash"]

    # Through the API: nothing more.
    r = client.post(f"{path}/findings", json={"severity": "minor", "title": "late", "description": "d"},
                    headers=_h(org_a, Role.auditor))
    assert r.status_code == 409
    r = client.post(f"{path}/finalize", json={"outcome": "pass", "summary": "s", "password": PASSWORD},
                    headers=_h(org_a, Role.auditor))
    assert r.status_code == 409

    # As the database owner: the trigger refuses too, for the audit and its findings, even with replica role.
    for sql in ("UPDATE audits SET outcome = 'pass' WHERE id = :a",
                "DELETE FROM audits WHERE id = :a",
                "UPDATE audit_findings SET title = 'nothing' WHERE audit_id = :a",
                "DELETE FROM audit_findings WHERE audit_id = :a",
                "INSERT INTO audit_findings (id, org_id, audit_id, number, severity, title, description, created_at,"
                " created_by) SELECT gen_random_uuid(), org_id, id, 99, 'minor', 't', 'd', now(), 'x' FROM audits"
                " WHERE id = :a"):
        with pytest.raises(sa_exc.DBAPIError, match="finalized"), owner.begin(None) as s:
            s.execute(text("SET LOCAL session_replication_role = replica"))
            s.execute(text(sql), {"a": audit["id"]})
    with pytest.raises(sa_exc.DBAPIError, match="truncated"), owner.begin(None) as s:
        s.execute(text("TRUNCATE audit_findings"))
    assert client.get(path, headers=_h(org_a, Role.lab_manager)).json() == final

    # The content hash it signed is in the audit chain.
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_a.id})
        body = s.execute(text("SELECT convert_from(body, 'UTF8')::jsonb FROM audit_log WHERE org_id = :o AND"
                              " entity_type = 'audit' AND action = 'finalize' AND entity_id = :a"),
                         {"o": org_a.id, "a": audit["id"]}).scalar_one()
    assert body["after"]["content_hash"] == final["content_hash"]


def test_audit_scope_and_findings_link_only_to_the_organization(client, org_a, org_b):
    theirs = uploaded(client, org_b, png(uuid.uuid4().int % 65536))
    r = client.post("/api/v1/audits", json={"title": "t", "framework": "BMBL BSL-2", "period_start": "2026-11-01",
                                            "period_end": "2026-10-01"}, headers=_h(org_a, Role.auditor))
    assert r.status_code == 422
    r = client.post("/api/v1/audits", json={"title": "t", "framework": "BMBL BSL-2", "period_start": "2026-11-01",
                                            "period_end": "2026-11-30", "runs": [str(uuid.uuid4())]},
                    headers=_h(org_a, Role.auditor))
    assert r.status_code == 422
    audit = _audit(client, org_a)
    r = client.post(f"/api/v1/audits/{audit['id']}/findings", json={
        "severity": "major", "title": "t", "description": "d", "evidence": [theirs["id"]],
        "event_id": _event(client, org_b)}, headers=_h(org_a, Role.auditor))
    assert r.status_code == 422 and len(r.json()["reasons"]) == 2


def test_audit_endpoints_are_404_across_organizations(client, org_a, org_b):
    audit = _audit(client, org_a)
    path = f"/api/v1/audits/{audit['id']}"
    assert client.get(path, headers=_h(org_b, Role.auditor)).status_code == 404
    r = client.post(f"{path}/findings", json={"severity": "minor", "title": "t", "description": "d"},
                    headers=_h(org_b, Role.auditor))
    assert r.status_code == 404
    r = client.post(f"{path}/finalize", json={"outcome": "pass", "summary": "s", "password": PASSWORD},
                    headers=_h(org_b, Role.auditor))
    assert r.status_code == 404
    assert all(a["id"] != audit["id"] for a in client.get("/api/v1/audits", headers=_h(org_b, Role.auditor)).json()[
        "items"])


def test_auditors_conduct_audits_and_managers_read_them(client, org_a):
    body = {"title": "t", "framework": "f", "period_start": "2026-11-01", "period_end": "2026-11-30"}
    for role in (Role.lab_manager, Role.scientist, Role.technician, Role.analyst):
        r = client.post("/api/v1/audits", json=body, headers=_h(org_a, role))
        assert r.status_code == 403, role
    assert client.get("/api/v1/audits", headers=_h(org_a, Role.lab_manager)).status_code == 200
    assert client.get("/api/v1/audits", headers=_h(org_a, Role.technician)).status_code == 403
