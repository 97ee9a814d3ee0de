"""The demo organization's lab: a manager follows the transformation's material from strain to culture through the
API, and a second start adds nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from core.db import TenantSessions
from flasktrack.demo import DEMO_ORG, DEMO_PASSWORD, seed_demo
from flasktrack.demo_lab import EXPLANT_BATCH, GLYCEROL_STOCK, OVERNIGHT_CULTURE, PLASMID_PREP


def login(client: TestClient, email: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"email": email, "password": DEMO_PASSWORD, "org": DEMO_ORG})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_the_demo_lab_traces_a_culture_back_to_its_strain_and_is_seeded_once(client: TestClient,
                                                                             owner: TenantSessions) -> None:
    seed_demo(owner)
    h = login(client, "manager@demo.example.org")
    counts = {kind: len(client.get(f"/api/v1/registry/{kind}?limit=100", headers=h).json()["items"])
              for kind in ("species", "strain", "plasmid", "ingredient", "lot", "equipment", "supplier", "location")}
    assert all(counts.values()), counts
    seed_demo(owner)  # a second start
    assert counts == {kind: len(client.get(f"/api/v1/registry/{kind}?limit=100", headers=h).json()["items"])
                      for kind in counts}

    [culture] = client.get("/api/v1/samples", params={"q": OVERNIGHT_CULTURE}, headers=h).json()["items"]
    lineage = client.get(f"/api/v1/samples/{culture['id']}/lineage", params={"direction": "ancestors"},
                         headers=h).json()
    [stock] = [n for n in lineage["nodes"] if n["id"] != culture["id"]]
    assert [e["operation"] for e in lineage["edges"]] == ["subculture"]
    detail = client.get(f"/api/v1/samples/{stock['id']}", headers=h).json()
    assert detail["name"] == GLYCEROL_STOCK
    made_of = {client.get(f"/api/v1/registry/lookup/{c['code']}", headers=h).json()["name"]
               for c in detail["components"]}
    assert made_of == {"GV3101", "pBIN19-GFP"}
    where = client.get(f"/api/v1/samples/{stock['id']}/locations", headers=h).json()
    assert where["history"], where  # registered into its box: the first custody entry

    assert client.get("/api/v1/samples", params={"q": PLASMID_PREP}, headers=h).json()["items"]
    assert client.get("/api/v1/batches", params={"q": EXPLANT_BATCH}, headers=h).json()["items"]
    equipment = client.get("/api/v1/registry/equipment", headers=h).json()["items"]
    assert {e["name"] for e in equipment} == {"Laminar-flow hood LF-2", "Autoclave AC-1"}
    assert all(e["attributes"]["calibration_due"] for e in equipment)


def test_the_demo_callus_carries_rdna_and_bsl2_from_its_transformation(client: TestClient,
                                                                      owner: TenantSessions) -> None:
    from flasktrack.demo_lab import IBC_APPROVAL, TRANSFORMED_CALLUS

    seed_demo(owner)
    seed_demo(owner)  # a second start adds nothing
    h = login(client, "manager@demo.example.org")
    [callus] = client.get("/api/v1/samples", params={"q": "transformed"}, headers=h).json()["items"]
    assert callus["name"] == TRANSFORMED_CALLUS
    surface = client.get(f"/api/v1/samples/{callus['id']}/compliance-surface", headers=h).json()
    texts = {t["key"]: t["provenance"][0]["text"] for t in surface["tags"]}
    assert set(texts) == {"recombinant_dna", "BSL-2"}
    assert texts["recombinant_dna"].startswith("rDNA / NIH Guidelines ← plasmid pBIN19-GFP ← glycerol_stock ")
    assert "← transformation step co_cultivation ← callus " in texts["recombinant_dna"]
    status = client.get(f"/api/v1/samples/{callus['id']}/compliance-status", headers=h).json()
    assert status["status"] == "action_needed" and "IBC approval" in status["reasons"][0]
    [ibc] = client.get("/api/v1/compliance/authorizations", headers=h).json()
    assert ibc["title"] == IBC_APPROVAL and ibc["status"] == "pending"
    frameworks = client.get("/api/v1/compliance/frameworks", headers=h).json()
    assert {f["key"] for f in frameworks} == {"nih", "bmbl"}
