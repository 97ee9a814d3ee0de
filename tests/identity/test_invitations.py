"""Membership across organizations: an invitation the person answers; nothing revealed before; logins that
name the organization; every step on record where it concerns."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from domain.roles import Role
from flight.auth import LoginRefused
from flight.service import PlatformAuthenticator
from tests.support import PASSWORD, Org, make_org

OTHER_PASSWORD = "a first password set by the admin"


def _invite(client, org: Org, email: str, role: str = "analyst"):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/members", headers=org.headers(Role.admin),
                       json={"email": email, "display_name": "Invited Person", "password": OTHER_PASSWORD,
                             "role": role})


def _audit(client, org: Org, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/audit", params={"limit": 1000, **params}, headers=org.headers(Role.auditor))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _login(client, email: str, password: str = PASSWORD, org: str | None = None):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/auth/login", json={"email": email, "password": password,
                                                   **({"org": org} if org else {})})


def test_inviting_an_account_of_another_org_reveals_nothing_and_keeps_its_login(client, owner):
    home, inviting = make_org(owner, client), make_org(owner, client)
    person_id, email = home.users[Role.technician]
    person_name = f"technician of {home.slug}"
    existing = _invite(client, inviting, email, role="owner")
    brand_new = _invite(client, inviting, f"new-{uuid.uuid4().hex[:8]}@example.org", role="owner")
    assert existing.status_code == brand_new.status_code == 201, existing.text
    assert set(existing.json()) == set(brand_new.json())  # one shape: an invitation
    assert existing.json()["status"] == brand_new.json()["status"] == "pending"
    for leak in (str(person_id), person_name):
        assert leak not in existing.text
    # Until they accept: not a member, and the inviting org's log says nothing about who they are.
    members = client.get("/api/v1/members", headers=inviting.headers(Role.admin)).json()
    assert email not in {m["email"] for m in members}
    entries = _audit(client, inviting, entity_type="invitation")
    assert [e["action"] for e in entries] == ["invite", "invite"]
    assert all(str(person_id) not in str(e) and person_name not in str(e) for e in entries)
    # The person's login is untouched: still one organization, no org to name.
    r = _login(client, email)
    assert r.status_code == 200 and r.json()["org"] == home.slug and r.json()["role"] == "technician"
    invitations = client.get("/api/v1/invitations", headers=inviting.headers(Role.admin)).json()
    assert [i["status"] for i in invitations] == ["pending", "pending"]


def test_the_person_accepts_after_logging_in_then_names_the_organization_at_login(client, owner):
    home, inviting = make_org(owner, client), make_org(owner, client)
    person_id, email = home.users[Role.technician]
    invitation = _invite(client, inviting, email).json()
    mine = client.get("/api/v1/me/invitations", headers=home.headers(Role.technician)).json()
    assert [(i["id"], i["org"]["slug"], i["role"]) for i in mine] == [(invitation["id"], inviting.slug, "analyst")]
    assert client.get("/api/v1/me/invitations", headers=home.headers(Role.scientist)).json() == []

    r = client.post(f"/api/v1/me/invitations/{invitation['id']}/accept", headers=home.headers(Role.technician))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted" and inviting.slug in r.json()["next_step"]
    again = client.post(f"/api/v1/me/invitations/{invitation['id']}/accept", headers=home.headers(Role.technician))
    assert again.status_code == 404
    members = client.get("/api/v1/members", headers=inviting.headers(Role.admin)).json()
    assert {"user_id": str(person_id), "role": "analyst", "active": True}.items() <= next(
        m for m in members if m["email"] == email).items()

    # Now in two organizations: a login names one; without it the answer says which (and is no failure).
    for _ in range(6):
        r = _login(client, email)
        assert r.status_code == 422, r.text
        assert home.slug in r.text and inviting.slug in r.text
    there = _login(client, email, org=inviting.slug)
    assert there.status_code == 200 and (there.json()["org"], there.json()["role"]) == (inviting.slug, "analyst")
    here = _login(client, email, org=home.slug)
    assert here.status_code == 200 and (here.json()["org"], here.json()["role"]) == (home.slug, "technician")
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {there.json()['token']}"}).json()
    assert me["org"]["slug"] == inviting.slug and me["role"] == "analyst"
    assert _login(client, email, org="no-such-org").status_code == 401

    # Both logs: the inviting org has the invitation, its acceptance and the membership; the home org has
    # what its member's session did.
    inviting_log = [(e["action"], e["entity_type"])
                    for e in reversed(_audit(client, inviting, entity_id=invitation["id"]))]
    assert inviting_log == [("invite", "invitation"), ("accept", "invitation")]
    joined = _audit(client, inviting, entity_type="membership", entity_id=str(person_id))
    assert joined and joined[-1]["action"] == "create" and joined[-1]["after"]["role"] == "analyst"
    home_log = _audit(client, home, entity_id=invitation["id"])
    assert [(e["action"], e["actor"]["id"], e["after"]["org"]) for e in home_log] == [
        ("accept", str(person_id), inviting.slug)]


def test_declining_revoking_and_other_peoples_invitations(client, owner):
    home, inviting = make_org(owner, client), make_org(owner, client)
    person_id, email = home.users[Role.scientist]
    first = _invite(client, inviting, email).json()
    # Someone else, an API key, an unknown id: all alike, and nothing decided.
    for headers in (home.headers(Role.technician), inviting.headers(Role.admin)):
        r = client.post(f"/api/v1/me/invitations/{first['id']}/accept", headers=headers)
        assert r.status_code == 404
    key = client.post("/api/v1/apikeys", json={"name": "k", "role": "admin"}, headers=home.headers(Role.owner)).json()
    r = client.get("/api/v1/me/invitations", headers={"Authorization": f"Bearer {key['key']}"})
    assert r.status_code == 403
    unknown = client.post(f"/api/v1/me/invitations/{uuid.uuid4()}/decline", headers=home.headers(Role.scientist))
    assert unknown.status_code == 404

    r = client.post(f"/api/v1/me/invitations/{first['id']}/decline", headers=home.headers(Role.scientist))
    assert r.status_code == 200 and r.json()["status"] == "declined"
    declined = _audit(client, inviting, entity_id=first["id"], action="decline")
    assert len(declined) == 1 and declined[0]["actor"]["type"] == "invitee"
    assert str(person_id) not in str(declined[0]) and f"scientist of {home.slug}" not in str(declined[0])
    assert _audit(client, home, entity_id=first["id"], action="decline")

    # A second invitation, withdrawn before the answer: gone from the person's list, cannot be accepted.
    second = _invite(client, inviting, email).json()
    assert _invite(client, inviting, email).status_code == 409  # one pending invitation at a time
    r = client.delete(f"/api/v1/invitations/{second['id']}", headers=inviting.headers(Role.admin))
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert client.get("/api/v1/me/invitations", headers=home.headers(Role.scientist)).json() == []
    r = client.post(f"/api/v1/me/invitations/{second['id']}/accept", headers=home.headers(Role.scientist))
    assert r.status_code == 404
    assert _login(client, email, org=inviting.slug).status_code == 401
    # Another org cannot withdraw it, or see it.
    assert client.delete(f"/api/v1/invitations/{second['id']}", headers=home.headers(Role.admin)).status_code == 404
    assert client.get("/api/v1/invitations", headers=home.headers(Role.admin)).json() == []


def test_a_new_account_joins_by_logging_in_to_the_inviting_organization(client, owner):
    org = make_org(owner, client)
    email = f"new-{uuid.uuid4().hex[:8]}@example.org"
    assert _invite(client, org, email, role="technician").status_code == 201
    r = _login(client, email, OTHER_PASSWORD)
    assert r.status_code == 422 and org.slug in r.text  # no organization yet: name the one to join
    r = _login(client, email, OTHER_PASSWORD, org=org.slug)
    assert r.status_code == 200, r.text
    assert (r.json()["org"], r.json()["role"], r.json()["display_name"]) == (org.slug, "technician", "Invited Person")
    assert _login(client, email, OTHER_PASSWORD).status_code == 200  # one organization now: nothing to name
    assert _invite(client, org, email).status_code == 409  # already a member
    assert any(e["action"] == "accept" for e in _audit(client, org, entity_type="invitation"))


def test_flight_sql_login_names_the_organization_in_the_username(client, owner, platform):
    home, inviting = make_org(owner, client), make_org(owner, client)
    person_id, email = home.users[Role.auditor]
    invitation = _invite(client, inviting, email).json()
    client.post(f"/api/v1/me/invitations/{invitation['id']}/accept", headers=home.headers(Role.auditor))
    flight = PlatformAuthenticator(platform.sessions, platform.settings)
    there = flight.authenticate(f"{inviting.slug}/{email}", PASSWORD, None)
    here = flight.authenticate(f"{home.slug}/{email}", PASSWORD, None)
    assert there is not None and (there.org_id, there.role) == (str(inviting.id), "analyst")
    assert here is not None and (here.org_id, here.role) == (str(home.id), "auditor")
    # Without the organization: told how to name it (the password held), and not counted as a
    # wrong password (no lockout, no alarm).
    for _ in range(6):
        with pytest.raises(LoginRefused, match=f"log in as <org-slug>/{email}") as refused:
            flight.authenticate(email, PASSWORD, None)
        assert home.slug in str(refused.value) and inviting.slug in str(refused.value)
    assert not _audit(client, home, action="login", severity="warning")
    assert flight.authenticate(f"{home.slug}/{email}", PASSWORD, None) is not None
    # A wrong password learns nothing of the organizations.
    assert flight.authenticate(email, "not the password", None) is None


def test_an_expired_invitation_can_be_followed_by_a_new_one(client, owner):
    home, inviting = make_org(owner, client), make_org(owner, client)
    email = home.users[Role.analyst][1]
    first = _invite(client, inviting, email).json()
    with owner.begin(None) as s:  # fourteen days pass without an answer
        s.execute(text("UPDATE invitations SET expires_at = now() - interval '1 minute' WHERE id = :i"),
                  {"i": first["id"]})
    assert client.get("/api/v1/me/invitations", headers=home.headers(Role.analyst)).json() == []
    r = client.post(f"/api/v1/me/invitations/{first['id']}/accept", headers=home.headers(Role.analyst))
    assert r.status_code == 404
    second = _invite(client, inviting, email)
    assert second.status_code == 201, second.text
    listed = {i["id"]: i["status"]
              for i in client.get("/api/v1/invitations", headers=inviting.headers(Role.admin)).json()}
    assert listed == {first["id"]: "expired", second.json()["id"]: "pending"}
    r = client.post(f"/api/v1/me/invitations/{second.json()['id']}/accept", headers=home.headers(Role.analyst))
    assert r.status_code == 200, r.text
