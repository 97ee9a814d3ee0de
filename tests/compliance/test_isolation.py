"""Every compliance endpoint answers 404 for another organization's records, and changes nothing there."""

from __future__ import annotations

import datetime as dt
import uuid

from domain.roles import Role
from tests.compliance.support import BASE, agro_material
from tests.runs.support import PASSWORD_OF, approve_protocol
from tests.samples.material import batch
from tests.support import make_org


def test_another_organizations_records_are_not_found(client, owner):
    a, b = make_org(owner, client), make_org(owner, client)
    m = agro_material(client, a)
    bt = batch(client, a)
    key = f"iso-{uuid.uuid4().hex[:6]}"
    version_id, _ = approve_protocol(owner, a.id, {"key": key, "title": "Subculture", "steps": [
        {"key": "transfer", "kind": "task", "title": "Transfer", "roles": ["technician"]}]})
    run = client.post("/api/v1/runs", json={"protocol_key": key}, headers={
        **a.headers(Role.lab_manager), "X-Request-ID": str(uuid.uuid4())}).json()
    fw = client.post(f"{BASE}/frameworks", json={"key": "bmbl", "name": "BMBL"}, headers=a.headers(Role.lab_manager))
    now = dt.datetime.now(dt.UTC)
    auth = client.post(f"{BASE}/authorizations", json={
        "authorization_type": "IBC approval", "title": "IBC-1", "issuer": "IBC", "valid_from": now.isoformat(),
        "valid_until": (now + dt.timedelta(days=1)).isoformat()}, headers=a.headers(Role.lab_manager)).json()

    hb = b.headers(Role.owner)
    for path in (f"/api/v1/samples/{m['plate']['id']}/compliance-surface",
                 f"/api/v1/samples/{m['plate']['id']}/compliance-status",
                 f"/api/v1/batches/{bt['id']}/compliance-surface",
                 f"/api/v1/runs/{run['id']}/compliance-surface",
                 f"/api/v1/runs/{run['id']}/compliance-status",
                 f"{BASE}/frameworks/{fw.json()['id']}",
                 f"{BASE}/authorizations/{auth['id']}"):
        r = client.get(path, headers=hb)
        assert r.status_code == 404, (path, r.text)
    targets = [("plasmid", m["plasmid"]["id"], None), ("strain", m["strain"]["id"], None),
               ("sample", m["plate"]["id"], None), ("batch", bt["id"], None), ("protocol", key, None),
               ("step", str(version_id), "transfer")]
    for kind, ident, step in targets:
        body = {"tag": "BSL-2", "target_type": kind, "target_id": ident, "reason": "probe",
                **({"step_key": step} if step else {})}
        for path in (f"{BASE}/tag-links", f"{BASE}/tag-links/remove"):
            r = client.post(path, json=body, headers=hb)
            assert r.status_code == 404, (kind, path, r.text)
    posts = [(f"{BASE}/frameworks/{fw.json()['id']}/items", {"key": "x", "text": "x", "scope": {}}),
             (f"{BASE}/authorizations/{auth['id']}/sign", {"password": PASSWORD_OF}),
             (f"{BASE}/authorizations/{auth['id']}/revoke", {"reason": "probe"}),
             (f"{BASE}/qualifications", {"user_id": str(a.users[Role.technician][0]), "course": "biosafety_bsl2",
                                         "completed_on": str(dt.date.today())})]
    for path, body in posts:
        r = client.post(path, json=body, headers=hb)
        assert r.status_code == 404, (path, r.text)
    # b's own lists hold none of a's records; a's are as they were
    assert client.get(f"{BASE}/authorizations", headers=hb).json() == []
    assert client.get(f"{BASE}/frameworks", headers=hb).json() == []
    assert client.get(f"{BASE}/tag-links", headers=hb).json() == []
    got = client.get(f"{BASE}/authorizations/{auth['id']}", headers=a.headers(Role.auditor)).json()
    assert got["status"] == "pending"
    assert len(client.get(f"{BASE}/tags", headers=hb).json()) == 12  # b's own seeded vocabulary
