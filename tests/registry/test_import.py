"""Bulk CSV import: the dry run tells what would happen line by line; the apply is all or nothing, one action."""

from __future__ import annotations

from domain.roles import Role
from tests.registry.support import BASE, actions, make, trail
from tests.support import make_org

LOTS = """code,name,parent,lot_number,expiry_date,supplier_id,quantity
,MS lot 2401,MS basal salts,2401,2027-01-31,Duchefa,500 g
,MS lot 2402,MS basal salts,2402,2027-06-30,Duchefa,1 kg
,Agar lot 77,Plant agar,77,,Duchefa,
"""


def _import(client, org, kind, body: str, *, dry_run: bool, role=Role.lab_manager, **params):
    return client.post(f"{BASE}/{kind}/import", params={"dry_run": str(dry_run).lower(), **params},
                       content=body.encode(), headers={**org.headers(role), "Content-Type": "text/csv"})


def _lots(client, org):
    return client.get(f"{BASE}/lot", params={"limit": 500}, headers=org.headers(Role.admin)).json()["items"]


def test_a_dry_run_reports_and_writes_nothing_then_the_apply_is_all_or_nothing(client, owner):
    org = make_org(owner, client)
    supplier = make(client, org, "supplier", "Duchefa", status="approved")
    ms = make(client, org, "ingredient", "MS basal salts")
    make(client, org, "ingredient", "Plant agar")

    dry = _import(client, org, "lot", LOTS, dry_run=True)
    assert dry.status_code == 200, dry.text
    report = dry.json()
    assert report["dry_run"] and not report["applied"]
    assert report["counts"] == {"create": 3, "update": 0, "unchanged": 0, "invalid": 0}
    assert [(r["row"], r["action"], r["name"]) for r in report["rows"]] == [
        (2, "create", "MS lot 2401"), (3, "create", "MS lot 2402"), (4, "create", "Agar lot 77")]
    assert _lots(client, org) == []

    # One bad line: the apply writes nothing and says why, line by line.
    bad = LOTS + ",MS lot 2403,MS basal salts,2403,31.12.2027,Nobody,\n,,,,,,\n,No lot number,Plant agar,,,,\n"
    refused = _import(client, org, "lot", bad, dry_run=False, reason="inventory take-over")
    assert refused.status_code == 422, refused.text
    reasons = refused.json()["reasons"]
    assert any(r.startswith("row 5: supplier_id: no supplier 'Nobody'") for r in reasons), reasons
    assert any(r.startswith("row 5: expiry_date") for r in reasons), reasons
    assert "row 7: lot_number: Field required" in reasons, reasons
    assert _lots(client, org) == []
    assert actions(owner, org, "import") == []
    dry_bad = _import(client, org, "lot", bad, dry_run=True).json()
    assert dry_bad["counts"] == {"create": 3, "update": 0, "unchanged": 0, "invalid": 2}
    assert [r["row"] for r in dry_bad["rows"] if r["problems"]] == [5, 7]

    applied = _import(client, org, "lot", LOTS, dry_run=False, reason="inventory take-over")
    assert applied.status_code == 200, applied.text
    assert applied.json()["applied"] and applied.json()["counts"]["create"] == 3
    lots = {i["name"]: i for i in _lots(client, org)}
    assert lots["MS lot 2401"]["parent_id"] == ms["id"]
    assert lots["MS lot 2401"]["attributes"]["supplier_id"] == supplier["id"]
    assert lots["MS lot 2401"]["attributes"]["expiry_date"] == "2027-01-31"
    assert lots["Agar lot 77"]["attributes"]["expiry_date"] is None

    [entry] = actions(owner, org, "import")
    import_id = applied.json()["import_id"]
    assert entry["entity"] == {"type": "registry_import", "id": import_id}
    assert entry["after"]["created"] == 3 and entry["after"]["kind"] == "lot" and len(entry["after"]["sha256"]) == 64
    assert entry["reason"] == "inventory take-over"
    created = trail(owner, org, lots["MS lot 2402"]["id"])
    assert [e["action"] for e in created] == [ "create"]
    assert created[0]["reason"] == f"CSV import {import_id}: inventory take-over"

    # The same file again changes nothing; a changed line (matched by code, or by name and parent) is an update.
    again = _import(client, org, "lot", LOTS, dry_run=False).json()
    assert again["counts"] == {"create": 0, "update": 0, "unchanged": 3, "invalid": 0}
    code = lots["MS lot 2401"]["code"]
    changed = f"code,name,quantity\n{code},,250 g\n"
    update = _import(client, org, "lot", changed, dry_run=True).json()
    assert update["rows"][0]["action"] == "update" and update["rows"][0]["changes"] == ["attributes.quantity"]
    assert _import(client, org, "lot", changed, dry_run=False).status_code == 200
    after = client.get(f"{BASE}/lot/{lots['MS lot 2401']['id']}", headers=org.headers(Role.admin)).json()
    assert after["attributes"]["quantity"] == "250 g" and after["attributes"]["lot_number"] == "2401"
    assert after["revision"] == 2
    assert len(actions(owner, org, "import")) == 3


def test_a_location_tree_in_one_file_and_a_form_upload(client, owner):
    org = make_org(owner, client)
    tree = ("name,parent,level,temperature_c\nNorth site,,site,\nRoom 1,North site,room,\n"
            "Freezer A,Room 1,freezer,-80\nShelf 1,Freezer A,shelf,\nBox 1,Room 1,box,\n")
    r = client.post(f"{BASE}/location/import", params={"dry_run": "true"},
                    files={"file": ("locations.csv", tree.encode(), "text/csv")},
                    headers=org.headers(Role.admin))
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert [x["action"] for x in rows] == ["create", "create", "create", "create", "invalid"]
    assert rows[4]["problems"][0].startswith("parent:") and "box sits in" in rows[4]["problems"][0]
    fixed = tree.replace("Box 1,Room 1", "Box 1,Freezer A")
    r = client.post(f"{BASE}/location/import", params={"dry_run": "false"},
                    files={"file": ("locations.csv", fixed.encode(), "text/csv")},
                    headers=org.headers(Role.admin))
    assert r.status_code == 200 and r.json()["counts"]["create"] == 5
    [entry] = actions(owner, org, "import")
    assert entry["after"]["filename"] == "locations.csv"
    freezer = client.get(f"{BASE}/location", params={"q": "Freezer A"}, headers=org.headers(Role.admin)).json()
    assert freezer["items"][0]["attributes"] == {"level": "freezer", "temperature_c": -80.0}


def test_files_that_are_not_an_inventory_are_told_so(client, owner):
    org = make_org(owner, client)
    cases = {
        "": "empty",
        "colour,name\nred,x\n": "column 'colour' is not a plasmid column",
        "backbone\nb\n": "a 'name' column",
        "name,backbone\nx\x00y,b\n": "U+0000",
        "name,backbone\n" + "x,b\n" * 5001: "more than 5000 lines",
    }
    for body, why in cases.items():  # not a plasmid inventory at all: refused whole, dry run or not
        for dry_run in (True, False):
            r = _import(client, org, "plasmid", body, dry_run=dry_run)
            assert r.status_code == 422 and why in str(r.json()["reasons"]), (body[:50], r.text)
    extra = _import(client, org, "plasmid", "name,backbone\nx,b,extra\n", dry_run=True)  # one line's problem
    assert extra.status_code == 200 and extra.json()["rows"][0]["problems"] == ["more cells than columns"]
    latin1 = client.post(f"{BASE}/plasmid/import", content="name,backbone\nSüß,b\n".encode("latin-1"),
                         headers={**org.headers(Role.admin), "Content-Type": "text/csv"})
    assert latin1.status_code == 422 and "not UTF-8" in latin1.text
    json_body = client.post(f"{BASE}/plasmid/import", json={"name": "x"}, headers=org.headers(Role.admin))
    assert json_body.status_code == 415
    assert client.get(f"{BASE}/plasmid", headers=org.headers(Role.admin)).json()["items"] == []
    bom = _import(client, org, "plasmid", "\ufeffname,backbone,resistance_markers\npX,pUC,kanamycin; hygromycin\n",
                  dry_run=False)
    assert bom.status_code == 200, bom.text
    [made] = client.get(f"{BASE}/plasmid", headers=org.headers(Role.admin)).json()["items"]
    assert made["attributes"]["resistance_markers"] == ["kanamycin", "hygromycin"]
