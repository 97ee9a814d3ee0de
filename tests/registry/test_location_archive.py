"""A storage location is archived only when nothing is stored in it or below it: the refusal names how many
samples (of how many batches) are still there and how many child locations it holds, and changes nothing."""

from __future__ import annotations

from sqlalchemy import text

from domain.roles import Role
from tests.registry.support import BASE, make, trail
from tests.samples.material import batch, sample
from tests.support import make_org


def test_a_location_storing_samples_below_it_is_not_archived(client, owner):
    org = make_org(owner, client)
    h = org.headers(Role.lab_manager)
    room = make(client, org, "location", "Room 2.14", attributes={"level": "room"},
                parent_id=make(client, org, "location", "Site", attributes={"level": "site"})["id"])
    freezer = make(client, org, "location", "Freezer A", parent_id=room["id"], attributes={"level": "freezer"})
    shelf = make(client, org, "location", "Shelf 1", parent_id=freezer["id"], attributes={"level": "shelf"})
    box = make(client, org, "location", "Box 3", parent_id=shelf["id"], attributes={"level": "box"})
    media = batch(client, org)
    stored = [sample(client, org, location_id=box["id"], batch_id=media["id"]),
              sample(client, org, location_id=box["id"], batch_id=media["id"]),
              sample(client, org, location_id=shelf["id"])]
    gone = sample(client, org, location_id=box["id"])  # disposed: no longer there
    r = client.post(f"/api/v1/samples/{gone['id']}/status", json={"status": "disposed", "reason": "autoclaved"},
                    headers=org.headers(Role.technician))
    assert r.status_code == 200, r.text

    r = client.post(f"{BASE}/location/{box['id']}/archive", json={"reason": "box emptied"}, headers=h)
    assert r.status_code == 409, r.text
    body = r.json()
    assert "2 samples of 1 batch" in body["detail"] and "0 child locations" in body["detail"]
    assert stored[0]["code"] in body["detail"] and gone["code"] not in body["detail"]
    assert body["reasons"] == ["samples: 2", "batches: 1", "child_locations: 0"]

    # The freezer: samples on its shelf and in the box on it (two levels down), one child location (the shelf).
    r = client.post(f"{BASE}/location/{freezer['id']}/archive", json={"reason": "defrosting"}, headers=h)
    assert r.status_code == 409
    assert r.json()["reasons"] == ["samples: 3", "batches: 1", "child_locations: 1"]
    assert "3 samples of 1 batch in it or in a location below it" in r.json()["detail"]

    # Nothing changed: not archived, still revision 1, no archive entry.
    for loc in (box, freezer):
        now = client.get(f"{BASE}/location/{loc['id']}", headers=h).json()
        assert not now["archived"] and now["revision"] == 1
        assert [e["action"] for e in trail(owner, org, loc["id"])] == ["create"]

    # Moved out (and the third one archived), the box is archived; then its shelf and freezer from the leaves up.
    tech = org.headers(Role.technician)
    for s in stored[:2]:
        r = client.post(f"/api/v1/samples/{s['id']}/moves", json={"to_location_id": room["id"], "reason": "out"},
                        headers=tech)
        assert r.status_code == 201, r.text
    assert client.post(f"/api/v1/samples/{stored[2]['id']}/archive", json={"reason": "gone"},
                       headers=h).status_code == 200
    for loc in (box, shelf, freezer):
        r = client.post(f"{BASE}/location/{loc['id']}/archive", json={"reason": "defrosting"}, headers=h)
        assert r.status_code == 200, r.text
    # The room still stores two samples.
    r = client.post(f"{BASE}/location/{room['id']}/archive", json={"reason": "x"}, headers=h)
    assert r.status_code == 409 and r.json()["reasons"] == ["samples: 2", "batches: 1", "child_locations: 0"]


def test_a_box_archived_with_samples_left_in_it_still_keeps_its_freezer(client, owner):
    """Samples left in a box archived before this rule still count for the freezer above it."""
    org = make_org(owner, client)
    h = org.headers(Role.lab_manager)
    room = make(client, org, "location", "Room", parent_id=make(client, org, "location", "Site", attributes={
        "level": "site"})["id"], attributes={"level": "room"})
    freezer = make(client, org, "location", "Freezer", parent_id=room["id"], attributes={"level": "freezer"})
    box = make(client, org, "location", "Box", parent_id=freezer["id"], attributes={"level": "box"})
    left = sample(client, org, location_id=box["id"])
    with owner.begin(org.id) as s:  # as an older version allowed
        s.execute(text("UPDATE registry_items SET archived_at = now() WHERE id = :i"), {"i": box["id"]})
    r = client.post(f"{BASE}/location/{freezer['id']}/archive", json={"reason": "x"}, headers=h)
    assert r.status_code == 409 and left["code"] in r.json()["detail"]
    assert r.json()["reasons"] == ["samples: 1", "batches: 0", "child_locations: 0"]
