"""A registry record's life over HTTP: created, changed, archived and restored, each on record with before, after
and reason; stale changes refused; the storage tree's levels; who may do what; nothing of another organization."""

from __future__ import annotations

import uuid

from domain.roles import Role
from tests.registry.support import BASE, actions, make, trail
from tests.support import make_org


def test_a_strain_created_changed_archived_and_restored_is_on_record(client, owner):
    org = make_org(owner, client)
    h = org.headers(Role.lab_manager)
    species = make(client, org, "species", "Agrobacterium tumefaciens", attributes={"risk_group": 1})
    strain = make(client, org, "strain", "EHA105", parent_id=species["id"], reason="received from the stock centre",
                  attributes={"risk_group": 1, "genotype": "C58 background, disarmed Ti plasmid", "gmo": True})
    assert strain["code"].startswith("ST-") and strain["revision"] == 1 and strain["status"] == "active"
    assert strain["attributes"]["risk_group"] == 1 and strain["attributes"]["source"] is None

    url = f"{BASE}/strain/{strain['id']}"
    r = client.patch(url, json={"revision": 1, "reason": "sequencing confirmed the genotype",
                                "attributes": {"genotype": "C58C1 pEHA105"}}, headers=h)
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["revision"] == 2 and changed["attributes"]["genotype"] == "C58C1 pEHA105"
    assert changed["attributes"]["gmo"] is True  # keys not given stay as they were
    assert r.headers["etag"] == '"2"'

    r = client.post(f"{url}/archive", json={"reason": "stock discarded after contamination"}, headers=h)
    assert r.status_code == 200 and r.json()["archived"] and r.json()["revision"] == 3
    listed = client.get(f"{BASE}/strain", headers=h).json()["items"]
    assert strain["id"] not in [i["id"] for i in listed]  # hidden from lists by default
    shown = client.get(f"{BASE}/strain", params={"archived": "include"}, headers=h).json()["items"]
    assert strain["id"] in [i["id"] for i in shown]
    assert client.get(url, headers=h).json()["archived"]  # still there, never deleted
    stale_change = client.patch(url, json={"revision": 3, "reason": "x", "name": "EHA105 b"}, headers=h)
    assert stale_change.status_code == 409 and "restore" in stale_change.json()["detail"]
    assert client.post(f"{url}/archive", json={"reason": "again"}, headers=h).status_code == 409

    r = client.post(f"{url}/restore", json={"reason": "backup vial found in freezer 2"}, headers=h)
    assert r.status_code == 200 and not r.json()["archived"] and r.json()["revision"] == 4

    entries = trail(owner, org, strain["id"])
    assert [e["action"] for e in entries] == ["create", "update", "archive", "restore"]
    assert [e["reason"] for e in entries] == ["received from the stock centre", "sequencing confirmed the genotype",
                                              "stock discarded after contamination", "backup vial found in freezer 2"]
    create, update, archive, restore = entries
    assert create["before"] is None and create["after"]["code"] == strain["code"]
    assert update["before"]["attributes"]["genotype"] == "C58 background, disarmed Ti plasmid"
    assert update["after"]["attributes"]["genotype"] == "C58C1 pEHA105"
    assert archive["before"]["archived_at"] is None and archive["after"]["archived_at"] is not None
    assert restore["after"]["archived_at"] is None and restore["after"]["revision"] == 4
    assert all(e["entity"]["type"] == "registry_item" for e in entries)
    assert create["actor"]["id"] == str(org.users[Role.lab_manager][0])


def test_a_stale_change_is_refused_and_overwrites_nothing(client, owner):
    org = make_org(owner, client)
    h = org.headers(Role.lab_manager)
    eq = make(client, org, "equipment", "Autoclave 1", attributes={"calibration_due": "2027-03-01"})
    url = f"{BASE}/equipment/{eq['id']}"
    first = client.patch(url, json={"revision": 1, "reason": "calibrated", "attributes": {
        "calibration_due": "2028-03-01"}}, headers=h)
    assert first.status_code == 200
    # A second person, still looking at revision 1, takes it out of service.
    second = client.patch(url, json={"revision": 1, "reason": "pressure fault", "status": "out_of_service"},
                          headers=h)
    assert second.status_code == 409 and second.json()["reasons"] == ["revision: 2"]
    by_etag = client.patch(url, json={"revision": 2, "reason": "pressure fault", "status": "out_of_service"},
                           headers={**h, "If-Match": '"1"'})
    assert by_etag.status_code == 409
    now = client.get(url, headers=h).json()
    assert now["status"] == "in_service" and now["attributes"]["calibration_due"] == "2028-03-01"
    assert now["revision"] == 2
    assert [e["action"] for e in trail(owner, org, eq["id"])] == ["create", "update"]
    ok = client.patch(url, json={"revision": 2, "reason": "pressure fault", "status": "out_of_service"},
                      headers={**h, "If-Match": '"2"'})
    assert ok.status_code == 200 and ok.json()["status"] == "out_of_service"
    bad = client.patch(url, json={"revision": 3, "reason": "x", "status": "broken"}, headers=h)
    assert bad.status_code == 422 and "in_service" in bad.text


def test_the_storage_tree_takes_only_the_levels_it_has(client, owner):
    org = make_org(owner, client)
    h = org.headers(Role.admin)

    def loc(name, level, parent=None):
        return client.post(f"{BASE}/location", json={"name": name, "parent_id": parent, "attributes": {
            "level": level}}, headers=h)

    site = loc("Main site", "site").json()
    room = loc("Room 2.14", "room", site["id"]).json()
    freezer = loc("Freezer -80 A", "freezer", room["id"]).json()
    shelf = loc("Shelf 3", "shelf", freezer["id"]).json()
    box = loc("Box 12", "box", shelf["id"]).json()
    position = loc("A1", "position", box["id"])
    assert position.status_code == 201, position.text
    assert loc("Dry shelf", "shelf", room["id"]).status_code == 201  # a shelf on a room's wall
    assert loc("Box in freezer", "box", freezer["id"]).status_code == 201

    box_in_room = loc("Box 13", "box", room["id"])
    assert box_in_room.status_code == 422
    assert box_in_room.json()["reasons"] == [f"parent_id: {room['code']} is a room; a box sits in a freezer or a shelf"]
    assert loc("Room 9", "room").status_code == 422  # a room sits in a site
    assert loc("Second site", "site", site["id"]).status_code == 422
    assert loc("Box 12", "box", shelf["id"]).status_code == 409  # one name per parent
    assert loc("Box 12", "box", freezer["id"]).status_code == 201  # another parent: fine
    not_a_location = make(client, org, "plasmid", "pCAMBIA1300", attributes={"backbone": "pCAMBIA"})
    assert loc("Room 10", "room", not_a_location["id"]).status_code == 422

    # A freezer holding shelves cannot become a box; nor be archived while it holds anything.
    r = client.patch(f"{BASE}/location/{freezer['id']}", json={"revision": 1, "reason": "x",
                                                                "attributes": {"level": "box"}}, headers=h)
    assert r.status_code == 422, r.text
    r = client.post(f"{BASE}/location/{freezer['id']}/archive", json={"reason": "defrosted"}, headers=h)
    assert r.status_code == 409 and shelf["code"] in r.json()["detail"]
    # Archived from the leaves up; restored from the top down.
    for item in (position.json(), box):
        assert client.post(f"{BASE}/location/{item['id']}/archive", json={"reason": "box emptied"},
                           headers=h).status_code == 200
    r = client.post(f"{BASE}/location/{position.json()['id']}/restore", json={"reason": "oops"}, headers=h)
    assert r.status_code == 409 and box["code"] in r.json()["detail"]
    assert loc("A2", "position", box["id"]).status_code == 422  # nothing new goes into an archived box
    filtered = client.get(f"{BASE}/location", params={"level": "shelf"}, headers=h).json()["items"]
    assert {i["name"] for i in filtered} == {"Shelf 3", "Dry shelf"}
    inside = client.get(f"{BASE}/location", params={"parent_id": room["id"]}, headers=h).json()["items"]
    assert {i["name"] for i in inside} == {"Freezer -80 A", "Dry shelf"}
    wrong = client.get(f"{BASE}/location", params={"expiry_before": "2030-01-01"}, headers=h)
    assert wrong.status_code == 422 and wrong.json()["reasons"][0].startswith("expiry_before: filters lot")


def test_kind_specific_filters(client, owner):
    org = make_org(owner, client)
    h = org.headers(Role.admin)
    supplier = make(client, org, "supplier", "Duchefa", status="approved")
    ms = make(client, org, "ingredient", "MS basal salts", attributes={"supplier_id": supplier["id"],
                                                                      "storage_conditions": "2–8 °C",
                                                                      "hazards": ["irritant"]})
    for number, expiry in (("A1", "2026-01-31"), ("A2", "2027-06-30"), ("A3", None)):
        make(client, org, "lot", f"MS lot {number}", parent_id=ms["id"],
             attributes={"lot_number": number, "expiry_date": expiry, "supplier_id": supplier["id"]})
    soon = client.get(f"{BASE}/lot", params={"expiry_before": "2027-01-01"}, headers=h).json()["items"]
    assert [i["attributes"]["lot_number"] for i in soon] == ["A1"]
    by_supplier = client.get(f"{BASE}/lot", params={"supplier_id": supplier["id"]}, headers=h).json()["items"]
    assert len(by_supplier) == 3
    make(client, org, "equipment", "Hood 1", attributes={"calibration_due": "2026-12-01",
                                                          "maintenance_due": "2027-05-01"})
    make(client, org, "equipment", "Hood 2", attributes={"calibration_due": "2027-12-01"})
    due = client.get(f"{BASE}/equipment", params={"calibration_due_before": "2027-01-01"}, headers=h).json()
    assert [i["name"] for i in due["items"]] == ["Hood 1"]
    r = client.post(f"{BASE}/lot", json={"name": "bad", "parent_id": ms["id"], "attributes": {
        "lot_number": "A4", "expiry_date": "31/12/2027", "colour": "blue"}}, headers=h)
    assert r.status_code == 422
    assert {x.split(":")[0] for x in r.json()["reasons"]} == {"attributes.expiry_date", "attributes.colour"}
    r = client.post(f"{BASE}/strain", json={"name": "no species", "attributes": {"risk_group": 5}}, headers=h)
    assert r.status_code == 422


def test_a_technician_reads_but_does_not_write_and_the_attempts_are_on_record(client, owner):
    org = make_org(owner, client)
    plasmid = make(client, org, "plasmid", "pGreen", attributes={"backbone": "pGreenII"})
    tech = org.headers(Role.technician)
    url = f"{BASE}/plasmid/{plasmid['id']}"
    assert client.get(url, headers=tech).status_code == 200
    assert client.get(f"{url}/label", headers=tech).status_code == 200
    assert client.get(f"{BASE}/lookup/{plasmid['code']}", headers=tech).status_code == 200
    attempts = [
        client.post(f"{BASE}/plasmid", json={"name": "pX", "attributes": {"backbone": "b"}}, headers=tech),
        client.patch(url, json={"revision": 1, "reason": "x", "name": "pGreen2"}, headers=tech),
        client.post(f"{url}/archive", json={"reason": "x"}, headers=tech),
        client.post(f"{url}/restore", json={"reason": "x"}, headers=tech),
        client.post(f"{BASE}/plasmid/import", content=b"name,backbone\npY,b\n",
                    headers={**tech, "Content-Type": "text/csv"}),
    ]
    assert [r.status_code for r in attempts] == [403] * 5
    assert all("registry.write" in r.json()["detail"] for r in attempts)
    assert client.get(url, headers=tech).json()["revision"] == 1
    denials = [e for e in actions(owner, org, "deny") if "/registry/" in e["entity"]["id"]]
    assert len(denials) == 5 and {e["actor"]["id"] for e in denials} == {str(org.users[Role.technician][0])}
    assert client.get(f"{BASE}/plasmid", headers=org.headers(Role.analyst)).status_code == 403


def test_nothing_of_another_organization_is_reachable(client, owner):
    mine, theirs = make_org(owner, client), make_org(owner, client)
    h = mine.headers(Role.admin)
    their_species = make(client, theirs, "species", "Nicotiana benthamiana")
    their_supplier = make(client, theirs, "supplier", "Their supplier")
    unknown = str(uuid.uuid4())
    for target in (their_species["id"], unknown):
        url = f"{BASE}/species/{target}"
        answers = [
            client.get(url, headers=h),
            client.patch(url, json={"revision": 1, "reason": "x", "name": "mine now"}, headers=h),
            client.post(f"{url}/archive", json={"reason": "x"}, headers=h),
            client.post(f"{url}/restore", json={"reason": "x"}, headers=h),
            client.get(f"{url}/label", headers=h),
        ]
        assert [r.status_code for r in answers] == [404] * 5, [r.text for r in answers]
        assert all(target in r.json()["detail"] for r in answers)
    assert client.get(f"{BASE}/lookup/{their_species['code']}", headers=h).status_code == 404
    assert client.get(f"{BASE}/species", params={"q": "benthamiana"}, headers=h).json()["items"] == []
    # Their records cannot be referenced either: answered as records that do not exist.
    strain = client.post(f"{BASE}/strain", json={"name": "x", "parent_id": their_species["id"],
                                                  "attributes": {"risk_group": 1}}, headers=h)
    assert strain.status_code == 422 and "no species" in strain.text
    ingredient = client.post(f"{BASE}/ingredient", json={"name": "x", "attributes": {
        "supplier_id": their_supplier["id"]}}, headers=h)
    assert ingredient.status_code == 422
    imported = client.post(f"{BASE}/species/import", params={"dry_run": "true"},
                           content=f"code,name\n{their_species['code']},mine\n".encode(),
                           headers={**h, "Content-Type": "text/csv"})
    assert imported.status_code == 200 and imported.json()["rows"][0]["action"] == "invalid"
    # And theirs stays as it was.
    assert client.get(f"{BASE}/species/{their_species['id']}",
                      headers=theirs.headers(Role.admin)).json()["revision"] == 1
