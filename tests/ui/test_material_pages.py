"""The lab's material in the pages, without a browser: registry records created and changed with the server's own
messages beside the fields, archived and restored with a reason (on record), the label, the look-up by code; a
sample found by its code, moved, put in use, derived; another organization's records not found (on record)."""

from __future__ import annotations

import re
import uuid

from domain.roles import Role
from tests.support import PASSWORD
from tests.ui.conftest import csrf_of, log_in, pages_client


def signed_in(client, org, role: Role):  # type: ignore[no-untyped-def]
    web = pages_client(client)
    assert log_in(web, org.users[role][1], PASSWORD).status_code == 303
    return web


def post(web, path: str, data: dict[str, str], page: str):  # type: ignore[no-untyped-def]
    return web.post(path, data={**data, "csrf_token": csrf_of(web.get(page).text)})


def created(r) -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == 303, r.text[:2000]
    match = re.search(r"/([0-9a-f-]{36})\?done=created", r.headers["location"])
    assert match, r.headers["location"]
    return match.group(1)


def audit_reasons(client, org, entity_id: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    items = client.get("/api/v1/audit", params={"entity_id": entity_id},
                       headers=org.headers(Role.auditor)).json()["items"]
    return [(e["action"], e["reason"]) for e in items]


def new_sample(client, org) -> dict:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/samples", headers={**org.headers(Role.technician), "X-Request-ID": str(uuid.uuid4())},
                    json={"sample_type": "culture", "name": f"overnight culture {uuid.uuid4().hex[:6]}"})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_manager_creates_edits_archives_and_restores_a_strain_with_reasons(client, org_a):
    web = signed_in(client, org_a, Role.lab_manager)
    name = f"Agro {uuid.uuid4().hex[:6]}"
    species = created(post(web, "/ui/registry/species/new", {"name": f"{name} sp.", "a.risk_group": "1"},
                           "/ui/registry/species/new"))
    # A strain without its risk group and with a risk group out of range: the server's messages beside the fields.
    r = post(web, "/ui/registry/strain/new", {"name": name, "parent_id": species, "a.risk_group": "7"},
             "/ui/registry/strain/new")
    assert r.status_code == 422
    assert re.search(r'id="a-risk_group-error" class="error">[^<]*less than or equal to 4', r.text), r.text[-3000:]
    assert 'aria-invalid="true"' in r.text and f'value="{name}"' in r.text  # what was typed is kept
    strain = created(post(web, "/ui/registry/strain/new", {"name": name, "parent_id": species, "a.risk_group": "1",
                                                           "a.genotype": "C58", "a.gmo": "on"},
                          "/ui/registry/strain/new"))
    page = web.get(f"/ui/registry/strain/{strain}")
    assert page.status_code == 200 and "C58" in page.text and "ST-" in page.text
    label = web.get(f"/ui/registry/strain/{strain}/label")
    assert label.status_code == 200 and label.headers["content-type"].startswith("image/svg+xml")
    # Edit: the reason is required, then saved as a new revision.
    edit = f"/ui/registry/strain/{strain}/edit"
    form = web.get(edit).text
    revision = re.search(r'name="revision" value="(\d+)"', form).group(1)  # type: ignore[union-attr]
    r = post(web, edit, {"name": name, "parent_id": species, "a.risk_group": "2", "a.gmo": "on",
                         "revision": revision}, edit)
    assert r.status_code == 422 and 'id="reason-error"' in r.text
    r = post(web, edit, {"name": name, "parent_id": species, "a.risk_group": "2", "a.gmo": "on", "revision": revision,
                         "reason": "risk assessment revised"}, edit)
    assert r.status_code == 303
    r = post(web, edit, {"name": name, "parent_id": species, "a.risk_group": "3", "revision": revision,
                         "reason": "a stale form"}, edit)
    assert r.status_code == 409 and "changed since revision" in r.text  # the revision read, not overwritten
    # The species still holds the strain: archiving it is refused with the reason, nothing changes.
    r = post(web, f"/ui/registry/species/{species}/archive", {"reason": "unused"}, f"/ui/registry/species/{species}")
    assert r.status_code == 409 and "archive them first" in r.text
    r = post(web, f"/ui/registry/strain/{strain}/archive", {"reason": ""}, f"/ui/registry/strain/{strain}")
    assert r.status_code == 422 and 'id="reason-archive-error"' in r.text
    r = post(web, f"/ui/registry/strain/{strain}/archive", {"reason": "strain lost in freezer failure"},
             f"/ui/registry/strain/{strain}")
    assert r.status_code == 303
    assert web.get("/ui/registry/strain", params={"q": name}).text.count(f">{name}<") == 0  # hidden from the list
    assert f">{name}<" in web.get("/ui/registry/strain", params={"q": name, "archived": "only"}).text
    r = post(web, f"/ui/registry/strain/{strain}/restore", {"reason": "found a backup vial"},
             f"/ui/registry/strain/{strain}")
    assert r.status_code == 303
    assert ("archive", "strain lost in freezer failure") in audit_reasons(client, org_a, strain)
    assert ("restore", "found a backup vial") in audit_reasons(client, org_a, strain)
    assert ("update", "risk assessment revised") in audit_reasons(client, org_a, strain)
    # The look-up box finds it by the code its label encodes, typed in lower case.
    code = client.get(f"/api/v1/registry/strain/{strain}", headers=org_a.headers(Role.auditor)).json()["code"]
    r = web.get("/ui/find", params={"code": f" {code.lower()} "})
    assert r.status_code == 303 and r.headers["location"] == f"/ui/registry/strain/{strain}"
    # Filters and cursor pages: a bad date says which filter, a bad cursor sends back to the first page.
    assert "not a valid date" in web.get("/ui/registry/lot", params={"expiry_before": "soon"}).text
    assert web.get("/ui/registry/strain", params={"cursor": "!!"}).status_code == 422
    assert web.get("/ui/registry/nothing").status_code == 404


def test_a_technician_finds_a_sample_by_code_moves_it_and_derives_children(client, org_a):
    manager = signed_in(client, org_a, Role.lab_manager)
    room = created(post(manager, "/ui/registry/location/new", {"name": f"Cold room {uuid.uuid4().hex[:6]}",
                                                               "a.level": "site"}, "/ui/registry/location/new"))
    made = new_sample(client, org_a)
    web = signed_in(client, org_a, Role.technician)
    r = web.get("/ui/find", params={"code": made["code"].lower()})
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/samples/")
    page = r.headers["location"]
    sample = page.rsplit("/", 1)[1]
    r = post(web, f"{page}/move", {"to_location_id": room, "reason": ""}, page)
    assert r.status_code == 422 and 'id="move-reason-error"' in r.text
    r = post(web, f"{page}/move", {"to_location_id": room, "reason": "kept cold until plating"}, page)
    assert r.status_code == 303
    shown = web.get(page).text
    assert "kept cold until plating" in shown and "Cold room" in shown and 'id="refusal"' not in shown
    r = post(web, f"{page}/status", {"status": "in_use", "reason": "plating today"}, page)
    assert r.status_code == 303 and ">in use<" in web.get(page).text
    r = post(web, f"{page}/status", {"status": "received", "reason": "back"}, page)
    assert r.status_code in (409, 422) and "alert" in r.text  # the life of a sample goes one way
    r = post(web, f"{page}/derive", {"operation": "aliquot", "count": "2", "reason": "two aliquots"}, page)
    assert r.status_code == 303
    lineage = client.get(f"/api/v1/samples/{sample}/lineage", params={"direction": "descendants"},
                         headers=org_a.headers(Role.technician)).json()
    assert len(lineage["nodes"]) == 3 and {e["operation"] for e in lineage["edges"]} == {"aliquot"}
    shown = web.get(page).text
    assert 'id="descendants"' in shown and "by aliquot" in shown
    child = next(n for n in lineage["nodes"] if n["id"] != sample)
    assert 'id="ancestors"' in web.get(f"/ui/samples/{child['id']}").text
    moves = [e for e in client.get("/api/v1/audit", params={"entity_id": sample, "action": "move"},
                                   headers=org_a.headers(Role.auditor)).json()["items"]]
    assert moves and moves[0]["reason"] == "kept cold until plating"
    # A technician archives nothing and edits no registry (the API's matrix): refused, on record.
    assert post(web, f"{page}/archive", {"reason": "x"}, page).status_code == 403
    assert web.get("/ui/registry/location/new").status_code == 403
    assert web.get("/ui/batches").status_code == 200 and web.get("/ui/samples", params={"q": "S-UI"}).status_code == 200


def test_another_organizations_records_are_not_found_and_on_record(client, org_a, org_b):
    own = signed_in(client, org_a, Role.lab_manager)
    item = created(post(own, "/ui/registry/plasmid/new", {"name": f"pX-{uuid.uuid4().hex[:6]}",
                                                          "a.backbone": "pCAMBIA1300"}, "/ui/registry/plasmid/new"))
    sample = f"/ui/samples/{new_sample(client, org_a)['id']}"
    batch = own.get("/ui/find", params={"code": "B-7", "type": "batch"}).headers["location"]
    other = signed_in(client, org_b, Role.lab_manager)
    for path in (f"/ui/registry/plasmid/{item}", f"/ui/registry/plasmid/{item}/label",
                 f"/ui/registry/plasmid/{item}/edit", sample, batch):
        r = other.get(path)
        assert r.status_code == 404, path
        assert "pCAMBIA1300" not in r.text
    r = post(other, f"/ui/registry/plasmid/{item}/archive", {"reason": "not ours"}, "/ui/registry/plasmid")
    assert r.status_code == 404
    code = own.get(f"/ui/registry/plasmid/{item}").text
    plasmid_code = re.search(r"(PL-\d+)", code).group(1)  # type: ignore[union-attr]
    assert other.get("/ui/find", params={"code": plasmid_code}).status_code in (303, 404)
    denied = client.get("/api/v1/audit", params={"action": "deny", "entity_id": f"GET /ui/registry/plasmid/{item}"},
                        headers=org_b.headers(Role.auditor)).json()["items"]
    assert denied and denied[0]["reason"].startswith("not found")


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
       b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


def test_the_walkthroughs_reads_have_pages_notifications_evidence(client, org_a, org_b):
    web = signed_in(client, org_a, Role.lab_manager)
    assert web.get("/ui/notifications").status_code == 200
    up = client.post("/api/v1/evidence", headers=org_a.headers(Role.technician),
                     files={"file": (f"plates-{uuid.uuid4().hex[:6]}.png", PNG, "image/png")})
    assert up.status_code in (200, 201), up.text
    page = web.get(f"/ui/evidence/{up.json()['id']}")
    assert page.status_code == 200 and up.json()["sha256"] in page.text
    other = signed_in(client, org_b, Role.lab_manager)
    assert other.get(f"/ui/evidence/{up.json()['id']}").status_code == 404


def test_a_manager_releases_a_batch_with_a_reason_and_a_technician_may_not(client, org_a):
    r = client.post("/api/v1/batches", headers={**org_a.headers(Role.technician), "X-Request-ID": str(uuid.uuid4())},
                    json={"batch_type": "media", "name": f"MS pour {uuid.uuid4().hex[:6]}", "record": {"ph": 5.8}})
    assert r.status_code == 201, r.text
    page = f"/ui/batches/{r.json()['id']}"
    tech = signed_in(client, org_a, Role.technician)
    assert r.json()["code"] in tech.get("/ui/batches", params={"q": r.json()["name"]}).text
    assert post(tech, f"{page}/status", {"status": "released", "reason": "sterile"}, page).status_code == 403
    web = signed_in(client, org_a, Role.lab_manager)
    r = post(web, f"{page}/status", {"status": "released", "reason": ""}, page)
    assert r.status_code == 422 and 'id="status-reason-error"' in r.text
    r = post(web, f"{page}/status", {"status": "released", "reason": "sterility check passed"}, page)
    assert r.status_code == 303
    shown = web.get(page).text
    assert 'id="batch-status">released<' in shown and "sterility check passed" in shown
    inbox = tech.get("/ui/inbox")
    assert inbox.status_code == 200
