"""The audit log as each role reads it over HTTP: filters, pages, scope, past state."""

from __future__ import annotations

import datetime as dt
import time
import uuid

from domain.roles import Role
from tests.support import make_org


def test_pages_and_filters(client, owner):
    org = make_org(owner, client)
    h = org.headers(Role.admin)
    ids = [client.post("/api/v1/apikeys", json={"name": f"k{i}", "role": "analyst"}, headers=h).json()["id"]
           for i in range(7)]
    seen, cursor = [], None
    while True:
        params = {"entity_type": "api_key", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/audit", params=params, headers=org.headers(Role.auditor)).json()
        seen += [e["entity_id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))  # newest first, each once
    seqs = [e["seq"] for e in client.get("/api/v1/audit", headers=h).json()["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    r = client.request("DELETE", f"/api/v1/apikeys/{ids[0]}", json={"reason": "rotated after the Q3 audit"}, headers=h)
    assert r.status_code == 200
    hits = client.get("/api/v1/audit", params={"reason": "Q3 audit"}, headers=h).json()["items"]
    assert [(e["action"], e["entity_id"]) for e in hits] == [("revoke", ids[0])]
    assert hits[0]["before"]["revoked_at"] is None and hits[0]["after"]["revoked_at"] is not None
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert client.get("/api/v1/audit", params={"since": future}, headers=h).json()["items"] == []
    admin_id = str(org.users[Role.admin][0])
    mine = client.get("/api/v1/audit", params={"actor": admin_id, "action": "create"}, headers=h).json()["items"]
    assert {e["entity_id"] for e in mine} == set(ids)


def test_what_each_role_may_read(client, owner):
    org = make_org(owner, client)
    client.post("/api/v1/apikeys", json={"name": "k", "role": "analyst"}, headers=org.headers(Role.admin))
    def entries(role: Role) -> list[dict]:
        r = client.get("/api/v1/audit", params={"limit": 1000}, headers=org.headers(role))
        assert r.status_code == 200, (role, r.text)
        return r.json()["items"]
    everything = entries(Role.auditor)
    assert {e["entity_type"] for e in everything} >= {"membership", "api_key", "auth_session"}
    assert len(entries(Role.owner)) >= len(everything)
    ops = entries(Role.lab_manager)
    assert not {e["entity_type"] for e in ops} & {"membership", "api_key", "auth_session", "organization"}
    tech_id = str(org.users[Role.technician][0])
    own = entries(Role.technician)
    assert own and all(e["actor"]["id"] == tech_id for e in own)  # their own login, nothing else
    assert client.get("/api/v1/audit", headers=org.headers(Role.analyst)).status_code == 403
    assert client.get("/api/v1/audit/verify", headers=org.headers(Role.lab_manager)).status_code == 403


def test_entity_state_at_a_past_instant(client, owner):
    org = make_org(owner, client)
    h = org.headers(Role.admin)
    email = f"pat-{uuid.uuid4().hex[:6]}@example.org"
    before_creation = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    r = client.post("/api/v1/members", json={"email": email, "display_name": "Pat", "password": "long enough pw 1",
                                             "role": "technician"}, headers=h)
    assert r.status_code == 201, r.text
    m = client.post("/api/v1/auth/login", json={"email": email, "password": "long enough pw 1", "org": org.slug}).json()
    time.sleep(0.01)
    as_technician = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    r = client.patch(f"/api/v1/members/{m['user_id']}", json={"role": "scientist", "reason": "promoted"}, headers=h)
    assert r.status_code == 200
    url = f"/api/v1/audit/entities/membership/{m['user_id']}/state"
    aud = org.headers(Role.auditor)
    assert client.get(url, params={"at": before_creation.isoformat()}, headers=aud).json()["exists"] is False
    then = client.get(url, params={"at": as_technician.isoformat()}, headers=aud).json()
    assert then["exists"] and then["state"]["role"] == "technician"
    now = client.get(url, params={"at": dt.datetime.now(dt.UTC).isoformat()}, headers=aud).json()
    assert now["state"]["role"] == "scientist" and now["last_action"] == "update"


def test_entity_state_of_another_orgs_or_an_unknown_entity_is_404(client, owner):
    mine, theirs = make_org(owner, client), make_org(owner, client)
    their_key = client.post("/api/v1/apikeys", json={"name": "theirs", "role": "analyst"},
                            headers=theirs.headers(Role.admin)).json()["id"]
    my_key = client.post("/api/v1/apikeys", json={"name": "mine", "role": "analyst"},
                         headers=mine.headers(Role.admin)).json()["id"]
    now = {"at": dt.datetime.now(dt.UTC).isoformat()}
    aud = mine.headers(Role.auditor)
    other = client.get(f"/api/v1/audit/entities/api_key/{their_key}/state", params=now, headers=aud)
    unknown = client.get(f"/api/v1/audit/entities/api_key/{uuid.uuid4()}/state", params=now, headers=aud)
    assert other.status_code == unknown.status_code == 404
    assert other.json() == unknown.json()  # the same answer as for an id that exists nowhere
    own = client.get(f"/api/v1/audit/entities/api_key/{my_key}/state", params=now, headers=aud)
    assert own.status_code == 200 and own.json()["state"]["name"] == "mine"
    # The attempt is on record in the asking organization.
    denied = client.get("/api/v1/audit", params={"action": "deny"}, headers=aud).json()["items"]
    assert any(their_key in e["entity_id"] for e in denied)


def test_actor_filter_accepts_an_email(client, owner):
    org, other = make_org(owner, client), make_org(owner, client)
    h = org.headers(Role.admin)
    made = {client.post("/api/v1/apikeys", json={"name": f"k{i}", "role": "analyst"}, headers=h).json()["id"]
            for i in range(2)}
    admin_id, admin_email = org.users[Role.admin]
    params = {"action": "create", "entity_type": "api_key"}
    by_id = client.get("/api/v1/audit", params={**params, "actor": str(admin_id)}, headers=h).json()["items"]
    by_email = client.get("/api/v1/audit", params={**params, "actor": admin_email.upper()}, headers=h).json()["items"]
    assert {e["entity_id"] for e in by_email} == {e["entity_id"] for e in by_id} == made
    exported = client.get("/api/v1/audit/export", params={**params, "actor": admin_email, "format": "csv"}, headers=h)
    assert exported.status_code == 200 and all(k in exported.text for k in made)
    # An email no member of this organization has cannot match: said so, not an empty page.
    for email in ("nobody@example.org", other.users[Role.admin][1]):
        for path in ("/api/v1/audit", "/api/v1/audit/export"):
            r = client.get(path, params={"actor": email}, headers=h)
            assert r.status_code == 422, (path, r.text)
            assert "actor" in r.text
