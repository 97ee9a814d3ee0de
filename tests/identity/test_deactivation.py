"""Deactivating a member over the API: the person's sessions end, the reason is on record, the last owner and
oneself are refused (nothing changes)."""

from __future__ import annotations

from sqlalchemy import text

from domain.roles import Role
from tests.support import make_org


def test_a_deactivated_member_is_logged_out_and_the_reason_is_on_record(client, owner):
    org = make_org(owner, client)
    admin = org.headers(Role.admin)
    user = org.users[Role.technician][0]
    missing = client.post(f"/api/v1/members/{user}/deactivate", json={}, headers=admin)
    assert missing.status_code == 422
    r = client.post(f"/api/v1/members/{user}/deactivate", json={"reason": "left the lab"}, headers=admin)
    assert r.status_code == 200 and r.json()["active"] is False
    assert client.get("/api/v1/me", headers=org.headers(Role.technician)).status_code == 401
    again = client.post(f"/api/v1/members/{user}/deactivate", json={"reason": "twice"}, headers=admin)
    assert again.status_code == 409
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": str(org.id)})
    entries = client.get("/api/v1/audit", params={"action": "deactivate", "entity_id": str(user)},
                         headers=org.headers(Role.auditor)).json()["items"]
    assert len(entries) == 1 and entries[0]["reason"] == "left the lab"
    assert entries[0]["before"]["active"] is True and entries[0]["after"]["active"] is False


def test_the_last_owner_and_oneself_cannot_be_deactivated(client, owner):
    org = make_org(owner, client)
    owner_id, admin_id = org.users[Role.owner][0], org.users[Role.admin][0]
    r = client.post(f"/api/v1/members/{owner_id}/deactivate", json={"reason": "x"}, headers=org.headers(Role.admin))
    assert r.status_code == 409 and "last owner" in r.json()["detail"]
    r = client.post(f"/api/v1/members/{admin_id}/deactivate", json={"reason": "x"}, headers=org.headers(Role.admin))
    assert r.status_code == 409 and "yourself" in r.json()["detail"]
    assert client.get("/api/v1/me", headers=org.headers(Role.owner)).status_code == 200
