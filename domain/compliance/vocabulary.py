"""The controlled vocabulary of regulatory tags every organization starts with.

Migration 0022 seeds the same twelve tags into the organizations that existed then; `seed` puts them into a new
organization (domain/identity/service.py `create_org`). Keys are the ones protocol definitions name in
`regulatory_tags` (domain/protocols/definition.py REGULATORY_TAGS), so a protocol's own tags join the surface.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class SeedTag:
    key: str
    name: str
    description: str
    framework: str


SEED = (
    SeedTag("BSL-1", "BSL-1", "Biosafety level 1: agents not known to cause disease in healthy adults.", "BMBL"),
    SeedTag("BSL-2", "BSL-2", "Biosafety level 2: agents of moderate hazard; restricted access, biosafety cabinet.",
            "BMBL"),
    SeedTag("BSL-3", "BSL-3",
            "Biosafety level 3: indigenous or exotic agents with potential for aerosol transmission.", "BMBL"),
    SeedTag("recombinant_dna", "rDNA / NIH Guidelines",
            "Recombinant or synthetic nucleic acid molecules: work under the NIH Guidelines, IBC review.",
            "NIH Guidelines"),
    SeedTag("gmo", "GMO", "Genetically modified organism: contained use and release rules.", "NIH Guidelines"),
    SeedTag("select_agent", "Select agent", "Select agents and toxins (42 CFR 73): registered entity, permit.",
            "Federal Select Agent Program"),
    SeedTag("export_control", "Export controlled", "Material or data under export control (EAR / ITAR).",
            "Export control"),
    SeedTag("hazardous_chemical", "Hazardous chemical",
            "Hazardous chemicals (OSHA Lab Standard, chemical hygiene plan).", "OSHA"),
    SeedTag("radioactive", "Radioactive", "Radioactive material under the institution's radiation license.",
            "Radiation safety"),
    SeedTag("human_derived", "Human-derived", "Human-derived material: bloodborne pathogens, consent, IRB.",
            "OSHA BBP"),
    SeedTag("animal_derived", "Animal-derived", "Animal-derived material: IACUC, zoonoses.", "IACUC"),
    SeedTag("plant_pest", "Plant pest / quarantine", "Plant pests and quarantine material (USDA APHIS permits).",
            "USDA APHIS"),
)


def seed(session: Session, org_id: uuid.UUID | str) -> None:
    """The twelve tags in this organization (those it has already are left as they are). On a schema older than
    the compliance tables (an organization made before an upgrade) nothing: migration 0022 seeds them then."""
    if session.execute(text("SELECT to_regclass('compliance_tags')")).scalar() is None:
        return
    for tag in SEED:
        session.execute(
            text("INSERT INTO compliance_tags (id, org_id, key, name, description, framework, created_at, created_by)"
                 " VALUES (:i, :o, :k, :n, :d, :f, now(), 'system:seed') ON CONFLICT (org_id, key) DO NOTHING"),
            {"i": uuid.uuid4(), "o": str(org_id), "k": tag.key, "n": tag.name, "d": tag.description,
             "f": tag.framework})
