"""A completion takes only real evidence files of the organization, and links them to the task (and to the
checklist items it names) in its own transaction, once whatever the retries."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from domain.roles import Role
from tests.evidence.support import CSV, audit_entries, png, uploaded
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol, one_task, open_tasks
from tests.support import Org, make_org


def _task_with_photo(client: Any, owner: Any, org: Org) -> dict[str, Any]:
    """A launched one-task run whose form has an optional evidence_ref field `photo`: its open task."""
    key = f"ev-{uuid.uuid4().hex[:6]}"
    document = one_task(key, due=None)
    document["steps"][0]["form"]["fields"].append(
        {"key": "photo", "label": "Photo of the balance", "type": "evidence_ref", "required": False})
    approve_protocol(owner, org.id, document)
    r = client.post("/api/v1/runs", json={"protocol_key": key}, headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    return wait_for(lambda: next(iter(open_tasks(client, org, r.json()["id"])), None), timeout=30)


def _complete(client: Any, org: Org, task_id: str, request_id: str | None = None, **body: Any) -> Any:
    payload = {"values": {"mass_g": "12.5"}, "checklist": ["balance_calibrated"], **body}
    return client.post(f"/api/v1/tasks/{task_id}/complete", json=payload,
                       headers={**org.headers(Role.technician), "X-Request-ID": request_id or str(uuid.uuid4())})


def _links(owner: Any, org: Org, task_id: str) -> list[tuple[str, str, str, str | None]]:
    with owner.begin(None) as s:
        rows = s.execute(text("SELECT evidence_id, target_type, target_id, detail FROM evidence_links"
                              " WHERE org_id = :o AND target_id = :t ORDER BY target_type, detail NULLS FIRST"),
                         {"o": org.id, "t": task_id}).all()
    return [(str(r.evidence_id), r.target_type, r.target_id, r.detail) for r in rows]


def test_a_completion_links_its_evidence_once(client, temporal_api, owner) -> None:
    org = make_org(owner, client)
    task = _task_with_photo(client, owner, org)
    photo = uploaded(client, org, png(31), filename="balance.png")
    readings = uploaded(client, org, CSV, filename="readings.csv", content_type="text/csv")
    log = uploaded(client, org, png(32), filename="calibration log.png")
    rid = f"complete-{uuid.uuid4()}"
    body = {"evidence": [readings["id"]], "checklist_evidence": {"balance_calibrated": [log["id"]]}}
    done = _complete(client, org, task["id"], rid, values={"mass_g": "12.5", "photo": photo["id"]}, **body)
    assert done.status_code == 200, done.text
    expected = [(readings["id"], "task", task["id"], None), (photo["id"], "task", task["id"], "values.photo"),
                (log["id"], "checklist_item", task["id"], "balance_calibrated")]
    assert sorted(_links(owner, org, task["id"])) == sorted(expected)
    # The retried request gets the first answer and links nothing twice.
    again = _complete(client, org, task["id"], rid, values={"mass_g": "12.5", "photo": photo["id"]}, **body)
    assert again.status_code == 200 and again.json()["submission_id"] == done.json()["submission_id"], again.text
    assert sorted(_links(owner, org, task["id"])) == sorted(expected)
    # The file shows what it proves; the completion's entry names the bytes.
    shown = client.get(f"/api/v1/evidence/{log['id']}", headers=org.headers(Role.auditor)).json()
    assert [(x["target_type"], x["target_id"], x["detail"]) for x in shown["links"]] == [
        ("checklist_item", task["id"], "balance_calibrated")]
    [entry] = audit_entries(owner, org, "complete", task["id"])
    assert entry["after"]["evidence_sha256"] == {e["id"]: e["sha256"] for e in (photo, readings, log)}
    listed = client.get("/api/v1/evidence", params={"target_type": "task", "target_id": task["id"]},
                        headers=org.headers(Role.lab_manager)).json()["items"]
    assert {e["id"] for e in listed} == {photo["id"], readings["id"]}


def test_an_unknown_or_foreign_evidence_id_is_refused_and_nothing_completes(client, temporal_api, owner) -> None:
    org, other = make_org(owner, client), make_org(owner, client)
    task = _task_with_photo(client, owner, org)
    theirs = uploaded(client, other, png(33))["id"]
    missing = str(uuid.uuid4())
    ours = uploaded(client, org, png(34))["id"]
    for body, path, named in (
            ({"evidence": [ours, missing]}, "evidence[1]", missing),
            ({"evidence": [theirs]}, "evidence[0]", theirs),  # another organization's file is no file here
            ({"evidence": ["EV-2024-0311"]}, "evidence[0]", "EV-2024-0311"),  # an id that names nothing
            ({"values": {"mass_g": "12.5", "photo": theirs}}, "values.photo", theirs),
            ({"checklist_evidence": {"balance_calibrated": [missing]}}, "checklist_evidence.balance_calibrated[0]",
             missing),
            ({"checklist_evidence": {"no_such_item": [ours]}}, "checklist_evidence.no_such_item", "not on this")):
        r = _complete(client, org, task["id"], **body)
        assert r.status_code == 422, (body, r.text)
        assert any(reason.startswith(f"{path}:") and named in reason for reason in r.json()["reasons"]), r.text
    state = client.get(f"/api/v1/tasks/{task['id']}", headers=org.headers(Role.technician)).json()
    assert state["status"] == "open" and _links(owner, org, task["id"]) == []
    with owner.begin(None) as s:
        assert s.execute(text("SELECT count(*) FROM evidence_links WHERE org_id = :o"),
                         {"o": other.id}).scalar_one() == 0
    assert _complete(client, org, task["id"], evidence=[ours]).status_code == 200
