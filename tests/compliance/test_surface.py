"""The compliance surface is derived through lineage, components and batches, each tag with the exact path that
brought it; it follows tag changes and new parents at once."""

from __future__ import annotations

from domain.roles import Role
from tests.compliance.support import agro_material, derive, surface, tag, texts, untag
from tests.samples.material import batch, sample


def test_a_plate_inherits_rdna_and_bsl2_through_its_transformed_ancestor(client, org_a):
    m = agro_material(client, org_a)
    tag(client, org_a, "recombinant_dna", "plasmid", m["plasmid"]["id"])
    tag(client, org_a, "BSL-2", "strain", m["strain"]["id"])
    tag(client, org_a, "plant_pest", "species", m["species"]["id"])
    tag(client, org_a, "gmo", "sample", m["callus"]["id"])
    c, cal, pl = m["culture"]["code"], m["callus"]["code"], m["plate"]["code"]
    chain = f"culture {c} ← transformation step co_cultivation ← callus {cal} ← subculture ← plate {pl}"

    surf = surface(client, org_a, "samples", m["plate"]["id"])
    assert surf["subject_label"] == f"plate {pl}"
    assert surf["ancestors"] == 3  # callus, culture, explant
    assert texts(surf) == {
        "recombinant_dna": [f"rDNA / NIH Guidelines ← plasmid {m['plasmid']['name']} ← {chain}"],
        "BSL-2": [f"BSL-2 ← strain {m['strain']['name']} ← {chain}"],
        "plant_pest": [f"Plant pest / quarantine ← species {m['species']['name']} ← strain {m['strain']['name']}"
                       f" ← {chain}"],
        "gmo": [f"GMO ← callus {cal} ← subculture ← plate {pl}"],
    }
    rdna = next(t for t in surf["tags"] if t["key"] == "recombinant_dna")["provenance"][0]
    assert rdna["source"] == {"type": "plasmid", "id": m["plasmid"]["id"], "code": m["plasmid"]["code"],
                              "label": f"plasmid {m['plasmid']['name']}"}
    assert [h["type"] for h in rdna["path"]] == ["plasmid", "sample"]
    assert rdna["through"] == m["culture"]["id"] and rdna["generations"] == 2
    steps = {s["id"]: s for s in surf["lineage"]}  # follow the lineage from the culture down to the plate
    at, walked = rdna["through"], []
    while at is not None:
        walked.append((steps[at]["label"], steps[at]["derivation"]))
        at = steps[at]["child_id"]
    assert walked == [(f"culture {c}", "transformation step co_cultivation"), (f"callus {cal}", "subculture"),
                      (f"plate {pl}", None)]

    # The explant's side carries nothing; removing the plasmid's tag takes rDNA off the plate's surface.
    untag(client, org_a, "recombinant_dna", "plasmid", m["plasmid"]["id"])
    assert "recombinant_dna" not in texts(surface(client, org_a, "samples", m["plate"]["id"]))


def test_a_new_parent_brings_its_tags_and_batches_carry_theirs(client, org_a):
    m = agro_material(client, org_a)
    b = batch(client, org_a)
    tagged = sample(client, org_a, sample_type="culture", batch_id=b["id"])
    tag(client, org_a, "hazardous_chemical", "batch", b["id"])
    assert "hazardous_chemical" not in texts(surface(client, org_a, "samples", m["plate"]["id"]))
    derive(client, org_a, m["callus"]["id"], [tagged["id"]], "pooling")
    got = texts(surface(client, org_a, "samples", m["plate"]["id"]))
    assert got["hazardous_chemical"] == [
        f"Hazardous chemical ← batch {b['code']} ← culture {tagged['code']} ← pooling ← callus {m['callus']['code']}"
        f" ← subculture ← plate {m['plate']['code']}"]
    # the batch's own surface: its tag, and its samples' (the member's own batch again, one hop longer)
    assert texts(surface(client, org_a, "batches", b["id"]))["hazardous_chemical"] == [
        f"Hazardous chemical ← batch {b['code']}",
        f"Hazardous chemical ← batch {b['code']} ← culture {tagged['code']} ← batch {b['code']}"]


def test_a_long_lineage_answers_each_tag_by_its_shortest_path(client, org_a):
    made = [sample(client, org_a, sample_type="plate") for _ in range(12)]
    ids = [m["id"] for m in made]
    for parent, child in zip(ids, ids[1:], strict=False):
        derive(client, org_a, child, [parent], "passage")
    tag(client, org_a, "animal_derived", "sample", ids[0])
    tag(client, org_a, "animal_derived", "sample", ids[6])
    surf = surface(client, org_a, "samples", ids[-1])
    assert surf["ancestors"] == 11
    animal = next(t for t in surf["tags"] if t["key"] == "animal_derived")
    assert animal["paths"] == 2
    assert [p["generations"] for p in animal["provenance"]] == [5, 11]
    codes = [m["code"] for m in made]
    near, far = (p["text"] for p in animal["provenance"])
    assert near == "Animal-derived ← " + " ← passage ← ".join(f"plate {c}" for c in codes[6:])
    assert far == ("Animal-derived ← " + " ← passage ← ".join(f"plate {c}" for c in codes[:4])
                   + " ← … 5 more samples … ← " + " ← passage ← ".join(f"plate {c}" for c in codes[-3:]))


def test_surfaces_and_tags_of_another_organization_are_not_found(client, org_a, org_b):
    m = agro_material(client, org_a)
    h = org_b.headers(Role.lab_manager)
    for path in (f"/api/v1/samples/{m['plate']['id']}/compliance-surface",
                 f"/api/v1/samples/{m['plate']['id']}/compliance-status"):
        assert client.get(path, headers=h).status_code == 404
    r = client.post("/api/v1/compliance/tag-links", json={"tag": "BSL-2", "target_type": "plasmid",
                                                          "target_id": m["plasmid"]["id"], "reason": "x"}, headers=h)
    assert r.status_code == 404, r.text
    r = client.post("/api/v1/compliance/tag-links", json={"tag": "BSL-2", "target_type": "sample",
                                                          "target_id": m["plate"]["id"], "reason": "x"}, headers=h)
    assert r.status_code == 404, r.text
