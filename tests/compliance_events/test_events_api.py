"""A compliance event's life through the API, each transition an Update on its workflow (dev server, real worker)."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from domain.roles import Role
from tests.compliance_events.support import PASSWORD, due, h, new_sample, raise_event, sample_id
from tests.runs.conftest import wait_for


def _seal_actions(owner, org_id, event_id: str) -> list[tuple[str, str]]:
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_id})
        return [(r.actor_display, r.action) for r in s.execute(text(
            "SELECT actor_display, action FROM audit_log WHERE org_id = :o AND entity_type = 'compliance_event'"
            " AND entity_id = :e ORDER BY seq"), {"o": org_id, "e": event_id})]


def test_an_event_goes_from_open_to_closed_through_capa(client, org_a, owner):
    plate = sample_id(client, org_a, "S-7")
    event = raise_event(client, org_a, samples=[plate])
    assert event["status"] == "open" and event["code"].startswith("CE-") and event["links"]["samples"] == [plate]
    path = f"/api/v1/events/{event['id']}"
    tech_id = str(org_a.users[Role.technician][0])

    r = client.post(f"{path}/investigate", json={"reason": "look at the cycle log"}, headers=h(org_a, Role.lab_manager))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "investigating"
    r = client.post(f"{path}/root-cause", json={
        "root_cause": "door seal worn", "actions": [
            {"kind": "corrective", "description": "replace the door seal", "owner_id": tech_id, "due_at": due(3)},
            {"kind": "preventive", "description": "monthly seal check", "owner_id": tech_id, "due_at": due(10)}]},
        headers=h(org_a, Role.lab_manager))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "capa" and body["root_cause"] == "door seal worn" and len(body["actions"]) == 2

    # Closing now is refused: the actions are not done.
    r = client.post(f"{path}/close", json={"password": PASSWORD}, headers=h(org_a, Role.lab_manager))
    assert r.status_code == 409, r.text

    for action in body["actions"]:  # the owner (a technician) does them
        r = client.post(f"{path}/actions/{action['id']}/complete", json={"note": "done"},
                        headers=h(org_a, Role.technician))
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "effectiveness_check"
    r = client.post(f"{path}/effectiveness", json={"effective": True, "note": "three cycles at 20 min"},
                    headers=h(org_a, Role.lab_manager))
    assert r.status_code == 200 and r.json()["effective"] is True

    r = client.post(f"{path}/close", json={"password": "wrong"}, headers=h(org_a, Role.lab_manager))
    assert r.status_code == 403
    r = client.post(f"{path}/close", json={"password": PASSWORD, "reason": "effective"},
                    headers=h(org_a, Role.lab_manager))
    assert r.status_code == 200, r.text
    closed = r.json()
    assert closed["status"] == "closed" and closed["closed_by_display"] == f"lab_manager of {org_a.slug}"
    assert closed["signature"]["meaning"] == "approved" and len(closed["signature"]["content_hash"]) == 64

    # Every transition is on record, by whoever made it.
    actions = wait_for(lambda: (a := _seal_actions(owner, org_a.id, event["id"])) and len(a) >= 8 and a)
    assert [a for _, a in actions] == ["raise", "investigate", "root_cause", "refuse", "complete_action",
                                       "complete_action", "effectiveness", "close"]
    # The workflow has ended; a further transition is refused.
    r = client.post(f"{path}/investigate", json={}, headers=h(org_a, Role.lab_manager))
    assert r.status_code == 409


def test_the_reporter_cannot_close_their_own_event(client, org_a):
    event = raise_event(client, org_a, role=Role.lab_manager)
    path = f"/api/v1/events/{event['id']}"
    manager_id = str(org_a.users[Role.lab_manager][0])
    assert client.post(f"{path}/investigate", json={}, headers=h(org_a, Role.lab_manager)).status_code == 200
    r = client.post(f"{path}/root-cause", json={"root_cause": "x", "actions": [
        {"kind": "corrective", "description": "fix", "owner_id": manager_id, "due_at": due(1)}]},
        headers=h(org_a, Role.lab_manager))
    action = r.json()["actions"][0]["id"]
    assert client.post(f"{path}/actions/{action}/complete", json={"note": "ok"},
                       headers=h(org_a, Role.lab_manager)).status_code == 200
    assert client.post(f"{path}/effectiveness", json={"effective": True, "note": "ok"},
                       headers=h(org_a, Role.lab_manager)).status_code == 200
    r = client.post(f"{path}/close", json={"password": PASSWORD}, headers=h(org_a, Role.lab_manager))
    assert r.status_code == 403 and "reported by you" in r.json()["detail"]
    r = client.post(f"{path}/close", json={"password": PASSWORD}, headers=h(org_a, Role.admin))
    assert r.status_code == 200 and r.json()["status"] == "closed"


def test_a_technician_raises_but_does_not_run_or_close_an_event(client, org_a):
    event = raise_event(client, org_a)
    path = f"/api/v1/events/{event['id']}"
    for step, body in (("investigate", {}), ("close", {"password": PASSWORD})):
        r = client.post(f"{path}/{step}", json=body, headers=h(org_a, Role.technician))
        assert r.status_code == 403 and "events.manage" in r.json()["detail"]
    r = client.post("/api/v1/events", json={"kind": "incident", "severity": "low", "title": "t", "description": "d"},
                    headers=h(org_a, Role.analyst))
    assert r.status_code == 403


def test_links_must_be_records_of_the_organization(client, org_a, org_b):
    theirs = sample_id(client, org_b, "S-7")
    r = client.post("/api/v1/events", json={"kind": "incident", "severity": "low", "title": "t", "description": "d",
                                            "links": {"samples": [theirs], "equipment": [str(uuid.uuid4())]}},
                    headers=h(org_a, Role.technician))
    assert r.status_code == 422
    assert len(r.json()["reasons"]) == 2


def test_a_sample_marked_contaminated_raises_a_contamination_event(client, org_a):
    plate = new_sample(client, org_a)
    r = client.post(f"/api/v1/samples/{plate['id']}/status", json={"status": "in_use", "reason": "plated"},
                    headers=h(org_a, Role.technician))
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/samples/{plate['id']}/status",
                    json={"status": "contaminated", "reason": "fungal colonies on day 3"},
                    headers=h(org_a, Role.technician))
    assert r.status_code == 200, r.text
    events = client.get("/api/v1/events", params={"kind": "contamination"}, headers=h(org_a, Role.lab_manager))
    mine = [e for e in events.json()["items"] if plate["code"] in e["title"]]
    assert len(mine) == 1 and mine[0]["source"] == "contamination" and mine[0]["reporter_id"] == "flasktrack"
    detail = client.get(f"/api/v1/events/{mine[0]['id']}", headers=h(org_a, Role.lab_manager)).json()
    assert detail["links"]["samples"] == [plate["id"]]
    # Its workflow starts on the first transition (or with the worker's watch).
    r = client.post(f"/api/v1/events/{mine[0]['id']}/investigate", json={}, headers=h(org_a, Role.lab_manager))
    assert r.status_code == 200 and r.json()["status"] == "investigating"
    # The lab managers have an alert about it.
    alerts = client.get("/api/v1/alerts", headers=h(org_a, Role.lab_manager)).json()["items"]
    assert any(mine[0]["code"] in a["title"] for a in alerts)


def test_event_endpoints_are_404_across_organizations(client, org_a, org_b):
    event = raise_event(client, org_a)
    path = f"/api/v1/events/{event['id']}"
    manager = h(org_b, Role.lab_manager)
    assert client.get(path, headers=manager).status_code == 404
    for step, body in (("investigate", {}), ("effectiveness", {"effective": True, "note": "n"}),
                       ("close", {"password": PASSWORD}),
                       ("actions", {"kind": "corrective", "description": "d",
                                    "owner_id": str(org_b.users[Role.technician][0]), "due_at": due(1)}),
                       (f"actions/{uuid.uuid4()}/complete", {"note": "n"}),
                       ("root-cause", {"root_cause": "r", "actions": [{
                           "kind": "corrective", "description": "d", "owner_id": str(org_b.users[Role.technician][0]),
                           "due_at": due(1)}]})):
        r = client.post(f"{path}/{step}", json=body, headers={**manager})
        assert r.status_code == 404, (step, r.status_code, r.text)
    assert all(e["id"] != event["id"] for e in client.get("/api/v1/events", headers=manager).json()["items"])
