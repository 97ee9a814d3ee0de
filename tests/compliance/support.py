"""Helpers for compliance tests: tags attached over the API, material made of registry records."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from domain.roles import Role
from tests.registry.support import make
from tests.samples.material import sample
from tests.support import Org

BASE = "/api/v1/compliance"


def tag(client: TestClient, org: Org, key: str, target_type: str, target_id: str, step_key: str | None = None,
        role: Role = Role.scientist) -> dict[str, Any]:
    body = {"tag": key, "target_type": target_type, "target_id": target_id, "reason": "biosafety review"}
    if step_key:
        body["step_key"] = step_key
    r = client.post(f"{BASE}/tag-links", json=body, headers=org.headers(role))
    assert r.status_code == 201, r.text
    return dict(r.json())


def untag(client: TestClient, org: Org, key: str, target_type: str, target_id: str) -> None:
    body = {"tag": key, "target_type": target_type, "target_id": target_id, "reason": "tagged by mistake"}
    r = client.post(f"{BASE}/tag-links/remove", json=body, headers=org.headers(Role.scientist))
    assert r.status_code == 204, r.text


def derive(client: TestClient, org: Org, child: str, parents: list[str], operation: str, **prov: Any) -> None:
    r = client.post(f"/api/v1/samples/{child}/parents", json={"parent_ids": parents, "operation": operation, **prov},
                    headers=org.headers(Role.technician))
    assert r.status_code == 200, r.text


def surface(client: TestClient, org: Org, kind: str, ident: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/{kind}/{ident}/compliance-surface", headers=org.headers(Role.auditor))
    assert r.status_code == 200, r.text
    return dict(r.json())


def texts(surf: dict[str, Any]) -> dict[str, list[str]]:
    return {t["key"]: [p["text"] for p in t["provenance"]] for t in surf["tags"]}


def agro_material(client: TestClient, org: Org) -> dict[str, Any]:
    """A BSL-2 Agrobacterium strain carrying the rDNA plasmid pCAMBIA1301, a culture of it, a callus transformed
    from it and an explant, and a plate subcultured from the callus."""
    suffix = uuid.uuid4().hex[:6]
    species = make(client, org, "species", f"Agrobacterium tumefaciens {suffix}")
    strain = make(client, org, "strain", f"EHA105-{suffix}", parent_id=species["id"], attributes={"risk_group": 2})
    plasmid = make(client, org, "plasmid", f"pCAMBIA1301-{suffix}", attributes={"backbone": "pCAMBIA1300"})
    culture = sample(client, org, sample_type="culture", components=[{"item_id": strain["id"]},
                                                                     {"item_id": plasmid["id"]}])
    explant = sample(client, org, sample_type="explant")
    callus = sample(client, org, sample_type="callus")
    plate = sample(client, org, sample_type="plate")
    derive(client, org, callus["id"], [culture["id"], explant["id"]], "transformation", step_key="co_cultivation")
    derive(client, org, plate["id"], [callus["id"]], "subculture")
    return {"species": species, "strain": strain, "plasmid": plasmid, "culture": culture, "explant": explant,
            "callus": callus, "plate": plate}
