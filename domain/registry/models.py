"""The registries' shapes: one typed attribute model per kind, and the request and answer shapes of every record.

A registry record is the same everywhere (code, name, parent, status, archived or not, revision); what a kind adds
is its `attributes`, checked here by the kind's model: a strain's risk group, a plasmid's backbone and markers, a
lot's number and expiry date, an equipment's calibration and maintenance due dates, a location's level.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.limits import Input


class Kind(StrEnum):
    species = "species"
    strain = "strain"
    plasmid = "plasmid"
    ingredient = "ingredient"
    lot = "lot"
    equipment = "equipment"
    supplier = "supplier"
    location = "location"


class LocationLevel(StrEnum):
    site = "site"
    room = "room"
    freezer = "freezer"
    shelf = "shelf"
    box = "box"
    position = "position"


L = LocationLevel
# Where each level of storage may sit: a room in a site, a freezer in a room, a shelf in a freezer (or on a room's
# wall: dry storage), a box on a shelf (or straight in a freezer), a position in a box. A site sits nowhere.
LOCATION_PARENTS: dict[LocationLevel, frozenset[LocationLevel]] = {
    L.site: frozenset(),
    L.room: frozenset({L.site}),
    L.freezer: frozenset({L.room}),
    L.shelf: frozenset({L.freezer, L.room}),
    L.box: frozenset({L.shelf, L.freezer}),
    L.position: frozenset({L.box}),
}

Hazard = Literal["explosive", "flammable", "oxidizing", "compressed_gas", "corrosive", "toxic", "irritant",
                 "health_hazard", "environmental", "biohazard", "radioactive"]
RiskGroup = int  # 1–4, as the WHO Laboratory Biosafety Manual grades organisms

_Text = Field(default=None, max_length=500)
Tag = Annotated[str, Field(min_length=1, max_length=200)]


class Attributes(Input):
    """What a kind adds to a record; unknown keys refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SpeciesAttributes(Attributes):
    scientific_name: str | None = Field(default=None, max_length=200, description="e.g. Agrobacterium tumefaciens")
    ncbi_taxon_id: int | None = Field(default=None, ge=1, le=100_000_000)
    risk_group: RiskGroup | None = Field(default=None, ge=1, le=4,
                                         description="the organism's risk group, 1 (low) to 4 (high)")


class StrainAttributes(Attributes):
    risk_group: RiskGroup = Field(ge=1, le=4, description="the organism's risk group, 1 (low) to 4 (high)")
    genotype: str | None = _Text
    source: str | None = Field(default=None, max_length=500, description="where it came from: a collection, a lab")
    gmo: bool = Field(default=False, description="genetically modified")


class PlasmidAttributes(Attributes):
    backbone: str = Field(min_length=1, max_length=200, description="e.g. pCAMBIA1300")
    inserts: list[Tag] = Field(default_factory=list, max_length=50)
    resistance_markers: list[Tag] = Field(default_factory=list, max_length=50,
                                          description="e.g. kanamycin, hygromycin")
    size_bp: int | None = Field(default=None, ge=1, le=10_000_000)


class IngredientAttributes(Attributes):
    category: Literal["ingredient", "reagent"] = "ingredient"
    supplier_id: uuid.UUID | None = Field(default=None, description="the supplier record (a `supplier`)")
    catalog_number: str | None = Field(default=None, max_length=100)
    storage_conditions: str | None = Field(default=None, max_length=200, description="e.g. 2–8 °C, dark")
    hazards: list[Hazard] = Field(default_factory=list, max_length=11)


class LotAttributes(Attributes):
    lot_number: str = Field(min_length=1, max_length=100, description="the supplier's lot number")
    expiry_date: dt.date | None = None
    supplier_id: uuid.UUID | None = Field(default=None, description="the supplier record (a `supplier`)")
    received_on: dt.date | None = None
    quantity: str | None = Field(default=None, max_length=100, description="e.g. 500 g")


class EquipmentAttributes(Attributes):
    equipment_type: str | None = Field(default=None, max_length=100, description="e.g. autoclave, laminar-flow hood")
    serial_number: str | None = Field(default=None, max_length=100)
    calibration_due: dt.date | None = None
    maintenance_due: dt.date | None = None
    location_id: uuid.UUID | None = Field(default=None, description="where it stands (a `location`)")


class SupplierAttributes(Attributes):
    contact: str | None = Field(default=None, max_length=200)
    website: str | None = Field(default=None, max_length=200)
    approved_until: dt.date | None = Field(default=None, description="when its approval is due for review")


class LocationAttributes(Attributes):
    level: LocationLevel
    temperature_c: float | None = Field(default=None, ge=-273, le=1000, description="the storage temperature")


@dataclass(frozen=True)
class KindRules:
    """What differs by kind: its code prefix, attribute model, statuses, and parent."""

    prefix: str
    attributes: type[Attributes]
    statuses: tuple[str, ...]  # the first is a new record's
    parent: Kind | None = None  # the kind its parent is, if it has one
    parent_required: bool = False
    references: tuple[tuple[str, Kind], ...] = ()  # attribute → the kind of record it names


K = Kind
RULES: dict[Kind, KindRules] = {
    K.species: KindRules("SP", SpeciesAttributes, ("active",)),
    K.strain: KindRules("ST", StrainAttributes, ("active",), parent=K.species, parent_required=True),
    K.plasmid: KindRules("PL", PlasmidAttributes, ("active",)),
    K.ingredient: KindRules("IN", IngredientAttributes, ("active",), references=(("supplier_id", K.supplier),)),
    K.lot: KindRules("LOT", LotAttributes, ("available", "quarantined", "used_up"), parent=K.ingredient,
                     parent_required=True, references=(("supplier_id", K.supplier),)),
    K.equipment: KindRules("EQ", EquipmentAttributes, ("in_service", "out_of_service"),
                           references=(("location_id", K.location),)),
    K.supplier: KindRules("SUP", SupplierAttributes, ("pending", "approved", "disqualified")),
    K.location: KindRules("LOC", LocationAttributes, ("active",), parent=K.location),
}

Name = Field(min_length=1, max_length=200)
Reason = Field(min_length=1, max_length=2000, description="why: kept in the audit trail")
NAME_RULE = "1–200 characters"


class ItemCreate(Input):
    """A new record. `attributes` follow the kind (see the kind's attribute shape in the description)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Name
    parent_id: uuid.UUID | None = Field(default=None, description="a strain's species, a lot's ingredient, a "
                                                                  "location's enclosing location")
    status: str | None = Field(default=None, max_length=32, description="default: the kind's first status")
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=50)
    reason: str | None = Field(default=None, max_length=2000, description="why, if worth keeping (audit trail)")


class ItemUpdate(Input):
    """A change: only the fields given change; `attributes` keys given replace those keys (null clears one).
    `revision` is the revision you read: if the record changed since, nothing is written (409)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    revision: int = Field(ge=1, le=2**31 - 1)
    reason: str = Reason
    name: str | None = Field(default=None, min_length=1, max_length=200)
    parent_id: uuid.UUID | None = None
    status: str | None = Field(default=None, max_length=32)
    attributes: dict[str, Any] | None = Field(default=None, max_length=50)


class ArchiveRequest(Input):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Reason
    revision: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                 description="the revision you read; if given and the record changed since, 409")


class ItemRead(BaseModel):
    id: uuid.UUID
    kind: Kind
    code: str = Field(description="human-readable, unique in the organization, e.g. ST-000012; what its label "
                                  "encodes and GET /api/v1/registry/lookup/{code} finds")
    name: str
    parent_id: uuid.UUID | None
    status: str
    attributes: dict[str, Any]
    archived: bool
    archived_at: dt.datetime | None
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    revision: int


ImportAction = Literal["create", "update", "unchanged", "invalid"]


class ImportRow(BaseModel):
    row: int = Field(description="the line's row number in the file, the header being row 1")
    action: ImportAction
    code: str | None = Field(description="the record's code (for a new record in a dry run: the code it would get)")
    name: str | None
    problems: list[str] = []
    changes: list[str] = Field(default=[], description="the fields an update changes")


class ImportReport(BaseModel):
    kind: Kind
    dry_run: bool
    applied: bool = Field(description="true when the records were written (an apply without any problem)")
    import_id: uuid.UUID | None = Field(description="the audit entry of an applied import")
    counts: dict[ImportAction, int]
    rows: list[ImportRow]
