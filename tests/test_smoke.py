from domain.roles import Role


def test_login_create_and_audit_query(client, org_a):
    r = client.post("/api/v1/apikeys", json={"name": "lims", "role": "analyst"}, headers=org_a.headers(Role.admin))
    assert r.status_code == 201, r.text
    key = r.json()
    r = client.get("/api/v1/audit", params={"entity_type": "api_key"}, headers=org_a.headers(Role.auditor))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert items[0]["entity_id"] == key["id"] and items[0]["action"] == "create"
    r = client.get("/api/v1/audit/verify", headers=org_a.headers(Role.auditor))
    assert r.json()["status"] == "ok", r.json()
