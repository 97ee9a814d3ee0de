"""End to end over HTTP on the Temporal dev server: the real API, the real worker (a subprocess)."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from domain.protocols.loader import example_protocols
from domain.roles import Role
from tests.evidence.support import png, uploaded
from tests.runs.conftest import wait_for
from tests.runs.support import AGRO, PASSWORD_OF, approve_protocol, complete, open_tasks

FAST = 0.000001  # 48 h of co-cultivation in under a second (never under one second per timer)


def _launch(client, org, key: str, **extra):
    body = {"protocol_key": key, "subjects": [{"type": "batch", "id": "NT-B12"}], "parameters": {"construct": "pBIN19"},
            "time_scale": FAST, **extra}
    r = client.post("/api/v1/runs", json=body, headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    return r.json()


def _next(client, org, run_id: str, step_key: str, role: Role = Role.technician) -> dict:
    return wait_for(lambda: next((t for t in open_tasks(client, org, run_id, role) if t["step_key"] == step_key),
                                 None), timeout=30)


def test_agrobacterium_run_over_http(client, temporal_api, owner, org_a):
    approve_protocol(owner, org_a.id, example_protocols()["agrobacterium-transformation"])
    run = _launch(client, org_a, "agrobacterium-transformation")
    run_id = run["id"]
    assert run["status"] == "running" and run["time_scale"] == FAST and run["protocol_version"] >= 1

    # The two preparation branches open in parallel, with their forms and checklists.
    culture = _next(client, org_a, run_id, "culture_prep")
    explant = _next(client, org_a, run_id, "explant_prep")
    assert [i["key"] for i in culture["checklist"]] == AGRO["culture_prep"][1]
    assert culture["form"]["key"] == "agro_culture" and culture["roles"] == ["technician", "scientist"]

    # A refused completion answers every reason at once, and is on record.
    r = complete(client, org_a, culture["id"], {**AGRO["culture_prep"][0], "od600": 9}, ["bsc_disinfected"])
    assert r.status_code == 422, r.text
    reasons = r.json()["reasons"]
    assert "values.od600: above max 4" in reasons
    assert "checklist.strain_verified: not confirmed" in reasons and "checklist.gmo_waste: not confirmed" in reasons
    # The wrong role: 403 with the reason (lab managers may work tasks, not this step).
    r = complete(client, org_a, culture["id"], *AGRO["culture_prep"], role=Role.lab_manager)
    assert r.status_code == 403 and "may not perform step 'culture_prep'" in r.text

    r = complete(client, org_a, culture["id"], *AGRO["culture_prep"])
    assert r.status_code == 200, r.text
    assert r.json()["values"]["od600"] == "0.450"
    assert [t["step_key"] for t in r.json()["open_tasks"]] == ["explant_prep"]
    r = complete(client, org_a, explant["id"], *AGRO["explant_prep"])
    assert r.status_code == 200 and [t["step_key"] for t in r.json()["open_tasks"]] == ["inoculation"], r.text

    # Inoculation is due within 30 min (1 s here): it escalates, shows overdue, and the run keeps waiting.
    inoculation = r.json()["open_tasks"][0]
    wait_for(lambda: any(t["id"] == inoculation["task_id"] and t["escalation_level"] == 2 for t in client.get(
        "/api/v1/tasks", params={"overdue": True}, headers=org_a.headers(Role.technician)).json()), timeout=30)
    notes = client.get("/api/v1/notifications", headers=org_a.headers(Role.lab_manager)).json()
    assert any(n["task_id"] == inoculation["task_id"] for n in notes)
    r = complete(client, org_a, inoculation["task_id"], *AGRO["inoculation"])
    assert r.status_code == 200, r.text

    # Co-cultivation (48 h) passes; then selection, regeneration with overgrowth, so the rescue step runs.
    # Evidence is a real file of the organization: the plate photo is uploaded first, then named.
    photo = uploaded(client, org_a, png(991), filename="regeneration plate.png")["id"]
    for step in ("selection_transfer", "regeneration_check", "overgrowth_rescue"):
        task = _next(client, org_a, run_id, step)
        evidence = [photo] if step == "selection_transfer" else None
        values = {**AGRO[step][0], "photo": photo} if step == "regeneration_check" else AGRO[step][0]
        r = complete(client, org_a, task["id"], values, AGRO[step][1], evidence=evidence)
        assert r.status_code == 200, r.text

    approval = _next(client, org_a, run_id, "biosafety_release", Role.lab_manager)
    assert approval["kind"] == "approval" and approval["meaning"] == "approved"
    # A technician cannot sign; a wrong password is refused (403, on record); then the lab manager approves.
    r = client.post(f"/api/v1/runs/{run_id}/approvals", json={"decision": "approve", "password": "x"},
                    headers=org_a.headers(Role.technician))
    assert r.status_code == 403
    r = client.post(f"/api/v1/runs/{run_id}/approvals", json={"decision": "approve", "password": "wrong"},
                    headers=org_a.headers(Role.lab_manager))
    assert r.status_code == 403 and "password" in r.text
    r = client.post(f"/api/v1/runs/{run_id}/approvals", json={"decision": "approve", "password": PASSWORD_OF},
                    headers=org_a.headers(Role.lab_manager))
    assert r.status_code == 200, r.text
    assert r.json()["result"] == "approved" and r.json()["run_status"] == "completed"

    run = client.get(f"/api/v1/runs/{run_id}", headers=org_a.headers(Role.auditor)).json()
    assert run["status"] == "completed" and run["ended_at"] and run["open_tasks"] == []
    events = [(e["step_key"], e["event"]) for e in run["steps"]]
    assert ("", "run_started") in events and ("cocultivation", "timer_fired") in events
    assert ("inoculation", "escalated") in events and ("biosafety_release", "approved") in events
    assert events[-1] == ("", "run_completed")

    # The auditor's timeline: audit entries and Temporal's events, one story; and as a file.
    h = client.get(f"/api/v1/runs/{run_id}/history", headers=org_a.headers(Role.auditor))
    assert h.status_code == 200, h.text
    timeline = h.json()["timeline"]
    assert h.json()["temporal"]["available"] is True
    assert {"audit", "temporal"} == {t["source"] for t in timeline}
    kinds = [t["kind"] for t in timeline if t["source"] == "audit"]
    for action in ("launch", "open", "refuse", "complete", "escalate", "sign", "approve", "run_completed", "deny"):
        assert action in kinds, action
    d = client.get(f"/api/v1/runs/{run_id}/history", params={"download": 1}, headers=org_a.headers(Role.auditor))
    assert "attachment" in d.headers["content-disposition"] and d.json()["temporal_history"]["events"]

    # Signature bound to the reviewed records; the lake contract in the outbox.
    with owner.begin(None) as s:
        sig = s.execute(text("SELECT meaning, content_hash FROM signatures WHERE entity_type = 'task'"
                             " AND entity_id = :t"), {"t": approval["id"]}).one()
        outbox = s.execute(text("SELECT topic, payload FROM outbox WHERE payload->>'run_id' = :r ORDER BY id"),
                           {"r": run_id}).all()
    assert sig.meaning == "approved" and len(sig.content_hash) == 64
    topics = {o.topic for o in outbox}
    # … and the material the inoculation made: one explant plate per co-cultivation plate, derived from the
    # suspension by transformation (the protocol's `produces`), each with its custody entry.
    assert topics == {"run", "step_event", "form_submission", "lineage_edge", "sample_movement"}
    edges = [o.payload for o in outbox if o.topic == "lineage_edge"]
    assert len(edges) == 12 and {e["operation"] for e in edges} == {"transformation"}
    revisions = [o.payload for o in outbox if o.topic == "run"]
    assert [p["status"] for p in revisions] == ["running", "completed"] and [p["revision"] for p in revisions] == [1, 2]
    assert set(revisions[0]) == {"run_id", "org_id", "protocol_key", "protocol_version", "status", "launched_by",
                                 "launched_at", "updated_at", "ended_at", "subjects", "parameters", "time_scale",
                                 "revision"}
    assert revisions[0]["subjects"] == [{"type": "batch", "id": "NT-B12"}] and revisions[0]["time_scale"] == FAST
    event = next(o.payload for o in outbox if o.topic == "step_event" and o.payload["event"] == "completed")
    assert set(event) == {"event_id", "org_id", "run_id", "protocol_key", "protocol_version", "step_key", "step_kind",
                          "event", "iteration", "actor_type", "actor_id", "actor_display", "occurred_at", "detail"}
    assert event["occurred_at"].endswith("Z") and len(event["occurred_at"]) == 27
    form = next(o.payload for o in outbox if o.topic == "form_submission" and o.payload["step_key"] == "culture_prep")
    assert form["values"] == {"strain": "GV3101", "glycerol_stock": "GS-0042", "construct": "pBIN19-GFP",
                              "culture": "AG-2024-117", "overnight_temp_c": "28.0", "od600": "0.450",
                              "acetosyringone_um": "100"}
    assert form["fields"][0] == {"key": "strain", "label": "Agrobacterium strain", "type": "choice", "unit": None,
                                 "required": True}
    inoc = next(o.payload for o in outbox if o.topic == "form_submission" and o.payload["step_key"] == "inoculation")
    assert inoc["values"]["started_at"] == "2024-05-01T07:30:00.000000Z" and inoc["values"]["contact_min"] == 8


def test_retried_completion_acts_once_and_answers_the_first_result(client, temporal_api, owner, org_a):
    key = f"retry-{uuid.uuid4().hex[:6]}"
    from tests.runs.support import one_task

    approve_protocol(owner, org_a.id, one_task(key, due=None))
    run = _launch(client, org_a, key)
    task = _next(client, org_a, run["id"], "weigh")
    rid = str(uuid.uuid4())
    first = complete(client, org_a, task["id"], {"mass_g": "3.14"}, ["balance_calibrated"], request_id=rid)
    again = complete(client, org_a, task["id"], {"mass_g": "3.14"}, ["balance_calibrated"], request_id=rid)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["submission_id"] == again.json()["submission_id"]
    # A new request for the same task is refused: it is done.
    other = complete(client, org_a, task["id"], {"mass_g": "3.14"}, ["balance_calibrated"])
    assert other.status_code == 409
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_a.id})
        completes = s.execute(text("SELECT count(*) FROM audit_log WHERE entity_id = :t AND action = 'complete'"),
                              {"t": task["id"]}).scalar_one()
        forms = s.execute(text("SELECT count(*) FROM form_submissions WHERE task_id = :t"),
                          {"t": task["id"]}).scalar_one()
    assert completes == 1 and forms == 1
    # Launch retried with the same request id: the same run, not a second one.
    rid = str(uuid.uuid4())
    body = {"protocol_key": key, "time_scale": FAST}
    a = client.post("/api/v1/runs", json=body, headers={**org_a.headers(Role.lab_manager), "X-Request-ID": rid})
    b = client.post("/api/v1/runs", json=body, headers={**org_a.headers(Role.lab_manager), "X-Request-ID": rid})
    assert (a.status_code, b.status_code) == (201, 200) and a.json()["id"] == b.json()["id"]


def test_hold_resume_cancel(client, temporal_api, owner, org_a):
    key = f"ctl-{uuid.uuid4().hex[:6]}"
    from tests.runs.support import one_task

    approve_protocol(owner, org_a.id, one_task(key, due=None))
    run = _launch(client, org_a, key)
    task = _next(client, org_a, run["id"], "weigh")
    mgr = org_a.headers(Role.lab_manager)
    r = client.post(f"/api/v1/runs/{run['id']}/hold", json={"reason": "balance out of calibration"}, headers=mgr)
    assert r.status_code == 200 and r.json()["status"] == "on_hold", r.text
    r = client.post(f"/api/v1/runs/{run['id']}/hold", json={"reason": "again"}, headers=mgr)
    assert r.status_code == 409 and "already on hold" in r.text
    # Held: the completion is refused with a clear message, and with every other reason too.
    r = complete(client, org_a, task["id"], {"mass_g": "2"}, [])
    assert r.status_code == 409, r.text
    assert any("on hold (balance out of calibration)" in x for x in r.json()["reasons"])
    assert "checklist.balance_calibrated: not confirmed" in r.json()["reasons"]
    r = client.post(f"/api/v1/runs/{run['id']}/resume", json={"reason": "balance recalibrated"}, headers=mgr)
    assert r.status_code == 200 and r.json()["status"] == "running"
    # A technician cannot control runs.
    r = client.post(f"/api/v1/runs/{run['id']}/cancel", json={"reason": "x"}, headers=org_a.headers(Role.technician))
    assert r.status_code == 403
    r = client.post(f"/api/v1/runs/{run['id']}/cancel", json={"reason": "sample lost"}, headers=mgr)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    detail = wait_for(lambda: (d := client.get(f"/api/v1/runs/{run['id']}", headers=mgr).json())["status"]
                      == "cancelled" and d)
    assert detail["status_reason"] == "sample lost" and detail["open_tasks"] == []
    r = complete(client, org_a, task["id"], {"mass_g": "2"}, ["balance_calibrated"])
    assert r.status_code == 409
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_a.id})
        actions = s.execute(text("SELECT action FROM audit_log WHERE entity_type = 'run' AND entity_id = :r"
                                 " ORDER BY seq"), {"r": run["id"]}).scalars().all()
        refusals = s.execute(text("SELECT count(*) FROM audit_log WHERE entity_type = 'task' AND entity_id = :t"
                                  " AND action = 'refuse'"), {"t": task["id"]}).scalar_one()
    assert actions == ["launch", "hold", "refuse", "resume", "cancel"]  # every control, and the refused one
    assert refusals == 2  # while held, and after the cancel


def test_rejection_repeats_from_step_and_segregation_of_duties(client, temporal_api, owner, org_a):
    key = f"rej-{uuid.uuid4().hex[:6]}"
    doc = {"key": key, "title": "Prepare and review", "steps": [
        {"key": "prep", "kind": "task", "title": "Prepare", "roles": ["technician", "scientist"],
         "form": {"key": f"{key.replace('-', '_')}_prep", "fields": [{"key": "ok", "label": "OK", "type": "boolean"}]}},
        {"key": "review", "kind": "approval", "title": "Review", "roles": ["scientist", "lab_manager"],
         "meaning": "reviewed", "on_reject": {"action": "repeat", "from_step": "prep"}}]}
    approve_protocol(owner, org_a.id, doc)
    run = _launch(client, org_a, key)
    prep = _next(client, org_a, run["id"], "prep", Role.scientist)
    r = complete(client, org_a, prep["id"], {"ok": True}, [], role=Role.scientist)
    assert r.status_code == 200, r.text
    review = _next(client, org_a, run["id"], "review", Role.scientist)
    # The scientist performed `prep`: they may not sign its review.
    r = client.post(f"/api/v1/runs/{run['id']}/approvals", json={"decision": "approve", "password": PASSWORD_OF},
                    headers=org_a.headers(Role.scientist))
    assert r.status_code == 403 and "segregation of duties" in r.text
    # Rejection needs a reason; with one, `prep` opens again (iteration 1).
    r = client.post(f"/api/v1/runs/{run['id']}/approvals", json={"decision": "reject", "password": PASSWORD_OF},
                    headers=org_a.headers(Role.lab_manager))
    assert r.status_code == 422 and "reason" in r.text
    r = client.post(f"/api/v1/runs/{run['id']}/approvals",
                    json={"decision": "reject", "password": PASSWORD_OF, "reason": "OK box ticked without evidence",
                          "task_id": review["id"]}, headers=org_a.headers(Role.lab_manager))
    assert r.status_code == 200 and r.json()["result"] == "rejected", r.text
    assert [(t["step_key"], t["iteration"]) for t in r.json()["open_tasks"]] == [("prep", 1)]
    r = complete(client, org_a, r.json()["open_tasks"][0]["task_id"], {"ok": True}, [], role=Role.technician)
    assert r.status_code == 200
    assert [(t["step_key"], t["iteration"]) for t in r.json()["open_tasks"]] == [("review", 1)]
    # Now the scientist performed an earlier round only... still someone who performed `prep` in this run.
    r = client.post(f"/api/v1/runs/{run['id']}/approvals", json={"decision": "approve", "password": PASSWORD_OF},
                    headers=org_a.headers(Role.scientist))
    assert r.status_code == 403
    r = client.post(f"/api/v1/runs/{run['id']}/approvals", json={"decision": "approve", "password": PASSWORD_OF},
                    headers=org_a.headers(Role.lab_manager))
    assert r.status_code == 200 and r.json()["run_status"] == "completed", r.text
    with owner.begin(None) as s:
        sigs = s.execute(text("SELECT meaning, reason FROM signatures WHERE entity_type = 'task'"
                              " AND entity_id = ANY(:t) ORDER BY signed_at"),
                         {"t": [review["id"], r.json()["task_id"]]}).all()
    assert [(x.meaning, x.reason) for x in sigs] == [("rejected", "OK box ticked without evidence"), ("reviewed", None)]


def test_other_orgs_see_nothing(client, temporal_api, owner, org_a, org_b):
    key = f"iso-{uuid.uuid4().hex[:6]}"
    from tests.runs.support import one_task

    approve_protocol(owner, org_a.id, one_task(key, due=None))
    run = _launch(client, org_a, key)
    task = _next(client, org_a, run["id"], "weigh")
    assert client.get(f"/api/v1/runs/{run['id']}", headers=org_b.headers(Role.lab_manager)).status_code == 404
    assert complete(client, org_b, task["id"], {"mass_g": "1"}, ["balance_calibrated"]).status_code == 404
    r = client.get("/api/v1/tasks", params={"run_id": run["id"]}, headers=org_b.headers(Role.technician))
    assert r.json() == []
    r = client.post("/api/v1/runs", json={"protocol_key": key}, headers=org_b.headers(Role.lab_manager))
    assert r.status_code == 404


def test_rejection_that_ends_the_run(client, temporal_api, owner, org_a):
    key = f"end-{uuid.uuid4().hex[:6]}"
    doc = {"key": key, "title": "Parallel work, then review", "steps": [
        {"key": "both", "kind": "parallel", "title": "Both", "branches": [
            [{"key": "left", "kind": "task", "title": "Left", "roles": ["technician"]},
             {"key": "review", "kind": "approval", "title": "Review", "roles": ["lab_manager"], "meaning": "reviewed",
              "on_reject": {"action": "end_run"}}],
            [{"key": "right", "kind": "task", "title": "Right", "roles": ["technician"]}]]}]}
    approve_protocol(owner, org_a.id, doc)
    run = _launch(client, org_a, key)
    left = _next(client, org_a, run["id"], "left")
    assert complete(client, org_a, left["id"], {}, []).status_code == 200
    _next(client, org_a, run["id"], "review", Role.lab_manager)
    r = client.post(f"/api/v1/runs/{run['id']}/approvals", headers=org_a.headers(Role.lab_manager),
                    json={"decision": "reject", "password": PASSWORD_OF, "reason": "wrong construct"})
    assert r.status_code == 200 and r.json()["run_status"] == "rejected", r.text
    detail = wait_for(lambda: (d := client.get(f"/api/v1/runs/{run['id']}", headers=org_a.headers(Role.lab_manager))
                               .json())["status"] == "rejected" and d)
    assert detail["open_tasks"] == [] and detail["ended_at"]
    events = [(e["step_key"], e["event"]) for e in detail["steps"]]
    assert ("right", "cancelled") in events and events[-1] == ("", "run_rejected")


def test_history_without_temporal_still_answers_from_the_audit_log(client, temporal_api, platform, owner, org_a):
    """A run whose Temporal history is gone (past retention; here: never started) keeps its audit timeline."""
    from domain.runs import service as runs
    from domain.runs.models import RunLaunch
    from tests.runs.support import caller, one_task

    key = f"gone-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due=None))
    with platform.sessions.begin(org_a.id) as s:
        run, _, _ = runs.launch(s, caller(org_a, Role.lab_manager), RunLaunch(protocol_key=key))
    h = client.get(f"/api/v1/runs/{run.id}/history", headers=org_a.headers(Role.auditor))
    assert h.status_code == 200, h.text
    assert h.json()["temporal"]["available"] is False and "retention" in h.json()["temporal"]["reason"]
    assert [t["kind"] for t in h.json()["timeline"]] == ["launch"]
    # Technicians do not read histories (runs.history).
    assert client.get(f"/api/v1/runs/{run.id}/history", headers=org_a.headers(Role.technician)).status_code == 403
