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
from domain.canonical import format_ts
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
from domain.runs.records import outbox
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
        seed_demo_history(s, technician)
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


def _field(key: str, label: str, type_: str, unit: str | None = None) -> dict[str, Any]:
    return {"key": key, "label": label, "type": type_, "unit": unit, "required": True}


_SUBCULTURE = [_field("media_batch", "Medium batch used", "batch_ref"), _field("new_batch", "New culture batch",
               "batch_ref"), _field("vessels", "Vessels", "integer"), _field("explants_per_vessel",
                                                                               "Explants per vessel", "integer")]
_SHOOTS = [_field("shoots", "Healthy shoots in the batch", "integer"),
           _field("contaminated_vessels", "Contaminated vessels discarded", "integer"),
           _field("growth_room_temp_c", "Growth room temperature", "number", "°C"),
           _field("photoperiod_h", "Photoperiod", "integer", "h")]
_INOCULATION = [_field("parent_culture", "Parent culture", "sample_ref"), _field("new_culture", "New culture",
                "sample_ref"), _field("media_batch", "Plate batch used", "batch_ref"),
                _field("plates", "Plates inoculated", "integer")]
_GROWTH = [_field("incubator_temp_c", "Incubator temperature", "number", "°C"),
           _field("colony_diameter_mm", "Colony diameter", "number", "mm"),
           _field("contaminated", "Contamination seen", "boolean"), _field("sporulating", "Sporulating", "boolean")]
_AGRO = [_field("strain", "Agrobacterium strain", "choice"), _field("construct", "Binary vector construct",
         "sample_ref"), _field("od600", "OD600 after resuspension", "number", "OD600")]
_PLATING = [_field("discs_plated", "Discs on selection", "integer"), _field("kanamycin_mg_l", "Kanamycin", "number",
            "mg/L")]
_SCORE = [_field("discs_with_shoots", "Discs with kanamycin-resistant shoots", "integer"),
          _field("contaminated_plates", "Plates with fungal or bacterial contamination", "integer")]

# The lab's last quarter, as its science reports read it (docs/reports.md works the contamination rate by hand):
# (line, medium batch, operator, month, [(vessels, contaminated vessels) per subculture cycle]).
DEMO_SUBCULTURES: tuple[tuple[str, str, str, str, list[tuple[int, int]]], ...] = (
    ("SR1", "MS-BAP-0901", "Tariq Technician", "2026-09", [(40, 2), (40, 6)]),
    ("SR1", "MS-BAP-1002", "Tariq Technician", "2026-10", [(48, 3)]),
    ("Desiree", "MS-BAP-1002", "Sam Scientist", "2026-10", [(30, 3), (30, 0)]),
    ("Desiree", "MS-BAP-1101", "Tariq Technician", "2026-11", [(36, 9)]),
)
# (isolate's first culture, colony diameter per passage in mm, contaminated passage or None)
DEMO_PASSAGES = (("PO-17 master culture", [62.0, 58.5, 55.0, 41.5], 3),)
# (strain, construct, discs plated, discs with shoots)
DEMO_TRANSFORMATIONS = (("GV3101", "pBIN19-GFP", 118, 64), ("GV3101", "pBIN19-GFP", 96, 41),
                        ("GV3101", "pCAMBIA1301", 110, 27))


def seed_demo_history(s: Session, technician: Caller) -> None:
    """The lab's recent bench history, as the lake has it (runs and their form rows through the outbox): what the
    science reports (domain/reports/system.py) read on a fresh demo. Written once, with the lab itself."""
    org = technician.org_id

    def run(key: str, protocol: str, subject: dict[str, str], at: str) -> str:
        run_id = str(uuid.uuid5(org, f"demo-history:{key}"))
        outbox(s, org, "run", {"run_id": run_id, "org_id": str(org), "protocol_key": protocol, "protocol_version": 1,
                               "status": "completed", "launched_by": technician.actor.id, "launched_at": at,
                               "updated_at": at, "ended_at": at, "subjects": [subject], "parameters": {},
                               "time_scale": 1.0, "revision": 1})
        return run_id

    def form(run_id: str, protocol: str, step: str, form_key: str, fields: list[dict[str, Any]],
             values: dict[str, Any], at: str, by: str, iteration: int = 0) -> None:
        outbox(s, org, "form_submission", {
            "submission_id": str(uuid.uuid5(uuid.UUID(run_id), f"{step}:{iteration}")), "org_id": str(org),
            "run_id": run_id, "protocol_key": protocol, "protocol_version": 1, "step_key": step, "form_key": form_key,
            "iteration": iteration, "submitted_by": technician.actor.id, "submitted_by_display": by,
            "submitted_at": at, "fields": fields, "values": values})

    def day(month: str, d: int) -> str:
        return format_ts(dt.datetime.fromisoformat(f"{month}-{d:02d}T10:00:00+00:00"))

    tc = "plant-tissue-subculture"
    for n, (line, medium, operator, month, cycles) in enumerate(DEMO_SUBCULTURES):
        rid = run(f"tc:{n}", tc, {"type": "batch", "id": line}, day(month, 1))
        for i, (vessels, lost) in enumerate(cycles):
            form(rid, tc, "subculture", "plant_subculture", _SUBCULTURE,
                 {"media_batch": medium, "new_batch": f"{line}-{month}-{i + 1}", "vessels": vessels,
                  "explants_per_vessel": 5}, day(month, 2 + i), operator, i)
            form(rid, tc, "shoot_count", "shoot_count", _SHOOTS,
                 {"shoots": (vessels - lost) * 4, "contaminated_vessels": lost, "growth_room_temp_c": 24.5,
                  "photoperiod_h": 16}, day(month, 20 + i), operator, i)
    fp = "fungal-culture-passage"
    for n, (isolate, diameters, contaminated_at) in enumerate(DEMO_PASSAGES):
        rid = run(f"fungal:{n}", fp, {"type": "sample", "id": isolate}, day("2026-10", 1))
        parent = isolate
        for i, diameter in enumerate(diameters):
            child = f"PO-17 passage {i + 4}"
            form(rid, fp, "inoculation", "fungal_inoculation", _INOCULATION,
                 {"parent_culture": parent, "new_culture": child, "media_batch": "PDA-1001", "plates": 3},
                 day("2026-10", 1 + 7 * i), "Tariq Technician", i)
            form(rid, fp, "growth_check", "fungal_growth_check", _GROWTH,
                 {"incubator_temp_c": 25.0, "colony_diameter_mm": diameter, "contaminated": i == contaminated_at,
                  "sporulating": False}, day("2026-10", 6 + 7 * i), "Tariq Technician", i)
            parent = child
    at = "agrobacterium-transformation"
    for n, (strain, construct, plated, shoots) in enumerate(DEMO_TRANSFORMATIONS):
        rid = run(f"agro:{n}", at, {"type": "batch", "id": EXPLANT_BATCH}, day("2026-11", 2 + n))
        form(rid, at, "culture_prep", "agro_culture", _AGRO, {"strain": strain, "construct": construct,
                                                              "od600": 0.5}, day("2026-11", 2 + n), "Sam Scientist")
        form(rid, at, "selection_transfer", "selection_plating", _PLATING,
             {"discs_plated": plated, "kanamycin_mg_l": 100}, day("2026-11", 5 + n), "Sam Scientist")
        form(rid, at, "regeneration_check", "regeneration_score", _SCORE,
             {"discs_with_shoots": shoots, "contaminated_plates": 1}, day("2026-11", 25 + n), "Sam Scientist")
