"""Samples and batches over HTTP: registration, lists, corrections, life, custody, archive, permissions."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from sqlalchemy import text

from domain.roles import Role
from tests.samples.material import batch, location, sample, seal, status


def test_register_read_and_find_a_sample(client, owner, org_a):
    freezer = location(owner, org_a.id, "Freezer -80 A")
    b = batch(client, org_a)
    s = sample(client, org_a, name="Agrobacterium GV3101 overnight", location_id=str(freezer), batch_id=b["id"],
               attributes={"od600": "0.45"})
    assert s["code"].startswith("S-") and s["status"] == "received" and s["revision"] == 1
    assert s["owner_display"] == f"technician of {org_a.slug}" and s["location_id"] == str(freezer)
    detail = client.get(f"/api/v1/samples/{s['id']}", headers=org_a.headers(Role.auditor)).json()
    assert detail["batch_id"] == b["id"] and detail["parents"] == [] and detail["attributes"] == {"od600": "0.45"}

    # Found by a word of its name or by its code's digits; filtered by batch; the batch lists it.
    for q in ("gv3101", s["code"], s["code"].split("-")[1]):
        page = client.get("/api/v1/samples", params={"q": q}, headers=org_a.headers(Role.scientist)).json()
        assert [x["id"] for x in page["items"]] == [s["id"]], q
    page = client.get("/api/v1/samples", params={"batch_id": b["id"]}, headers=org_a.headers(Role.scientist)).json()
    assert [x["id"] for x in page["items"]] == [s["id"]]
    assert [x["id"] for x in client.get(f"/api/v1/batches/{b['id']}",
                                        headers=org_a.headers(Role.technician)).json()["samples"]] == [s["id"]]


def test_a_retried_registration_registers_once(client, org_a):
    headers = {**org_a.headers(Role.technician), "X-Request-ID": f"reg-{uuid.uuid4()}"}
    body = {"sample_type": "plate", "name": "plate once"}
    first = client.post("/api/v1/samples", json=body, headers=headers)
    again = client.post("/api/v1/samples", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]


def test_lists_page_with_cursors_and_never_repeat(client, org_b):
    tag = uuid.uuid4().hex[:8]
    made = {sample(client, org_b, name=f"pager {tag} {i}")["id"] for i in range(7)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": f"pager {tag}", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/samples", params=params, headers=org_b.headers(Role.technician)).json()
        seen += [x["id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7 and set(seen) == made
    bad = client.get("/api/v1/samples", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=org_b.headers(Role.technician))
    assert bad.status_code == 422


def test_corrections_need_the_revision_read_and_are_audited(client, owner, org_a):
    s = sample(client, org_a)
    h = org_a.headers(Role.technician)
    r = client.patch(f"/api/v1/samples/{s['id']}", json={"revision": 1, "reason": "typo", "name": "Culture A1"},
                     headers=h)
    assert r.status_code == 200 and r.json()["revision"] == 2 and r.json()["name"] == "Culture A1"
    stale = client.patch(f"/api/v1/samples/{s['id']}", json={"revision": 1, "reason": "x", "name": "Other"},
                         headers=h)
    assert stale.status_code == 409 and "changed since revision 1 (now 2)" in stale.json()["detail"]
    seal(owner, org_a.id)
    with owner.begin(None) as db:
        entry = db.execute(text("SELECT reason, convert_from(body, 'UTF8') AS body FROM audit_log WHERE org_id = :o"
                                " AND entity_type = 'sample' AND entity_id = :i AND action = 'update'"),
                           {"o": org_a.id, "i": s["id"]}).one()
    body = json.loads(entry.body)
    assert entry.reason == "typo" and (body["before"]["name"], body["after"]["name"]) == (s["name"], "Culture A1")


def test_the_life_of_a_sample_is_guarded(client, org_a):
    s = sample(client, org_a)
    assert status(client, org_a, s["id"], "in_use").json()["status"] == "in_use"
    r = status(client, org_a, s["id"], "received")
    assert r.status_code == 409 and "is in_use: it cannot become received" in r.json()["detail"]
    r = status(client, org_a, s["id"], "contaminated", "fungal colonies on the plate")
    assert r.json()["status_reason"] == "fungal colonies on the plate"
    assert status(client, org_a, s["id"], "disposed", "autoclaved").status_code == 200
    r = status(client, org_a, s["id"], "in_use")
    assert r.status_code == 409 and "is disposed: it cannot become in_use" in r.json()["detail"]
    assert status(client, org_a, s["id"], "thawed").status_code == 422


def test_archive_is_for_managers_and_denials_are_on_record(client, owner, org_a):
    s = sample(client, org_a)
    r = client.post(f"/api/v1/samples/{s['id']}/archive", json={"reason": "tidy up"},
                    headers=org_a.headers(Role.technician))
    assert r.status_code == 403 and "samples.manage" in r.json()["detail"]
    r = client.post(f"/api/v1/samples/{s['id']}/archive", json={"reason": "empty tube"},
                    headers=org_a.headers(Role.lab_manager))
    assert r.status_code == 200 and r.json()["archived_at"]
    listed = client.get("/api/v1/samples", params={"q": s["code"]}, headers=org_a.headers(Role.technician)).json()
    assert listed["items"] == []
    archived = client.get("/api/v1/samples", params={"q": s["code"], "archived": True},
                          headers=org_a.headers(Role.technician)).json()
    assert [x["id"] for x in archived["items"]] == [s["id"]]
    assert status(client, org_a, s["id"], "in_use").status_code == 409
    seal(owner, org_a.id)
    with owner.begin(None) as db:
        denied = db.execute(text("SELECT count(*) FROM audit_log WHERE org_id = :o AND action = 'deny'"
                                 " AND entity_id = :e"), {"o": org_a.id,
                                                          "e": f"POST /api/v1/samples/{s['id']}/archive"}).scalar()
    assert denied == 1


def test_a_batch_is_released_by_a_manager_and_its_record_keeps_the_decision(client, org_a):
    b = batch(client, org_a, record={"recipe": "MS + 30 g/L sucrose", "volume_l": 2})
    r = client.post(f"/api/v1/batches/{b['id']}/status", json={"status": "released", "reason": "pH 5.8, sterile"},
                    headers=org_a.headers(Role.technician))
    assert r.status_code == 403
    r = client.post(f"/api/v1/batches/{b['id']}/status", json={"status": "released", "reason": "pH 5.8, sterile"},
                    headers=org_a.headers(Role.lab_manager))
    assert r.status_code == 200, r.text
    record = r.json()["record"]
    assert record["recipe"] == "MS + 30 g/L sucrose" and record["released"]["reason"] == "pH 5.8, sterile"
    r = client.post(f"/api/v1/batches/{b['id']}/status", json={"status": "rejected", "reason": "late"},
                    headers=org_a.headers(Role.lab_manager))
    assert r.status_code == 409 and "is released: it cannot become rejected" in r.json()["detail"]
    r = client.patch(f"/api/v1/batches/{b['id']}", json={"revision": 2, "reason": "x", "record": {}},
                     headers=org_a.headers(Role.technician))
    assert r.status_code == 409


def test_custody_answers_where_it_was_at_an_instant(client, owner, org_a):
    bench, freezer = location(owner, org_a.id, "Bench 3"), location(owner, org_a.id, "Freezer B")
    s = sample(client, org_a, location_id=str(bench))
    h = org_a.headers(Role.technician)
    scientist_id = str(org_a.users[Role.scientist][0])
    r = client.post(f"/api/v1/samples/{s['id']}/moves", json={"to_location_id": str(freezer), "reason": "storage"},
                    headers=h)
    assert r.status_code == 201, r.text
    r = client.post(f"/api/v1/samples/{s['id']}/moves", json={"to_holder_id": scientist_id, "reason": "hand-over"},
                    headers=h)
    assert r.status_code == 201 and r.json()["to_holder_display"] == f"scientist of {org_a.slug}"
    assert client.post(f"/api/v1/samples/{s['id']}/moves", json={"reason": "nowhere"}, headers=h).status_code == 422
    stranger = client.post(f"/api/v1/samples/{s['id']}/moves", json={"to_holder_id": str(uuid.uuid4()), "reason": "x"},
                           headers=h)
    assert stranger.status_code == 422

    now = client.get(f"/api/v1/samples/{s['id']}/locations", headers=h).json()
    history = now["history"]
    assert [m["to_location_id"] for m in history] == [str(bench), str(freezer), str(freezer)]
    assert now["location_id"] == str(freezer) and now["holder_id"] == scientist_id

    def where(at: str) -> dict:
        r = client.get(f"/api/v1/samples/{s['id']}/locations", params={"at": at}, headers=h)
        assert r.status_code == 200, r.text
        return r.json()

    first, second = dt.datetime.fromisoformat(history[0]["moved_at"]), history[1]["moved_at"]
    assert where(first.isoformat())["location_name"] == "Bench 3"
    assert where(second)["location_name"] == "Freezer B"
    assert where(second)["holder_display"] == f"technician of {org_a.slug}"
    assert where((first - dt.timedelta(days=1)).isoformat())["location_id"] is None
    assert client.get(f"/api/v1/samples/{s['id']}/locations", params={"at": "yesterday"}, headers=h).status_code == 422
    seal(owner, org_a.id)
    with owner.begin(None) as db:
        moves = db.execute(text("SELECT reason FROM audit_log WHERE org_id = :o AND entity_id = :i AND action = 'move'"
                                " ORDER BY seq"), {"o": org_a.id, "i": s["id"]}).scalars().all()
    assert moves == ["storage", "hand-over"]


def test_unusable_material_is_refused_with_the_reason(client, owner, org_a):
    archived_loc = location(owner, org_a.id)
    with owner.begin(org_a.id) as db:
        db.execute(text("UPDATE registry_items SET archived_at = now() WHERE id = :i"), {"i": archived_loc})
    r = client.post("/api/v1/samples", json={"sample_type": "plate", "name": "p", "location_id": str(archived_loc)},
                    headers=org_a.headers(Role.technician))
    assert r.status_code == 422 and "archived" in r.text
    r = client.post("/api/v1/samples", json={"sample_type": "plate", "name": "p", "location_id": str(uuid.uuid4())},
                    headers=org_a.headers(Role.technician))
    assert r.status_code == 422
    parent = sample(client, org_a)
    status(client, org_a, parent["id"], "contaminated", "bacterial film")
    r = client.post("/api/v1/samples/derive", json={"parent_ids": [parent["id"]], "operation": "subculture",
                                                    "count": 2}, headers=org_a.headers(Role.technician))
    assert r.status_code == 422 and f"sample {parent['code']} is contaminated: bacterial film" in r.json()["reasons"]


def test_other_organizations_material_is_not_found_on_any_endpoint(client, owner, org_a, org_b):
    s = sample(client, org_a)
    b = batch(client, org_a)
    h = org_b.headers(Role.owner)
    sid, bid = s["id"], b["id"]
    calls = [
        ("GET", f"/api/v1/samples/{sid}", None),
        ("PATCH", f"/api/v1/samples/{sid}", {"revision": 1, "reason": "x", "name": "mine"}),
        ("POST", f"/api/v1/samples/{sid}/status", {"status": "disposed", "reason": "x"}),
        ("POST", f"/api/v1/samples/{sid}/archive", {"reason": "x"}),
        ("POST", f"/api/v1/samples/{sid}/restore", {"reason": "x"}),
        ("POST", f"/api/v1/samples/{sid}/parents", {"parent_ids": [sid], "operation": "aliquot"}),
        ("GET", f"/api/v1/samples/{sid}/lineage", None),
        ("GET", f"/api/v1/samples/{sid}/trace", None),
        ("POST", f"/api/v1/samples/{sid}/moves", {"to_holder_id": str(org_b.users[Role.owner][0]), "reason": "x"}),
        ("GET", f"/api/v1/samples/{sid}/locations", None),
        ("POST", "/api/v1/samples/derive", {"parent_ids": [sid], "operation": "aliquot", "count": 1}),
        ("GET", f"/api/v1/batches/{bid}", None),
        ("PATCH", f"/api/v1/batches/{bid}", {"revision": 1, "reason": "x", "name": "mine"}),
        ("POST", f"/api/v1/batches/{bid}/status", {"status": "released", "reason": "x"}),
        ("POST", f"/api/v1/batches/{bid}/archive", {"reason": "x"}),
        ("POST", f"/api/v1/batches/{bid}/restore", {"reason": "x"}),
        ("GET", f"/api/v1/batches/{bid}/trace", None),
    ]
    for method, path, body in calls:
        r = client.request(method, path, json=body, headers=h)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    # Nor listed, nor usable as a component of their own sample.
    assert client.get("/api/v1/samples", params={"q": s["code"]}, headers=h).json()["items"] == []
    own = location(owner, org_b.id)
    r = client.post("/api/v1/samples", json={"sample_type": "plate", "name": "p", "batch_id": bid,
                                             "location_id": str(own)}, headers=h)
    assert r.status_code == 422
    # Nothing of org A changed.
    assert client.get(f"/api/v1/samples/{sid}", headers=org_a.headers(Role.auditor)).json()["revision"] == 1
