"""The demo organization's lab material: a small, believable plant and fungal lab, created through the same
services as the API (codes, audit entries, lake rows and all), so a newcomer can follow a batch from its strain
to its product on the first `make run`.

What it holds: an Agrobacterium strain with a binary vector (its glycerol stock, a plasmid prep and an overnight
culture derived from the stock), an oyster-mushroom isolate, a tobacco line and its leaf-explant batch, two
selection-medium batches made from dated ingredient lots, a laminar-flow hood and an autoclave with calibration
dates, and the storage locations they sit in. The walkthrough (docs/walkthrough.md) finds them by name.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.db import TenantSessions
from domain.compliance import authorizations, checklists, tags
from domain.compliance.models import (
    AuthorizationCreate,
    ChecklistItemCreate,
    FrameworkCreate,
    RuleCreate,
    Scope,
    TagAttach,
)
from domain.registry import service as registry
from domain.registry.models import ItemCreate, Kind
from domain.roles import Caller, RequestContext
from domain.samples import batches, lineage
from domain.samples import service as samples
from domain.samples.models import BatchCreate, BatchType, ChildSpec, Component, Derivation, SampleCreate

# Named so the walkthrough and the tests can find them (search by name: `GET /api/v1/samples?q=…`).
GLYCEROL_STOCK = "GV3101 pBIN19-GFP glycerol stock"
PLASMID_PREP = "pBIN19-GFP plasmid prep"
OVERNIGHT_CULTURE = "GV3101 pBIN19-GFP overnight culture"
EXPLANT_BATCH = "SR1 leaf explants, week 48"
SELECTION_MEDIUM = "MS kanamycin cefotaxime selection medium, pour 1"
SELECTION_MEDIUM_2 = "MS kanamycin cefotaxime selection medium, pour 2"
SR1_SHOOTS = "SR1 in vitro shoots"
TRANSFORMED_CALLUS = "SR1 callus transformed with pBIN19-GFP"
IBC_APPROVAL = "IBC-2026-014: Agrobacterium-mediated transformation of tobacco (pBIN19-GFP)"
SUBCULTURE_PROTOCOL = "plant-tissue-subculture"


def _as(caller: Caller, key: str) -> Caller:
    """The caller with a request id of its own per record: the services derive ids from it (a rerun makes none
    twice)."""
    return replace(caller, context=RequestContext(request_id=f"demo-lab:{key}"))


def _item(s: Session, caller: Caller, kind: Kind, name: str, parent: uuid.UUID | None = None,
          status: str | None = None, **attributes: Any) -> uuid.UUID:
    row = registry.create(s, caller, kind, ItemCreate(name=name, parent_id=parent, status=status,
                                                      attributes=attributes, reason="demo lab"))
    return row.id


def seed_demo_lab(owner: TenantSessions, manager: Caller, technician: Caller) -> bool:
    """Create the demo lab's material unless the organization has registry records already. True when created."""
    with owner.begin(manager.org_id) as s:
        if s.execute(text("SELECT to_regclass('registry_items')")).scalar() is None:
            return False  # a database not yet upgraded to the registries (migration 0013)
        if s.execute(text("SELECT 1 FROM registry_items WHERE org_id = :o LIMIT 1"), {"o": manager.org_id}).first():
            return False
        today = dt.date.today()
        m = manager
        supplier = _item(s, m, Kind.supplier, "Duchefa Biochemie", status="approved",
                         website="https://www.duchefa-biochemie.com",
                         approved_until=str(today + dt.timedelta(days=365)))
        site = _item(s, m, Kind.location, "Main campus", level="site")
        room = _item(s, m, Kind.location, "Tissue culture room 2.14", site, level="room", temperature_c=24)
        freezer = _item(s, m, Kind.location, "-80 °C freezer A", room, level="freezer", temperature_c=-80)
        shelf = _item(s, m, Kind.location, "Shelf 2", freezer, level="shelf")
        box = _item(s, m, Kind.location, "Glycerol stocks box 1", shelf, level="box")
        growth = _item(s, m, Kind.location, "Growth shelf 1", room, level="shelf", temperature_c=25)
        cold = _item(s, m, Kind.location, "Cold room 4 °C", site, level="room", temperature_c=4)
        _item(s, m, Kind.equipment, "Laminar-flow hood LF-2", equipment_type="laminar-flow hood",
              serial_number="LF2-88120", calibration_due=str(today + dt.timedelta(days=120)),
              maintenance_due=str(today + dt.timedelta(days=60)), location_id=str(room))
        _item(s, m, Kind.equipment, "Autoclave AC-1", equipment_type="autoclave", serial_number="AC1-5531",
              calibration_due=str(today + dt.timedelta(days=45)), maintenance_due=str(today + dt.timedelta(days=20)),
              location_id=str(room))
        agro = _item(s, m, Kind.species, "Agrobacterium tumefaciens", scientific_name="Agrobacterium tumefaciens",
                     ncbi_taxon_id=358, risk_group=1)
        oyster = _item(s, m, Kind.species, "Pleurotus ostreatus", scientific_name="Pleurotus ostreatus",
                       ncbi_taxon_id=5322, risk_group=1)
        tobacco = _item(s, m, Kind.species, "Nicotiana tabacum", scientific_name="Nicotiana tabacum",
                        ncbi_taxon_id=4097, risk_group=1)
        gv3101 = _item(s, m, Kind.strain, "GV3101", agro, risk_group=1, genotype="C58 chromosomal background, "
                       "rifampicin resistant; disarmed Ti helper pMP90 (gentamicin)", source="strain collection")
        po17 = _item(s, m, Kind.strain, "PO-17 oyster isolate", oyster, risk_group=1, source="field isolate, 2025")
        sr1 = _item(s, m, Kind.strain, "Petit Havana SR1", tobacco, risk_group=1, source="seed bank")
        pbin = _item(s, m, Kind.plasmid, "pBIN19-GFP", backbone="pBIN19", inserts=["GFP"],
                     resistance_markers=["kanamycin"], size_bp=12500)
        _item(s, m, Kind.plasmid, "pCAMBIA1301", backbone="pCAMBIA1300", inserts=["GUS", "hptII"],
              resistance_markers=["hygromycin", "kanamycin"], size_bp=11837)
        lots: dict[str, uuid.UUID] = {}
        for name, category, storage, hazards, lot_number, months in (
                ("Murashige & Skoog basal salts", "ingredient", "2–8 °C, dry", [], "M0221.0050-2604", 18),
                ("Sucrose", "ingredient", "room temperature, dry", [], "S0809.1000-2602", 36),
                ("Plant agar", "ingredient", "room temperature, dry", [], "P1001.1000-2601", 36),
                ("Kanamycin sulfate", "reagent", "2–8 °C", ["health_hazard"], "K0126.0025-2605", 24),
                ("Cefotaxime sodium", "reagent", "2–8 °C, dark", ["irritant"], "C0111.0010-2606", 12)):
            ingredient = _item(s, m, Kind.ingredient, name, category=category, supplier_id=str(supplier),
                               storage_conditions=storage, hazards=hazards)
            lots[name] = _item(s, m, Kind.lot, f"{name} lot {lot_number}", ingredient, lot_number=lot_number,
                               supplier_id=str(supplier), received_on=str(today - dt.timedelta(days=30)),
                               expiry_date=str(today + dt.timedelta(days=30 * months)))
        # Batches: the leaf explants to transform, and two pours of selection medium from those lots.
        medium_record = {"recipe": "MS salts 4.4 g/L, sucrose 30 g/L, agar 8 g/L; after autoclaving kanamycin "
                                   "100 mg/L, cefotaxime 250 mg/L", "autoclave": "Autoclave AC-1, 121 °C 20 min",
                         "lots": [str(v) for v in lots.values()]}
        made: tuple[tuple[str, str, BatchType, dict[str, Any]], ...] = (
                ("explants", EXPLANT_BATCH, "plant_line", {"line": "Petit Havana SR1", "age_days": 35}),
                ("medium-1", SELECTION_MEDIUM, "media", medium_record),
                ("medium-2", SELECTION_MEDIUM_2, "media", medium_record))
        for key, name, kind, record in made:
            batches.create(s, _as(m, f"batch:{key}"),
                           BatchCreate(batch_type=kind, name=name, record=record, reason="demo lab"))
    with owner.begin(technician.org_id) as s:
        t = technician
        stock, _ = samples.create(s, _as(t, "sample:stock"), SampleCreate(
            sample_type="glycerol_stock", name=GLYCEROL_STOCK, location_id=box,
            components=[Component(item_id=gv3101), Component(item_id=pbin)],
            attributes={"glycerol_percent": 25}, reason="demo lab"))
        samples.create(s, _as(t, "sample:prep"), SampleCreate(
            sample_type="plasmid_prep", name=PLASMID_PREP, location_id=box, components=[Component(item_id=pbin)],
            attributes={"concentration_ng_ul": 182}, reason="demo lab"))
        samples.create(s, _as(t, "sample:po17"), SampleCreate(
            sample_type="culture", name="PO-17 master culture", location_id=cold, components=[Component(item_id=po17)],
            attributes={"medium": "PDA", "passage": 3}, reason="demo lab"))
        samples.create(s, _as(t, "sample:sr1"), SampleCreate(
            sample_type="plate", name=SR1_SHOOTS, location_id=growth, components=[Component(item_id=sr1)],
            reason="demo lab"))
        lineage.derive(s, _as(t, "sample:overnight"), Derivation(
            parent_ids=[stock.id], operation="subculture",
            children=[ChildSpec(sample_type="culture", name=OVERNIGHT_CULTURE, location_id=growth,
                                attributes={"medium": "LB rifampicin gentamicin kanamycin", "od600": 0.8})],
            reason="overnight culture for the transformation"))
    return True


def seed_demo_compliance(owner: TenantSessions, manager: Caller, scientist: Caller, technician: Caller) -> bool:
    """The demo lab's compliance story (docs/compliance.md), once: pBIN19-GFP tagged rDNA, GV3101 handled at BSL-2,
    a callus transformed from the overnight culture and the SR1 shoots; the NIH Guidelines framework with an rDNA
    checklist item for task steps; the rule that rDNA work needs an IBC approval; the lab's IBC approval recorded
    by the lab manager, pending the owner's or an administrator's signature. A subculture run launched on the
    callus picks up the rDNA item and waits on authorization hold until that approval is signed. True when
    created now."""
    with owner.begin(manager.org_id) as s:
        if s.execute(text("SELECT to_regclass('compliance_frameworks')")).scalar() is None:
            return False
        if s.execute(text("SELECT 1 FROM compliance_frameworks WHERE org_id = :o AND key = 'nih'"),
                     {"o": manager.org_id}).first():
            return False
        ids = {r.name: r.id for r in s.execute(text(
            "SELECT name, id FROM registry_items WHERE org_id = :o AND kind IN ('strain', 'plasmid')"),
            {"o": manager.org_id})}
        found = {r.name: r.id for r in s.execute(text(
            "SELECT name, id FROM samples WHERE org_id = :o AND name IN (:a, :b)"),
            {"o": manager.org_id, "a": OVERNIGHT_CULTURE, "b": SR1_SHOOTS})}
        if "pBIN19-GFP" not in ids or "GV3101" not in ids or len(found) < 2:
            return False  # not the demo lab's material
        sci = scientist
        tags.attach(s, _as(sci, "tag:pbin"), TagAttach(
            tag="recombinant_dna", target_type="plasmid", target_id=str(ids["pBIN19-GFP"]),
            reason="binary vector with a GFP insert: recombinant DNA under the NIH Guidelines"))
        tags.attach(s, _as(sci, "tag:gv3101"), TagAttach(
            tag="BSL-2", target_type="strain", target_id=str(ids["GV3101"]),
            reason="the institution's biosafety committee handles transformed Agrobacterium at BSL-2"))
        fw = checklists.create_framework(s, manager, FrameworkCreate(
            key="nih", name="NIH Guidelines", description="Recombinant or synthetic nucleic acid molecules"))
        checklists.add_item(s, manager, fw.id, ChecklistItemCreate(
            key="rdna_waste", text="rDNA waste collected in the biohazard bin and autoclaved",
            scope=Scope(any=["recombinant_dna"], step_kind="task")))
        bmbl = checklists.create_framework(s, manager, FrameworkCreate(key="bmbl", name="BMBL BSL-2"))
        checklists.add_item(s, manager, bmbl.id, ChecklistItemCreate(
            key="bsc_certified", text="Work done in the certified biosafety cabinet", scope=Scope(all=["BSL-2"])))
        authorizations.create_rule(s, manager, RuleCreate(
            tags=["recombinant_dna"], authorization_type="IBC approval",
            description="NIH Guidelines Section III-D: IBC approval before the work starts"))
        now = dt.datetime.now(dt.UTC)
        authorizations.create(s, manager, AuthorizationCreate(
            authorization_type="IBC approval", title=IBC_APPROVAL, issuer="Institutional Biosafety Committee",
            protocol_keys=[SUBCULTURE_PROTOCOL, "agrobacterium-transformation"], tags=["recombinant_dna"],
            valid_from=now - dt.timedelta(days=1), valid_until=now + dt.timedelta(days=365)))
    with owner.begin(technician.org_id) as s:
        lineage.derive(s, _as(technician, "sample:callus"), Derivation(
            parent_ids=[found[OVERNIGHT_CULTURE], found[SR1_SHOOTS]], operation="transformation",
            step_key="co_cultivation",
            children=[ChildSpec(sample_type="callus", name=TRANSFORMED_CALLUS)],
            reason="leaf discs co-cultivated with the overnight culture; callus on selection"))
    return True
