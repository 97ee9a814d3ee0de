"""Helpers for run tests: approved protocol versions in an org, callers, small protocols."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from sqlalchemy import text

from core.db import TenantSessions
from domain.protocols.compiler import compile_protocol
from domain.roles import Actor, Caller, RequestContext, Role
from tests.support import PASSWORD, Org

PASSWORD_OF = PASSWORD  # every test user's password


def approve_protocol(owner: TenantSessions, org_id: uuid.UUID, document: dict[str, Any]) -> tuple[uuid.UUID, int]:
    """Store `document` as the next approved version of its protocol in the org: (version id, version)."""
    with owner.begin(org_id) as s:
        row = s.execute(text("SELECT id FROM protocols WHERE org_id = :o AND key = :k"),
                        {"o": org_id, "k": document["key"]}).first()
        if row is None:
            protocol_id = uuid.uuid4()
            s.execute(text("INSERT INTO protocols (id, org_id, key, title) VALUES (:i, :o, :k, :t)"),
                      {"i": protocol_id, "o": org_id, "k": document["key"], "t": document["title"]})
        else:
            protocol_id = row.id
        version = s.execute(text("SELECT coalesce(max(version), 0) + 1 FROM protocol_versions WHERE protocol_id = :p"),
                            {"p": protocol_id}).scalar_one()
        result = compile_protocol(document, version)
        assert result.ok and result.plan, result.problems
        version_id = uuid.uuid4()
        s.execute(text("INSERT INTO protocol_versions (id, org_id, protocol_id, version, status, definition,"
                       " content_hash, plan, approved_at) VALUES (:i, :o, :p, :v, 'approved', CAST(:d AS jsonb), :h,"
                       " CAST(:plan AS jsonb), :at)"),
                  {"i": version_id, "o": org_id, "p": protocol_id, "v": version, "d": json.dumps(document),
                   "h": result.plan.content_hash, "plan": result.plan.model_dump_json(), "at": dt.datetime.now(dt.UTC)})
    return version_id, version


def caller(org: Org, role: Role, request_id: str | None = None) -> Caller:
    user_id, email = org.users[role]
    actor = Actor("user", str(user_id), f"{role.value} of {org.slug}")
    context = RequestContext(request_id=request_id or str(uuid.uuid4()))
    return Caller(org_id=org.id, org_slug=org.slug, role=role, actor=actor, user_id=user_id, context=context)


def one_task(key: str, *, due: str | None = "PT30M", levels: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """A protocol of one task with a small form, a checklist, a due time and escalation levels."""
    step: dict[str, Any] = {
        "key": "weigh", "kind": "task", "title": "Weigh the sample", "roles": ["technician"],
        "form": {"key": f"{key.replace('-', '_')}_weighing", "fields": [
            {"key": "mass_g", "label": "Mass", "type": "number", "unit": "g", "min": 0, "max": 1000, "precision": 2},
            {"key": "balance", "label": "Balance", "type": "text", "max_length": 40, "required": False}]},
        "checklist": [{"key": "balance_calibrated", "text": "Balance calibrated today"}],
    }
    if due:
        step["due"] = due
    if levels:
        step["escalation"] = {"levels": [{"after": a, "notify_role": r} for a, r in levels]}
    return {"key": key, "title": f"Protocol {key}", "steps": [step]}


# What a technician submits for each step of the shipped Agrobacterium protocol.
AGRO = {
    "culture_prep": ({"strain": "GV3101", "glycerol_stock": "GS-0042", "construct": "pBIN19-GFP",
                      "culture": "AG-2024-117", "overnight_temp_c": 28, "od600": "0.45", "acetosyringone_um": 100},
                     ["bsc_disinfected", "strain_verified", "gmo_waste"]),
    "explant_prep": ({"plant_batch": "NT-B12", "plant_age_days": 35, "disc_count": 120},
                     ["flow_hood_purged", "tools_sterile"]),
    "inoculation": ({"suspension": "AG-2024-117", "contact_min": 8, "cocultivation_plates": 12,
                     "started_at": "2024-05-01T09:30:00+02:00"}, ["discs_blotted", "plates_sealed"]),
    "selection_transfer": ({"medium_batch": "MS-SEL-7", "kanamycin_mg_l": 100, "cefotaxime_mg_l": 250,
                            "discs_plated": 118}, ["antibiotics_fresh", "overgrowth_checked"]),
    "regeneration_check": ({"discs_with_shoots": 64, "agro_overgrowth": True, "contaminated_plates": 1,
                            "photo": "EV-991"}, []),
    "overgrowth_rescue": ({"discs_rescued": 10, "medium_batch": "MS-SEL-8"}, ["waste_autoclaved"]),
}


def open_tasks(client, org: Org, run_id: str, role: Role = Role.technician) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/tasks", params={"run_id": run_id}, headers=org.headers(role))
    assert r.status_code == 200, r.text
    return r.json()


def complete(client, org: Org, task_id: str, values: dict[str, Any], checklist: list[str],  # type: ignore[no-untyped-def]
             role: Role = Role.technician, request_id: str | None = None, evidence: list[str] | None = None):
    headers = {**org.headers(role), "X-Request-ID": request_id or str(uuid.uuid4())}
    return client.post(f"/api/v1/tasks/{task_id}/complete", headers=headers,
                       json={"values": values, "checklist": checklist, "evidence": evidence or []})


def launch_with_open_task(client: Any, owner: TenantSessions, org: Org, prefix: str) -> tuple[str, dict[str, Any]]:
    """Approve a one-task protocol, launch it, and wait until its task is open: (run id, the task)."""
    from tests.runs.conftest import wait_for

    key = f"{prefix}-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, one_task(key, due=None))
    r = client.post("/api/v1/runs", json={"protocol_key": key}, headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    task = wait_for(lambda: client.get("/api/v1/tasks", params={"run_id": run_id},
                                       headers=org.headers(Role.technician)).json(), timeout=30)[0]
    return run_id, task
