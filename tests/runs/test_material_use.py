"""The shipped protocols work on real material: the Agrobacterium run has its culture and plasmid prep in use while
it runs (a rejected approval repeats the preparation naming them again, and it is accepted) and used up when it
completes; the plant subculture makes its child plates, derived from the source vessel, in the new culture batch."""

from __future__ import annotations

from domain.protocols.loader import example_protocols
from domain.roles import Role
from tests.evidence.support import png, uploaded
from tests.runs.conftest import wait_for
from tests.runs.support import AGRO, PASSWORD_OF, approve_protocol, complete, open_tasks
from tests.samples.material import batch, sample
from tests.support import make_org

FAST = 0.000001


def _next(client, org, run_id: str, step_key: str, role: Role = Role.technician, seen: set[str] | None = None):
    def found():
        return next((t for t in open_tasks(client, org, run_id, role)
                     if t["step_key"] == step_key and t["id"] not in (seen or set())), None)
    return wait_for(found, timeout=30)


def _launch(client, org, key: str, subjects: list[dict]) -> str:
    r = client.post("/api/v1/runs", json={"protocol_key": key, "subjects": subjects, "time_scale": FAST},
                    headers=org.headers(Role.lab_manager))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _sample(client, org, sample_id: str) -> dict:
    return dict(client.get(f"/api/v1/samples/{sample_id}", headers=org.headers(Role.auditor)).json())


def _decide(client, org, run_id: str, decision: str) -> dict:
    body = {"decision": decision, "password": PASSWORD_OF}
    if decision == "reject":
        body["reason"] = "construct not on the registered rDNA list yet"
    r = client.post(f"/api/v1/runs/{run_id}/approvals", json=body, headers=org.headers(Role.lab_manager))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_the_agrobacterium_run_uses_its_culture_and_plasmid_prep_through_rework_and_then_uses_them_up(
        client, temporal_api, owner):
    org = make_org(owner, client)
    approve_protocol(owner, org.id, example_protocols()["agrobacterium-transformation"])
    stock = sample(client, org, sample_type="glycerol_stock", name="GV3101 stock")
    prep = sample(client, org, sample_type="plasmid_prep", name="pBIN19-GFP prep")
    culture = sample(client, org, sample_type="culture", name="GV3101 overnight culture")
    run_id = _launch(client, org, "agrobacterium-transformation", [{"type": "batch", "id": "NT-B12"}])
    values = {**AGRO["culture_prep"][0], "glycerol_stock": stock["code"], "construct": prep["code"],
              "culture": culture["code"]}
    done: set[str] = set()
    photo = uploaded(client, org, png(337), filename="shoots.png")["id"]

    def work_round() -> None:
        for step, vals in (("culture_prep", values), ("explant_prep", AGRO["explant_prep"][0]),
                           ("inoculation", {**AGRO["inoculation"][0], "suspension": culture["id"]}),
                           ("selection_transfer", AGRO["selection_transfer"][0]),
                           ("regeneration_check", {**AGRO["regeneration_check"][0], "agro_overgrowth": False,
                                                   "photo": photo})):
            task = _next(client, org, run_id, step, seen=done)
            r = complete(client, org, task["id"], vals, AGRO[step][1])
            assert r.status_code == 200, (step, r.text)
            done.add(task["id"])
            if step == "culture_prep":
                for s in (prep, culture):
                    now = _sample(client, org, s["id"])
                    assert now["status"] == "in_use" and run_id in now["status_reason"], now

    work_round()
    _next(client, org, run_id, "biosafety_release", Role.lab_manager)
    assert _decide(client, org, run_id, "reject")["result"] == "rejected"
    # The rework round names the same culture and plasmid prep again: accepted (in use, not used up).
    work_round()
    for s in (prep, culture):
        assert _sample(client, org, s["id"])["status"] == "in_use"
    approval = _next(client, org, run_id, "biosafety_release", Role.lab_manager, seen=done)
    assert approval["iteration"] == 1
    assert _decide(client, org, run_id, "approve")["run_status"] == "completed"

    for s in (prep, culture):
        now = _sample(client, org, s["id"])
        assert now["status"] == "consumed" and now["status_reason"] == f"used up by run {run_id} (completed)"
    assert _sample(client, org, stock["id"])["status"] == "received"  # scraped, not used up
    run = client.get(f"/api/v1/runs/{run_id}", headers=org.headers(Role.auditor)).json()
    end = next(e for e in run["steps"] if e["event"] == "run_completed")
    assert sorted(end["detail"]["consumed"]) == sorted([prep["code"], culture["code"]])
    # The explant plates of both rounds derive from the culture.
    children = client.get(f"/api/v1/samples/{culture['id']}/lineage", params={"direction": "descendants"},
                          headers=org.headers(Role.auditor)).json()
    assert len(children["edges"]) == 24 and {e["operation"] for e in children["edges"]} == {"transformation"}


def test_the_plant_subculture_makes_child_plates_in_the_new_batch(client, temporal_api, owner):
    org = make_org(owner, client)
    approve_protocol(owner, org.id, example_protocols()["plant-tissue-subculture"])
    source = sample(client, org, sample_type="plate", name="SR1 shoots vessel 1")
    medium, new = batch(client, org, name="MS BAP medium"), batch(client, org, batch_type="plant_line",
                                                                  name="SR1 shoots, passage 5")
    run_id = _launch(client, org, "plant-tissue-subculture", [{"type": "sample", "id": source["code"]}])
    steps = {
        "media_prep": ({"ms_salts_lot": "MS-1", "ph": "5.75", "bap_mg_l": "1.00", "agar_g_l": "8.0", "vessels": 40,
                        "media_batch": medium["code"], "prepared_on": "2024-05-01"},
                       ["ph_meter_calibrated", "tape_changed"]),
        "explant_prep": ({"source_batch": new["code"], "explant_type": "nodal_segment", "explants": 80}, []),
        "subculture": ({"source_vessel": source["code"], "media_batch": medium["code"], "new_batch": new["code"],
                        "vessels": 4, "explants_per_vessel": 5},
                       ["hood_running", "hood_wiped", "uv_off", "bead_steriliser", "vessels_labelled"]),
        "shoot_count": ({"shoots": 240, "contaminated_vessels": 0, "growth_room_temp_c": "22.0",
                         "photoperiod_h": 16}, []),
    }
    for step, (vals, checklist) in steps.items():
        task = _next(client, org, run_id, step)
        r = complete(client, org, task["id"], vals, checklist)
        assert r.status_code == 200, (step, r.text)

    lineage = client.get(f"/api/v1/samples/{source['id']}/lineage", params={"direction": "descendants"},
                         headers=org.headers(Role.auditor)).json()
    plates = [n for n in lineage["nodes"] if n["id"] != source["id"]]
    assert len(plates) == 4 and {n["sample_type"] for n in plates} == {"plate"}
    assert {e["operation"] for e in lineage["edges"]} == {"subculture"}
    assert {e["step_key"] for e in lineage["edges"]} == {"subculture"}
    in_batch = client.get(f"/api/v1/batches/{new['id']}", headers=org.headers(Role.auditor)).json()["samples"]
    assert {s["id"] for s in in_batch} == {n["id"] for n in plates}
    assert _sample(client, org, source["id"])["status"] == "in_use"

    _next(client, org, run_id, "batch_release", Role.lab_manager)
    assert _decide(client, org, run_id, "approve")["run_status"] == "completed"
    assert _sample(client, org, source["id"])["status"] == "consumed"
    assert {_sample(client, org, n["id"])["status"] for n in plates} == {"received"}  # the product stays
