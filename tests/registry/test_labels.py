"""A printed label, scanned: what the scanner reads, typed into the look-up, finds the record."""

from __future__ import annotations

import io

import resvg_py
import zxingcpp
from PIL import Image

from domain.roles import Role
from tests.registry.support import BASE, make
from tests.support import make_org


def scan(svg: str) -> dict[str, str]:
    """Render the label as a 600 dpi print would and read every symbol on it: format → text."""
    png = resvg_py.svg_to_bytes(svg_string=svg, dpi=600)
    image = Image.open(io.BytesIO(bytes(png)))
    return {b.format.name: b.text for b in zxingcpp.read_barcodes(image)}


def test_a_scanned_label_finds_its_record(client, owner):
    org = make_org(owner, client)
    h = org.headers(Role.technician)
    species = make(client, org, "species", "Fusarium oxysporum", attributes={"risk_group": 2})
    records = [
        make(client, org, "strain", 'Fo47 <isolate> & "wild" type, a very long name indeed', parent_id=species["id"],
             attributes={"risk_group": 2}),
        make(client, org, "equipment", "Laminar-flow hood", attributes={"calibration_due": "2027-02-01"}),
        make(client, org, "location", "Main site", attributes={"level": "site"}),
    ]
    for record in records:
        r = client.get(f"{BASE}/{record['kind']}/{record['id']}/label", headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
        assert record["code"] in r.text
        read = scan(r.text)
        assert read == {"QRCode": record["code"], "Code128": record["code"]}
        typed = client.get(f"{BASE}/lookup/{read['QRCode']}", headers=h)
        assert typed.status_code == 200 and typed.json()["id"] == record["id"]
        assert typed.headers["etag"] == '"1"'
    # A person typing it by hand, in lower case with spaces around, finds it too.
    by_hand = client.get(f"{BASE}/lookup/  {records[1]['code'].lower()} ", headers=h)
    assert by_hand.json()["name"] == "Laminar-flow hood"
    assert client.get(f"{BASE}/lookup/EQ-999999", headers=h).status_code == 404
    # The label of an archived record says so.
    client.post(f"{BASE}/location/{records[2]['id']}/archive", json={"reason": "site closed"},
                headers=org.headers(Role.admin))
    assert "ARCHIVED" in client.get(f"{BASE}/location/{records[2]['id']}/label", headers=h).text
