"""Protocol versions over HTTP with the real app: author, validate, submit, sign, never change, new version, retire."""

from __future__ import annotations

import secrets

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain.roles import Role
from flasktrack.demo import DEMO_ORG, DEMO_PASSWORD, seed_demo
from tests.support import PASSWORD

API = "/api/v1/protocols"


def new_key() -> str:
    return f"media-check-{secrets.token_hex(3)}"


def document(key: str, title: str = "Media pH check") -> dict:
    return {
        "key": key,
        "title": title,
        "regulatory_tags": ["BSL-1"],
        "steps": [
            {
                "kind": "task",
                "key": "measure",
                "title": "Measure the pH",
                "roles": ["technician"],
                "due": "PT2H",
                "form": {"key": "ph_check", "fields": [{"key": "ph", "label": "pH", "type": "number", "min": 0,
                                                        "max": 14, "precision": 2}]},
            },
            {"kind": "approval", "key": "sign_off", "title": "Sign off", "roles": ["lab_manager"],
             "meaning": "approved"},
        ],
    }


def broken(key: str) -> dict:
    doc = document(key)
    step = doc["steps"][0]
    step["roles"] = ["janitor"]
    step["due"] = "P1M"
    step["form"]["fields"][0]["max"] = -1
    return doc


def audit_actions(client, org, entity_type: str, entity_id: str) -> list[dict]:
    r = client.get("/api/v1/audit", params={"entity_type": entity_type, "entity_id": entity_id, "limit": 1000},
                   headers=org.headers(Role.auditor))
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["items"]))  # oldest first


def create(client, org, role: Role = Role.scientist, key: str | None = None) -> dict:
    r = client.post(API, json={"definition": document(key or new_key())}, headers=org.headers(role))
    assert r.status_code == 201, r.text
    return r.json()


def call(client, org, role: Role, method: str, path: str, **kwargs):
    return client.request(method, f"{API}/{path}", headers=org.headers(role), **kwargs)


def approve_body(password: str = PASSWORD, meaning: str = "approved") -> dict:
    return {"password": password, "meaning": meaning, "reason": "fit for use"}


def test_lifecycle_from_draft_to_retired(client, org_a, platform, owner):
    key = new_key()
    # Created from YAML text: draft version 1, no problems.
    r = client.post(API, json={"yaml": yaml.safe_dump(document(key))}, headers=org_a.headers(Role.scientist))
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert (v1["protocol_key"], v1["version"], v1["status"], v1["problems"]) == (key, 1, "draft", [])
    assert v1["author"]["name"] == f"scientist of {org_a.slug}" and v1["plan"] is None and v1["approval"] is None

    # Validation shows every problem with its path and stores nothing.
    r = client.post(f"{API}/validate", json={"definition": broken(key)}, headers=org_a.headers(Role.scientist))
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["ok"] is False and result["plan"] is None
    paths = {p["path"] for p in result["problems"]}
    assert {"steps[0].roles[0]", "steps[0].due", "steps[0].form.fields[0].max"} <= paths, result
    assert call(client, org_a, Role.scientist, "GET", f"{key}/versions").json()[0]["content_hash"] == v1["content_hash"]
    ok = client.post(f"{API}/validate", json={"yaml": yaml.safe_dump(document(key))},
                     headers=org_a.headers(Role.scientist)).json()
    assert ok["ok"] is True and ok["content_hash"] == v1["content_hash"] and ok["plan"]["protocol_key"] == key

    # A draft may hold problems; submitting it is refused with all of them, and nothing changes.
    r = call(client, org_a, Role.scientist, "PUT", f"{key}/versions/1", json={"definition": broken(key)})
    assert r.status_code == 200 and len(r.json()["problems"]) >= 3, r.text
    r = call(client, org_a, Role.scientist, "POST", f"{key}/versions/1/submit")
    assert r.status_code == 422, r.text
    reasons = r.json()["reasons"]
    assert any(x.startswith("steps[0].roles[0]: unknown role 'janitor'") for x in reasons), reasons
    assert any(x.startswith("steps[0].form.fields[0].max:") for x in reasons), reasons
    assert call(client, org_a, Role.scientist, "GET", f"{key}/versions/1").json()["status"] == "draft"
    assert "submit" not in [e["action"] for e in audit_actions(client, org_a, "protocol_version", v1["id"])]
    r = call(client, org_a, Role.scientist, "PUT", f"{key}/versions/1",
             json={"definition": document(key), "reason": "fixed roles, due time and pH range"})
    assert r.status_code == 200 and r.json()["problems"] == [], r.text

    # Submit: compiled, plan stored, in review.
    r = call(client, org_a, Role.scientist, "POST", f"{key}/versions/1/submit")
    assert r.status_code == 200, r.text
    submitted = r.json()
    assert submitted["status"] == "in_review" and submitted["submitted_at"]
    assert submitted["plan"]["content_hash"] == submitted["content_hash"] == v1["content_hash"]
    assert submitted["plan"]["steps_index"]["measure"]["kind"] == "task"

    # The author cannot approve; a wrong password is refused and on record; the right one signs.
    r = call(client, org_a, Role.scientist, "POST", f"{key}/versions/1/approve", json=approve_body())
    assert r.status_code == 403, r.text
    r = call(client, org_a, Role.lab_manager, "POST", f"{key}/versions/1/approve", json=approve_body("wrong one"))
    assert r.status_code == 403 and "password" in r.json()["detail"], r.text
    denials = audit_actions(client, org_a, "endpoint", f"POST {API}/{key}/versions/1/approve")
    assert [e["action"] for e in denials] == ["deny", "deny"]
    assert "password" in denials[-1]["reason"] and denials[-1]["actor"]["display"] == f"lab_manager of {org_a.slug}"
    assert call(client, org_a, Role.scientist, "GET", f"{key}/versions/1").json()["status"] == "in_review"
    r = call(client, org_a, Role.lab_manager, "POST", f"{key}/versions/1/approve", json=approve_body())
    assert r.status_code == 200, r.text
    approved = r.json()
    signature = approved["approval"]
    assert approved["status"] == "approved" and approved["approved_at"]
    assert signature["signer"]["name"] == f"lab_manager of {org_a.slug}" and signature["meaning"] == "approved"
    assert signature["content_hash"] == approved["content_hash"] and signature["signed_at"]
    with owner.begin(org_a.id) as s:
        rows = s.execute(text("SELECT content_hash, meaning, entity_id FROM signatures WHERE entity_type = "
                              "'protocol_version' AND entity_id = :v"), {"v": v1["id"]}).all()
    assert [tuple(row) for row in rows] == [(approved["content_hash"], "approved", v1["id"])]

    # Approved means immutable: the API refuses, and so does the database for the app's own role.
    r = call(client, org_a, Role.scientist, "PUT", f"{key}/versions/1", json={"definition": document(key, "Other")})
    assert r.status_code == 409 and "approved" in r.json()["detail"] and "new draft" in r.json()["detail"], r.text
    r = call(client, org_a, Role.scientist, "POST", f"{key}/versions/1/submit")
    assert r.status_code == 409 and "approved" in r.json()["detail"] and "in_review" in r.json()["detail"], r.text
    for sessions, statement, refusal in (
        (platform.sessions, "UPDATE protocol_versions SET definition = '{}'::jsonb WHERE id = :v", "immutable"),
        (platform.sessions, "UPDATE protocol_versions SET status = 'draft' WHERE id = :v", "immutable"),
        (platform.sessions, "DELETE FROM protocol_versions WHERE id = :v", "permission denied"),  # no grant
        (owner, "UPDATE protocol_versions SET content_hash = 'x' WHERE id = :v", "immutable"),  # even the owner
        (owner, "DELETE FROM protocol_versions WHERE id = :v", "cannot be deleted"),
    ):
        with pytest.raises(DBAPIError, match=refusal):
            with sessions.begin(org_a.id) as s:
                s.execute(text(statement), {"v": v1["id"]})
    assert call(client, org_a, Role.auditor, "GET", f"{key}/versions/1").json()["definition"] == document(key)

    # A change is a new draft version; the approved one stays approved and findable by its hash.
    r = call(client, org_a, Role.scientist, "POST", f"{key}/versions", json={})
    assert r.status_code == 201, r.text
    v2 = r.json()
    assert (v2["version"], v2["status"], v2["content_hash"]) == (2, "draft", v1["content_hash"])
    assert call(client, org_a, Role.scientist, "POST", f"{key}/versions", json={}).status_code == 409  # one open
    r = call(client, org_a, Role.scientist, "PUT", f"{key}/versions/2",
             json={"yaml": yaml.safe_dump(document(key, "Media pH check, two readings"))})
    assert r.status_code == 200 and r.json()["content_hash"] != v1["content_hash"], r.text
    r = call(client, org_a, Role.technician, "GET", f"{key}/versions/by-hash/{v1['content_hash']}")
    assert r.status_code == 200 and r.json()["version"] == 1 and r.json()["status"] == "approved", r.text
    assert call(client, org_a, Role.scientist, "POST", f"{key}/versions/2/submit").status_code == 200
    r = call(client, org_a, Role.admin, "POST", f"{key}/versions/2/approve", json=approve_body())
    assert r.status_code == 200, r.text
    protocol = call(client, org_a, Role.technician, "GET", key).json()
    assert protocol["approved_versions"] == [1, 2] and protocol["title"] == "Media pH check, two readings"

    # Retire version 1, with a reason; retiring twice names both states.
    r = call(client, org_a, Role.lab_manager, "POST", f"{key}/versions/1/retire", json={})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason", r.text
    r = call(client, org_a, Role.lab_manager, "POST", f"{key}/versions/1/retire", json={"reason": "superseded by v2"})
    assert r.status_code == 200 and r.json()["status"] == "retired" and r.json()["retired_at"], r.text
    assert r.json()["approval"]["signer"]["name"] == f"lab_manager of {org_a.slug}"  # the signature stays
    r = call(client, org_a, Role.lab_manager, "POST", f"{key}/versions/1/retire", json={"reason": "again"})
    assert r.status_code == 409 and "retired" in r.json()["detail"] and "approved" in r.json()["detail"], r.text
    assert call(client, org_a, Role.technician, "GET", key).json()["approved_versions"] == [2]

    # Every transition is on record for the version, with before, after and reason.
    entries = audit_actions(client, org_a, "protocol_version", v1["id"])
    assert [e["action"] for e in entries] == ["create", "update", "update", "submit", "approve", "retire"]
    assert entries[1]["before"]["definition"] == document(key) and entries[1]["after"]["definition"] == broken(key)
    assert entries[2]["reason"] == "fixed roles, due time and pH range"
    assert [(e["before"]["status"], e["after"]["status"]) for e in entries[3:]] == [
        ("draft", "in_review"), ("in_review", "approved"), ("approved", "retired")]
    assert entries[4]["after"]["approval_signature_id"] == signature["signature_id"]
    assert entries[5]["reason"] == "superseded by v2"
    assert [e["action"] for e in audit_actions(client, org_a, "protocol_version", v2["id"])] == [
        "create", "update", "submit", "approve"]


def test_author_cannot_approve_own_version(client, org_a):
    v = create(client, org_a, Role.lab_manager)
    key = v["protocol_key"]
    assert call(client, org_a, Role.lab_manager, "POST", f"{key}/versions/1/submit").status_code == 200
    r = call(client, org_a, Role.lab_manager, "POST", f"{key}/versions/1/approve", json=approve_body())
    assert r.status_code == 403 and "segregation of duties" in r.json()["detail"], r.text
    r = call(client, org_a, Role.owner, "POST", f"{key}/versions/1/approve", json=approve_body(meaning="reviewed"))
    assert r.status_code == 422 and r.json()["reasons"] == ["meaning: must be 'approved'"], r.text
    r = call(client, org_a, Role.owner, "POST", f"{key}/versions/1/approve", json=approve_body())
    assert r.status_code == 200 and r.json()["approval"]["signer"]["name"] == f"owner of {org_a.slug}", r.text


def test_return_to_draft_and_wrong_transitions(client, org_a):
    v = create(client, org_a)
    key = v["protocol_key"]
    r = call(client, org_a, Role.lab_manager, "POST", f"{key}/versions/1/approve", json=approve_body())
    assert r.status_code == 409 and "draft" in r.json()["detail"] and "approved" in r.json()["detail"], r.text
    r = call(client, org_a, Role.lab_manager, "POST", f"{key}/versions/1/return", json={"reason": "x"})
    assert r.status_code == 409, r.text
    assert call(client, org_a, Role.scientist, "POST", f"{key}/versions/1/submit").status_code == 200
    r = call(client, org_a, Role.scientist, "PUT", f"{key}/versions/1", json={"definition": document(key, "New")})
    assert r.status_code == 409 and "in_review" in r.json()["detail"], r.text
    r = call(client, org_a, Role.lab_manager, "POST", f"{key}/versions/1/return",
             json={"reason": "state the pH meter model"})
    assert r.status_code == 200 and r.json()["status"] == "draft" and r.json()["plan"] is None, r.text
    assert call(client, org_a, Role.scientist, "POST", f"{key}/versions/1/submit").status_code == 200
    r = call(client, org_a, Role.scientist, "POST", f"{key}/versions/1/return", json={"reason": "typo in step 1"})
    assert r.status_code == 200 and r.json()["status"] == "draft", r.text
    r = call(client, org_a, Role.technician, "POST", f"{key}/versions/1/return", json={"reason": "no"})
    assert r.status_code == 403, r.text
    r = call(client, org_a, Role.admin, "PUT", f"{key}/versions/1", json={"definition": document(key, "Admin's")})
    assert r.status_code == 403 and "author" in r.json()["detail"], r.text
    entries = audit_actions(client, org_a, "protocol_version", v["id"])
    assert [(e["action"], e["reason"]) for e in entries] == [
        ("create", None), ("submit", None), ("reject", "state the pH meter model"), ("submit", None),
        ("withdraw", "typo in step 1")]


def test_roles_and_organizations(client, org_a, org_b):
    key = new_key()
    r = client.post(API, json={"definition": document(key)}, headers=org_a.headers(Role.technician))
    assert r.status_code == 403, r.text
    assert client.post(API, json={"definition": document(key)}, headers=org_a.headers(Role.auditor)).status_code == 403
    assert client.get(API, headers=org_a.headers(Role.analyst)).status_code == 403
    v = create(client, org_a, key=key)
    assert call(client, org_a, Role.analyst, "GET", key).status_code == 403
    assert call(client, org_a, Role.technician, "POST", f"{key}/versions/1/submit").status_code == 403
    listed = client.get(API, headers=org_a.headers(Role.technician)).json()
    assert key in [p["key"] for p in listed]
    # Another organization sees nothing of it, and may use the same key for its own protocol.
    for path in (key, f"{key}/versions", f"{key}/versions/1", f"{key}/versions/by-hash/{v['content_hash']}"):
        assert call(client, org_b, Role.owner, "GET", path).status_code == 404, path
    assert call(client, org_b, Role.scientist, "POST", f"{key}/versions/1/submit").status_code == 404
    assert key not in [p["key"] for p in client.get(API, headers=org_b.headers(Role.owner)).json()]
    assert create(client, org_b, key=key)["id"] != v["id"]
    r = client.post(API, json={"definition": document(key)}, headers=org_a.headers(Role.lab_manager))
    assert r.status_code == 409 and key in r.json()["detail"], r.text


def test_api_keys_do_not_author(client, org_a):
    r = client.post("/api/v1/apikeys", json={"name": "protocol-sync", "role": "scientist"},
                    headers=org_a.headers(Role.admin))
    assert r.status_code == 201, r.text
    headers = {"Authorization": f"Bearer {r.json()['key']}"}
    r = client.post(API, json={"definition": document(new_key())}, headers=headers)
    assert r.status_code == 403 and "API keys" in r.json()["detail"], r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "definition"),
        ({"definition": {"key": "x-y"}, "yaml": "key: x-y"}, "yaml"),
        ({"definition": {"title": "No key", "steps": []}}, "key"),
        ({"definition": {**document("ok-key"), "colour": "blue"}}, "colour"),
        ({"definition": document("1-starts-with-digit")}, "key"),
        ({"yaml": "key: a\nkey: b\n"}, "yaml (line 2, column 1)"),
        ({"yaml": "- just\n- a list\n"}, "yaml (document)"),
        ({"definition": document("ok-key"), "extra": 1}, "extra"),
        ({"definition": "not an object"}, "definition"),
    ],
)
def test_bad_input_is_refused_with_the_field_and_nothing_is_written(client, org_a, body, field):
    before = client.get(API, headers=org_a.headers(Role.owner)).json()
    r = client.post(API, json=body, headers=org_a.headers(Role.scientist))
    assert r.status_code == 422, r.text
    answer = r.json()
    fields = [e["field"] for e in answer.get("errors", [])] + [x.split(": ")[0] for x in answer.get("reasons", [])]
    assert any(f == field or f.startswith(field + ".") for f in fields), answer
    assert client.get(API, headers=org_a.headers(Role.owner)).json() == before


def test_demo_protocols_are_seeded_once(client, owner):
    seed_demo(owner)
    seed_demo(owner)  # a second start changes nothing
    r = client.post("/api/v1/auth/login", json={"email": "tech@demo.example.org", "password": DEMO_PASSWORD,
                                               "org": DEMO_ORG})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    protocols = client.get(API, headers=headers).json()
    assert sorted(p["key"] for p in protocols) == [
        "agrobacterium-transformation", "fungal-culture-passage", "plant-tissue-subculture"]
    for p in protocols:
        version = client.get(f"{API}/{p['key']}/versions/1", headers=headers).json()
        assert version["status"] == "approved" and p["approved_versions"] == [1]
        assert version["author"]["name"] == "Sam Scientist" and version["plan"]["version"] == 1
        assert version["approval"]["signer"]["name"] == "Maria Manager"
        assert version["approval"]["content_hash"] == version["content_hash"]


def test_validate_reports_every_layer_at_once(client, org_a):
    """A misshapen step does not hide the rule broken in the next one: both come back, by their paths."""
    doc = broken(new_key())
    doc["steps"][0]["colour"] = "blue"  # the shape's problem
    r = client.post(f"{API}/validate", json={"yaml": yaml.safe_dump(doc)}, headers=org_a.headers(Role.scientist))
    assert r.status_code == 200, r.text
    paths = [p["path"] for p in r.json()["problems"]]
    assert r.json()["ok"] is False and paths[0] == "steps[0].colour"
    assert {"steps[0].roles[0]", "steps[0].due", "steps[0].form.fields[0].max"} <= set(paths), paths
    created = client.post(API, json={"definition": doc}, headers=org_a.headers(Role.scientist))
    assert created.status_code == 422 and len(created.json()["reasons"]) == len(paths), created.text
