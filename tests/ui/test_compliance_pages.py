"""The compliance pages without a browser: a sample's and a run's compliance surface and status; an authorization
signed in the page with the password re-entered, so a run held for it goes on (whoever recorded it refused with
the reason, a wrong password refused, a technician refused and on record); an event raised about a sample and
taken to its signed closure through its workflow (a technician and the reporter refused); an alert read and
acknowledged (on record); another organization's records not found."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from domain.alerts.models import Addressees
from domain.alerts.service import raise_alert
from domain.roles import Role
from tests.compliance.support import BASE, agro_material, tag
from tests.compliance.test_enforcement import item, launch, open_task, subculture
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol
from tests.support import PASSWORD, make_org
from tests.ui.conftest import csrf_of, log_in, pages_client
from tests.ui.test_role_pages import sealed


def signed_in(client, org, role: Role):  # type: ignore[no-untyped-def]
    web = pages_client(client)
    assert log_in(web, org.users[role][1], PASSWORD).status_code == 303
    return web


def post(web, path: str, data: dict[str, str], page: str):  # type: ignore[no-untyped-def]
    return web.post(path, data={**data, "csrf_token": csrf_of(web.get(page).text)})


def denials(client, owner, org, path: str) -> list[str]:  # type: ignore[no-untyped-def]
    sealed(owner, org)
    items = client.get("/api/v1/audit", params={"action": "deny", "entity_id": path},
                       headers=org.headers(Role.auditor)).json()["items"]
    return [e["actor"]["id"] for e in items]


def authorization(client, org, recorder: Role = Role.admin) -> dict:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    r = client.post(f"{BASE}/authorizations", headers=org.headers(recorder), json={
        "authorization_type": "IBC approval", "title": f"IBC-{uuid.uuid4().hex[:4]} Agrobacterium transformation",
        "issuer": "Institutional Biosafety Committee", "tags": ["recombinant_dna"],
        "valid_from": (now - dt.timedelta(days=1)).isoformat(),
        "valid_until": (now + dt.timedelta(days=365)).isoformat()})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_the_sample_page_shows_each_tag_with_its_path_and_the_status(client, org_a):
    m = agro_material(client, org_a)
    tag(client, org_a, "recombinant_dna", "plasmid", m["plasmid"]["id"])
    web = signed_in(client, org_a, Role.technician)
    page = web.get(f"/ui/samples/{m['plate']['id']}")
    assert page.status_code == 200
    surface = page.text[page.text.index('id="compliance-surface"'):]
    assert "recombinant_dna" in surface and m["plasmid"]["name"] in surface and m["plate"]["code"] in surface
    assert 'id="compliance-status"' in page.text


def test_an_authorization_is_signed_in_the_page_and_its_recorder_is_refused(client, owner, org_a):
    auth = authorization(client, org_a, Role.admin)
    path = f"/ui/authorizations/{auth['id']}"
    listed = signed_in(client, org_a, Role.technician).get("/ui/authorizations")
    assert listed.status_code == 200 and auth["code"] in listed.text and "pending" in listed.text
    # Whoever recorded it does not sign it: refused with the reason, nothing signed.
    admin = signed_in(client, org_a, Role.admin)
    r = post(admin, f"{path}/sign", {"password": PASSWORD}, path)
    assert r.status_code == 409 and "whoever recorded an authorization does not approve it" in r.text
    # A wrong password: refused in place, and on record towards the lockout.
    signer = signed_in(client, org_a, Role.owner)
    r = post(signer, f"{path}/sign", {"password": "not it"}, path)
    assert r.status_code == 403 and 'id="refusal"' in r.text
    assert client.get(f"{BASE}/authorizations/{auth['id']}", headers=org_a.headers(Role.auditor)).json()[
        "status"] == "pending"
    # A technician may read it but not sign it (403, on record).
    tech = signed_in(client, org_a, Role.technician)
    r = post(tech, f"{path}/sign", {"password": PASSWORD}, path)
    assert r.status_code == 403 and "may not" in r.text
    assert str(org_a.users[Role.technician][0]) in denials(client, owner, org_a, f"POST {path}/sign")
    # The owner signs: in force, signed by them.
    r = post(signer, f"{path}/sign", {"password": PASSWORD, "reason": "IBC minutes 2026-11"}, path)
    assert r.status_code == 303 and r.headers["location"].endswith("?signed=1"), r.text[-2000:]
    got = client.get(f"{BASE}/authorizations/{auth['id']}", headers=org_a.headers(Role.auditor)).json()
    assert got["in_force"] and got["approved_by_display"] == f"owner of {org_a.slug}"
    assert "Signed" in signer.get(path + "?signed=1").text


def test_an_event_is_raised_about_a_sample_and_taken_to_its_signed_closure_in_the_pages(client, owner, org_a):
    m = agro_material(client, org_a)
    manager = signed_in(client, org_a, Role.lab_manager)
    form = f"/ui/events/new?sample={m['plate']['id']}"
    assert m["plate"]["id"] in manager.get(form).text
    r = post(manager, "/ui/events", {"kind": "contamination", "severity": "high", "title": "",
                                     "description": "fungal growth", "sample": m["plate"]["id"]}, form)
    assert r.status_code == 422 and 'id="title-error"' in r.text  # the server's message beside the field
    r = post(manager, "/ui/events", {"kind": "contamination", "severity": "high", "title": "Fungus on the plate",
                                     "description": "fungal growth at day 3", "sample": m["plate"]["id"]}, form)
    assert r.status_code == 303, r.text[-2000:]
    event_id = re.search(r"/events/([0-9a-f-]{36})\?done=raised", r.headers["location"]).group(1)  # type: ignore[union-attr]
    path = f"/ui/events/{event_id}"
    # A technician reads it, but the transitions are a manager's: refused (403, on record).
    tech = signed_in(client, org_a, Role.technician)
    page = tech.get(path)
    assert page.status_code == 200 and "Fungus on the plate" in page.text and "raised it" in page.text
    assert "Start the investigation" not in page.text
    r = post(tech, f"{path}/investigate", {}, path)
    assert r.status_code == 403
    assert str(org_a.users[Role.technician][0]) in denials(client, owner, org_a, f"POST {path}/investigate")
    # The manager investigates and records the root cause with one action for the technician (workflow Updates).
    assert "Start the investigation" in manager.get(path).text
    assert post(manager, f"{path}/investigate", {"reason": "check the hood"}, path).status_code == 303
    due = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    r = post(manager, f"{path}/root_cause", {"root_cause": "hood filter", "action_kind": "corrective",
                                             "action": "replace the filter", "owner_id": "not a member",
                                             "due_at": due}, path)
    assert r.status_code == 422 and "owner_id" in r.text  # nothing moved
    r = post(manager, f"{path}/root_cause", {"root_cause": "hood filter", "action_kind": "corrective",
                                             "action": "replace the filter",
                                             "owner_id": str(org_a.users[Role.technician][0]), "due_at": due}, path)
    assert r.status_code == 303, r.text[-2000:]
    got = client.get(f"/api/v1/events/{event_id}", headers=org_a.headers(Role.auditor)).json()
    assert got["status"] == "capa" and got["links"]["samples"] == [m["plate"]["id"]]
    # The technician owns the action: marks it done in the page (the last one: the effectiveness check is next).
    done = f"{path}/actions/{got['actions'][0]['id']}/complete"
    assert "Mark this action done" in tech.get(path).text
    assert post(tech, done, {"note": ""}, path).status_code == 422
    r = post(tech, done, {"note": "filter replaced"}, path)
    assert r.status_code == 303, r.text[-2000:]
    assert client.get(f"/api/v1/events/{event_id}", headers=org_a.headers(Role.auditor)).json()[
        "status"] == "effectiveness_check"
    r = post(manager, f"{path}/effectiveness", {"effective": "yes", "note": "two clean weeks"}, path)
    assert r.status_code == 303, r.text[-2000:]
    # Its reporter does not close it: refused with the reason; another manager signs the closure.
    assert "its reporter does not close it" in manager.get(path).text
    r = post(manager, f"{path}/close", {"password": PASSWORD}, path)
    assert r.status_code == 403 and 'id="refusal"' in r.text
    admin = signed_in(client, org_a, Role.admin)
    r = post(admin, f"{path}/close", {"password": PASSWORD, "reason": "effective"}, path)
    assert r.status_code == 303, r.text[-2000:]
    got = client.get(f"/api/v1/events/{event_id}", headers=org_a.headers(Role.auditor)).json()
    assert got["status"] == "closed" and got["signature"]["signer_name"] == f"admin of {org_a.slug}"
    page = admin.get(path).text
    assert "closed, signed by" in page and got["code"] in admin.get("/ui/events").text


def test_an_alert_is_read_and_acknowledged_in_the_page(client, owner, platform, org_a):
    tech_id = org_a.users[Role.technician][0]
    with platform.sessions.begin(org_a.id) as s:
        ident = raise_alert(s, org_a.id, "authorization_expiry", ("authorization", f"IBC-{uuid.uuid4().hex[:4]}"),
                            Addressees(users=(tech_id,)), title="IBC approval expires in 14 days")
    tech = signed_in(client, org_a, Role.technician)
    listed = tech.get("/ui/alerts")
    assert listed.status_code == 200 and "IBC approval expires in 14 days" in listed.text
    r = post(tech, f"/ui/alerts/{ident}/read", {}, "/ui/alerts")
    assert r.status_code == 303
    r = post(tech, f"/ui/alerts/{ident}/acknowledge", {"note": "renewal filed"}, "/ui/alerts")
    assert r.status_code == 303
    got = client.get(f"/api/v1/alerts/{ident}", headers=org_a.headers(Role.technician)).json()
    assert got["read_at"] and got["acknowledged_at"] and got["acknowledged_by"]
    assert "Acknowledged by" in tech.get("/ui/alerts").text
    # Addressed to the technician: another role's person does not find it (404, on record).
    r = post(signed_in(client, org_a, Role.scientist), f"/ui/alerts/{ident}/acknowledge", {}, "/ui/alerts")
    assert r.status_code == 404
    sealed(owner, org_a)
    acks = client.get("/api/v1/audit", params={"entity_id": str(ident), "action": "acknowledge"},
                      headers=org_a.headers(Role.auditor)).json()["items"]
    assert [(a["actor"]["id"], a["reason"]) for a in acks] == [(str(tech_id), "renewal filed")]


def test_another_organizations_compliance_records_are_not_found(client, owner, org_a, org_b):
    auth = authorization(client, org_a)
    m = agro_material(client, org_a)
    event = client.post("/api/v1/events", headers={**org_a.headers(Role.technician), "X-Request-ID": uuid.uuid4().hex},
                        json={"kind": "deviation", "severity": "low", "title": "Late plating",
                              "description": "plated a day late", "links": {"samples": [m["plate"]["id"]]}})
    assert event.status_code == 201, event.text
    with owner.begin(org_a.id) as s:
        ident = raise_alert(s, org_a.id, "other", ("sample", m["plate"]["id"]), Addressees(roles=("lab_manager",)),
                            title="Look at the plate")
    other = signed_in(client, org_b, Role.owner)
    for path in (f"/ui/authorizations/{auth['id']}", f"/ui/events/{event.json()['id']}",
                 f"/ui/samples/{m['plate']['id']}"):
        r = other.get(path)
        assert r.status_code == 404 and auth["title"] not in r.text, path
    r = post(other, f"/ui/authorizations/{auth['id']}/sign", {"password": PASSWORD}, "/ui/authorizations")
    assert r.status_code == 404
    r = post(other, f"/ui/alerts/{ident}/acknowledge", {}, "/ui/alerts")
    assert r.status_code == 404
    assert client.get(f"{BASE}/authorizations/{auth['id']}", headers=org_a.headers(Role.auditor)).json()[
        "status"] == "pending"


def test_a_run_held_for_an_ibc_approval_resumes_when_it_is_signed_in_the_page(client, owner):
    """The demo's story in the pages: the run page shows the hold with its reason and the surface; the owner signs
    the IBC approval in the page; the run goes on by itself; its task page lists the framework's item."""
    org = make_org(owner, client)
    m = agro_material(client, org)
    tag(client, org, "recombinant_dna", "plasmid", m["plasmid"]["id"])
    fw = client.post(f"{BASE}/frameworks", json={"key": "nih", "name": "NIH Guidelines"},
                     headers=org.headers(Role.lab_manager)).json()
    item(client, org, fw["id"], "rdna_waste", {"any": ["recombinant_dna"], "step_kind": "task"})
    r = client.post(f"{BASE}/authorization-rules", json={"tags": ["recombinant_dna"],
                                                         "authorization_type": "IBC approval"},
                    headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    key = f"sub-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, subculture(key))
    run_id = launch(client, org, key, m["plate"]["code"])
    wait_for(lambda: client.get(f"/api/v1/runs/{run_id}", headers=org.headers(Role.lab_manager)).json()["status"]
             == "on_hold" or None)
    manager = signed_in(client, org, Role.lab_manager)
    run_page = manager.get(f"/ui/runs/{run_id}").text
    status = run_page[run_page.index('id="compliance-status"'):]
    assert status.startswith('id="compliance-status">On hold') and "IBC approval" in status
    assert "recombinant_dna" in run_page[run_page.index('id="compliance-surface"'):]
    auth = authorization(client, org, Role.lab_manager)
    path = f"/ui/authorizations/{auth['id']}"
    r = post(signed_in(client, org, Role.owner), f"{path}/sign", {"password": PASSWORD}, path)
    assert r.status_code == 303, r.text[-2000:]
    task = open_task(client, org, run_id)  # the run went on by itself: its step opened
    page = signed_in(client, org, Role.technician).get(f"/ui/tasks/{task['id']}").text
    assert "Flow hood wiped down" in page and "rdna_waste done" in page


def test_bad_input_to_the_compliance_pages_is_a_clear_refusal_that_changes_nothing(client, org_a):
    manager = signed_in(client, org_a, Role.lab_manager)
    for path in ("/ui/events?cursor=garbage", "/ui/alerts?cursor=%00x", "/ui/events?status=nonsense"):
        r = manager.get(path)
        assert r.status_code in (200, 422) and "<h1>" in r.text, path
    for path in ("/ui/events/not-an-id", "/ui/authorizations/42", f"/ui/events/{uuid.uuid4()}"):
        assert manager.get(path).status_code == 404, path
    before = client.get("/api/v1/events", headers=org_a.headers(Role.auditor)).json()["items"]
    for data in ({"kind": "nonsense", "severity": "low", "title": "t", "description": "d"},
                 {"kind": "deviation", "severity": "low", "title": "t", "description": "d", "sample": "S-1\x00"},
                 {"kind": "deviation", "severity": "low", "title": "t", "description": "d", "run": str(uuid.uuid4())}):
        r = post(manager, "/ui/events", data, "/ui/events/new")
        assert r.status_code == 422 and ('role="alert"' in r.text or 'class="error"' in r.text), r.text[-1500:]
    r = post(manager, f"/ui/events/{uuid.uuid4()}/nonsense", {}, "/ui/events")
    assert r.status_code == 404
    assert client.get("/api/v1/events", headers=org_a.headers(Role.auditor)).json()["items"] == before
