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
