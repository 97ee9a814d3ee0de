"""Enforcement during execution, through the API on the dev server and the real worker: a checklist item attaches
to a task by its scope and blocks completion until confirmed; a tag that appears mid-run attaches another (on
record by the system); a run whose surface needs an authorization waits on hold from launch until an approver
signs one, then goes on by itself; a step requiring a qualification refuses a person whose training expired."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from types import SimpleNamespace

from sqlalchemy import text

from domain.roles import Role
from tests.compliance.support import BASE, agro_material, derive, tag
from tests.runs.conftest import wait_for
from tests.runs.support import PASSWORD_OF, approve_protocol
from tests.samples.material import sample, seal
from tests.support import make_org


def subculture(key: str, qualification: str | None = None) -> dict:
    step = {"key": "transfer", "kind": "task", "title": "Transfer to fresh medium", "roles": ["technician"],
            "form": {"key": f"{key.replace('-', '_')}_transfer", "fields": [
                {"key": "plates", "label": "Plates", "type": "integer", "min": 1, "max": 100}]},
            "checklist": [{"key": "hood_clean", "text": "Flow hood wiped down"}]}
    if qualification:
        step["requires_qualification"] = qualification
    return {"key": key, "title": f"Subculture {key}", "steps": [step]}


def launch(client, org, key: str, subject: str) -> str:
    r = client.post("/api/v1/runs", json={"protocol_key": key, "subjects": [{"type": "sample", "id": subject}]},
                    headers={**org.headers(Role.lab_manager), "X-Request-ID": str(uuid.uuid4())})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def open_task(client, org, run_id: str) -> dict:
    def found():
        r = client.get("/api/v1/tasks", params={"run_id": run_id, "status": "open"},
                       headers=org.headers(Role.technician))
        return r.json()[0] if r.status_code == 200 and r.json() else None
    return wait_for(found)


def complete(client, org, task_id: str, checklist: list[str], role: Role = Role.technician):
    return client.post(f"/api/v1/tasks/{task_id}/complete", json={"values": {"plates": 4}, "checklist": checklist},
                       headers={**org.headers(role), "X-Request-ID": str(uuid.uuid4())})


def run_status(client, org, run_id: str) -> dict:
    r = client.get(f"/api/v1/runs/{run_id}/compliance-status", headers=org.headers(Role.auditor))
    assert r.status_code == 200, r.text
    return r.json()


def actions(owner, org, action: str) -> list[SimpleNamespace]:
    """The organization's sealed audit entries of one action, oldest first."""
    seal(owner, org.id)
    with owner.begin(None) as s:
        rows = s.execute(text("SELECT body FROM audit_log WHERE org_id = :o AND action = :a ORDER BY seq"),
                         {"o": org.id, "a": action}).all()
    bodies = [json.loads(bytes(r.body)) for r in rows]
    return [SimpleNamespace(actor_id=b["actor"]["id"], entity_id=b["entity"]["id"], reason=b["reason"],
                            after=b["after"]) for b in bodies]


def item(client, org, framework_id: str, key: str, scope: dict) -> None:
    r = client.post(f"{BASE}/frameworks/{framework_id}/items",
                    json={"key": key, "text": f"{key} done", "scope": scope}, headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text


def test_checklist_attaches_by_scope_blocks_completion_and_follows_a_mid_run_tag(client, owner):
    org = make_org(owner, client)
    m = agro_material(client, org)
    tag(client, org, "recombinant_dna", "plasmid", m["plasmid"]["id"])
    fw = client.post(f"{BASE}/frameworks", json={"key": "nih", "name": "NIH Guidelines"},
                     headers=org.headers(Role.lab_manager)).json()
    item(client, org, fw["id"], "rdna_waste", {"any": ["recombinant_dna"], "step_kind": "task"})
    item(client, org, fw["id"], "bsc_used", {"all": ["recombinant_dna", "BSL-2"]})
    item(client, org, fw["id"], "not_for_us", {"any": ["recombinant_dna"], "none": ["recombinant_dna"]})
    key = f"sub-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, subculture(key))
    run_id = launch(client, org, key, m["plate"]["code"])
    task = open_task(client, org, run_id)
    assert [c["key"] for c in task["checklist"]] == ["hood_clean", "compliance_rdna_waste"]
    wait_for(lambda: actions(owner, org, "attach_requirement"))
    assert run_status(client, org, run_id)["status"] == "action_needed"

    refused = complete(client, org, task["id"], ["hood_clean"])
    assert refused.status_code == 422, refused.text
    assert any("compliance_rdna_waste" in why for why in refused.json()["reasons"])

    # The strain turns out to be BSL-2: the open task needs the biosafety cabinet item too, on record by the system.
    tag(client, org, "BSL-2", "strain", m["strain"]["id"])
    attached = actions(owner, org, "attach_requirement")
    assert [a.after["item"] for a in attached] == ["compliance_rdna_waste", "compliance_bsc_used"]
    assert {a.actor_id for a in attached} == {"flasktrack"}
    assert "BSL-2" in attached[-1].reason and "tag 'BSL-2' attached" in attached[-1].reason
    task = open_task(client, org, run_id)
    assert [c["key"] for c in task["checklist"]] == ["hood_clean", "compliance_bsc_used", "compliance_rdna_waste"]
    refused = complete(client, org, task["id"], ["hood_clean", "compliance_rdna_waste"])
    assert refused.status_code == 422 and "compliance_bsc_used" in refused.text

    done = complete(client, org, task["id"], ["hood_clean", "compliance_rdna_waste", "compliance_bsc_used"])
    assert done.status_code == 200, done.text
    passed = actions(owner, org, "compliance_gate_passed")
    assert passed[0].entity_id == task["id"]
    assert sorted(passed[0].after["confirmed"]) == ["compliance_bsc_used", "compliance_rdna_waste"]


def test_authorization_hold_at_launch_lifts_when_the_ibc_approval_is_signed(client, owner):
    org = make_org(owner, client)
    m = agro_material(client, org)
    tag(client, org, "recombinant_dna", "plasmid", m["plasmid"]["id"])
    r = client.post(f"{BASE}/authorization-rules", json={"tags": ["recombinant_dna"],
                                                         "authorization_type": "IBC approval"},
                    headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    key = f"sub-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, subculture(key))
    run_id = launch(client, org, key, m["plate"]["code"])

    def held():
        got = client.get(f"/api/v1/runs/{run_id}", headers=org.headers(Role.lab_manager)).json()
        return got if got["status"] == "on_hold" else None
    run = wait_for(held)
    assert run["status_reason"] == (f"authorization hold: recombinant_dna needs IBC approval covering protocol {key}")
    status = run_status(client, org, run_id)
    assert status["status"] == "on_hold" and "IBC approval" in status["reasons"][0]
    hold = actions(owner, org, "authorization_hold")
    assert hold[0].actor_id == "flasktrack" and hold[0].entity_id == run_id
    # A manager cannot resume it by hand: it waits for the authorization.
    r = client.post(f"/api/v1/runs/{run_id}/resume", json={"reason": "go on"},
                    headers={**org.headers(Role.lab_manager), "X-Request-ID": str(uuid.uuid4())})
    assert r.status_code == 409 and "authorization hold" in r.text

    now = dt.datetime.now(dt.UTC)
    r = client.post(f"{BASE}/authorizations", json={
        "authorization_type": "IBC approval", "title": "IBC-2026-14 Agrobacterium transformation of tobacco",
        "issuer": "Institutional Biosafety Committee", "protocol_keys": [key],
        "valid_from": (now - dt.timedelta(days=1)).isoformat(),
        "valid_until": (now + dt.timedelta(days=365)).isoformat()},
        headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    auth = r.json()
    assert auth["status"] == "pending" and not auth["in_force"]
    wrong = client.post(f"{BASE}/authorizations/{auth['id']}/sign", json={"password": "not it"},
                        headers=org.headers(Role.admin))
    assert wrong.status_code == 403
    assert wait_for(lambda: client.get(f"/api/v1/runs/{run_id}", headers=org.headers(Role.lab_manager)).json()
                    )["status"] == "on_hold"
    signed = client.post(f"{BASE}/authorizations/{auth['id']}/sign", json={"password": PASSWORD_OF},
                         headers=org.headers(Role.admin))
    assert signed.status_code == 200, signed.text
    assert signed.json()["in_force"] and signed.json()["approved_by_display"] == f"admin of {org.slug}"

    task = open_task(client, org, run_id)  # the run went on by itself: its first step opened
    assert client.get(f"/api/v1/runs/{run_id}", headers=org.headers(Role.lab_manager)).json()["status"] == "running"
    assert [a.entity_id for a in actions(owner, org, "authorization_release")] == [run_id]
    assert complete(client, org, task["id"], ["hood_clean"]).status_code == 200


def test_a_step_requiring_a_qualification_refuses_an_expired_one_naming_it(client, owner):
    org = make_org(owner, client)
    key = f"qual-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, subculture(key, qualification="biosafety_bsl2"))
    tech_id = str(org.users[Role.technician][0])
    today = dt.date.today()
    r = client.post(f"{BASE}/qualifications", json={
        "user_id": tech_id, "course": "biosafety_bsl2", "completed_on": str(today - dt.timedelta(days=400)),
        "expires_on": str(today - dt.timedelta(days=35))}, headers=org.headers(Role.lab_manager))
    assert r.status_code == 201 and r.json()["current"] is False, r.text
    run_id = launch(client, org, key, "S-1")
    task = open_task(client, org, run_id)
    refused = complete(client, org, task["id"], ["hood_clean"])
    assert refused.status_code == 403, refused.text
    expired = (today - dt.timedelta(days=35)).isoformat()
    assert refused.json()["reasons"] == [f"qualification: 'biosafety_bsl2' expired on {expired}; step 'transfer' "
                                         "requires a current one"]
    refusals = actions(owner, org, "refuse")
    assert refusals and "biosafety_bsl2" in refusals[-1].reason

    r = client.post(f"{BASE}/qualifications", json={
        "user_id": tech_id, "course": "biosafety_bsl2", "completed_on": str(today),
        "expires_on": str(today + dt.timedelta(days=365))}, headers=org.headers(Role.lab_manager))
    assert r.status_code == 201
    assert complete(client, org, task["id"], ["hood_clean"]).status_code == 200


def test_a_parent_found_mid_run_brings_its_checklist_item_to_the_open_task(client, owner):
    org = make_org(owner, client)
    m = agro_material(client, org)
    tag(client, org, "recombinant_dna", "plasmid", m["plasmid"]["id"])
    fw = client.post(f"{BASE}/frameworks", json={"key": "nih", "name": "NIH Guidelines"},
                     headers=org.headers(Role.lab_manager)).json()
    item(client, org, fw["id"], "rdna_waste", {"any": ["recombinant_dna"]})
    orphan = sample(client, org, sample_type="plate")
    key = f"sub-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, subculture(key))
    run_id = launch(client, org, key, orphan["code"])
    task = open_task(client, org, run_id)
    assert [c["key"] for c in task["checklist"]] == ["hood_clean"]
    assert run_status(client, org, run_id)["status"] == "compliant"

    derive(client, org, orphan["id"], [m["callus"]["id"]], "subculture")  # it came from the transformed callus
    attached = actions(owner, org, "attach_requirement")
    assert [(a.entity_id, a.after["item"]) for a in attached] == [(task["id"], "compliance_rdna_waste")]
    assert "has new parents" in attached[0].reason
    task = open_task(client, org, run_id)
    assert [c["key"] for c in task["checklist"]] == ["hood_clean", "compliance_rdna_waste"]
    assert complete(client, org, task["id"], ["hood_clean"]).status_code == 422
