"""The registries: species, strains, plasmids, ingredients and lots, equipment, suppliers, storage locations.

One set of operations for every kind (`{kind}` in the path): list (filters, search, cursor), create, read, change
(optimistic: the revision you read), archive and restore with a reason, a printable label, a CSV import with a
dry run; and a look-up by code across kinds, for what a scanner types from a label.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from starlette.exceptions import HTTPException

from api.deps import Permitted, SessionDep, in_tx
from api.errors import ErrorBody
from domain.errors import Invalid
from domain.pagination import CURSOR_PATTERN, MAX_SEARCH_LENGTH, Page
from domain.registry import imports, labels, service
from domain.registry.models import (
    ArchiveRequest,
    ImportReport,
    ItemCreate,
    ItemRead,
    ItemUpdate,
    Kind,
    LocationLevel,
)
from domain.registry.service import Change, ItemFilter
from domain.roles import Caller, Permission

router = APIRouter(prefix="/api/v1/registry", tags=["registry"])
Reader = Annotated[Caller, Depends(Permitted(Permission.registry_read))]
Keeper = Annotated[Caller, Depends(Permitted(Permission.registry_write))]
KindPath = Annotated[Kind, Path(description="species, strain, plasmid, ingredient, lot, equipment, supplier or "
                                            "location")]
IF_MATCH = r'^(W/)?"?[0-9]{1,10}"?$'
CSV_MEDIA = "text/csv"
MULTIPART = "multipart/form-data"


def item_filter(
    status: str | None = Query(default=None, max_length=32),
    parent_id: uuid.UUID | None = Query(default=None, description="records directly under this one"),
    archived: Literal["exclude", "include", "only"] = Query(
        default="exclude", description="archived records are hidden unless asked for"),
    risk_group: int | None = Query(default=None, ge=1, le=4, description="species and strains"),
    level: LocationLevel | None = Query(default=None, description="locations"),
    supplier_id: uuid.UUID | None = Query(default=None, description="ingredients and lots"),
    expiry_before: dt.date | None = Query(default=None, description="lots expiring before this day"),
    calibration_due_before: dt.date | None = Query(default=None, description="equipment"),
    maintenance_due_before: dt.date | None = Query(default=None, description="equipment"),
) -> ItemFilter:
    return ItemFilter(status=status, parent_id=parent_id, archived=archived, risk_group=risk_group, level=level,
                      supplier_id=supplier_id, expiry_before=expiry_before,
                      calibration_due_before=calibration_due_before, maintenance_due_before=maintenance_due_before)


def _etag(response: Response, item: ItemRead) -> ItemRead:
    response.headers["ETag"] = f'"{item.revision}"'
    return item


@router.get("/lookup/{code}", response_model=ItemRead)
def lookup(caller: Reader, s: SessionDep, response: Response,
           code: str = Path(min_length=1, max_length=64, description="a record's code as printed or scanned, "
                                                                     "e.g. LOT-000012 (case and spaces ignored)")
           ) -> ItemRead:
    """The record with this code, whatever its kind: type or scan a label's code (`/lookup/LOT-000012`)."""
    return _etag(response, service.read(service.lookup(s, code)))


@router.get("/{kind}", response_model=Page[ItemRead])
def list_items(kind: KindPath, caller: Reader, s: SessionDep, f: ItemFilter = Depends(item_filter),
               q: str | None = Query(default=None, max_length=MAX_SEARCH_LENGTH,
                                     description="words that codes or names start with, e.g. `agro` or `LOT-0001`"),
               cursor: str | None = Query(default=None, pattern=CURSOR_PATTERN,
                                          description="`next_cursor` of the page before"),
               limit: int = Query(default=50, ge=1, le=500)) -> Page[ItemRead]:
    """The kind's records, newest first; archived ones only when asked for. A filter that does not apply to the
    kind (`expiry_before` on strains) is refused (422) rather than answered with an empty page."""
    return service.list_items(s, kind, f, q=q, cursor=cursor, limit=limit)


@router.post("/{kind}", response_model=ItemRead, status_code=201)
def create(kind: KindPath, data: ItemCreate, caller: Keeper, s: SessionDep, response: Response) -> ItemRead:
    """A new record with its code (e.g. `ST-000012`). `attributes` by kind:
    species `scientific_name`, `ncbi_taxon_id`, `risk_group` (1–4);
    strain `risk_group` (1–4, required), `genotype`, `source`, `gmo` — and `parent_id` its species;
    plasmid `backbone` (required), `inserts`, `resistance_markers`, `size_bp`;
    ingredient `category` (ingredient | reagent), `supplier_id`, `catalog_number`, `storage_conditions`, `hazards`;
    lot `lot_number` (required), `expiry_date`, `supplier_id`, `received_on`, `quantity` — and `parent_id` its
    ingredient; equipment `equipment_type`, `serial_number`, `calibration_due`, `maintenance_due`, `location_id`;
    supplier `contact`, `website`, `approved_until`;
    location `level` (site, room, freezer, shelf, box, position; required), `temperature_c` — and `parent_id` the
    location it is in (a room in a site, a freezer in a room, a shelf in a freezer or room, a box on a shelf or in
    a freezer, a position in a box).
    Statuses: lot available | quarantined | used_up; equipment in_service | out_of_service; supplier pending |
    approved | disqualified; the others active. A name is unique among the kind's records of one parent (409)."""
    return _etag(response, service.read(service.create(s, caller, kind, data)))


@router.get("/{kind}/{item_id:uuid}", response_model=ItemRead)
def get_item(kind: KindPath, item_id: uuid.UUID, caller: Reader, s: SessionDep, response: Response) -> ItemRead:
    """One record; its `ETag` is its revision."""
    return _etag(response, service.read(service.get(s, kind, item_id)))


@router.patch("/{kind}/{item_id:uuid}", response_model=ItemRead)
def update(kind: KindPath, item_id: uuid.UUID, data: ItemUpdate, caller: Keeper, s: SessionDep, response: Response,
           if_match: str | None = Header(default=None, alias="If-Match", pattern=IF_MATCH,
                                         description="the ETag you read; like `revision`, 409 if it is stale")
           ) -> ItemRead:
    """Change a record, with the reason. Give the `revision` you read: if the record changed since, nothing is
    written and the answer is 409 with its current revision. Archived records do not change (restore first)."""
    expected = int(re.sub(r"\D", "", if_match)) if if_match else None
    given = data.model_fields_set
    change = Change(revision=data.revision, reason=data.reason, name=data.name, parent_id=data.parent_id,
                    parent_given="parent_id" in given, status=data.status, attributes=data.attributes)
    return _etag(response, service.read(service.update(s, caller, kind, item_id, change, if_match=expected)))


@router.post("/{kind}/{item_id:uuid}/archive", response_model=ItemRead)
def archive(kind: KindPath, item_id: uuid.UUID, data: ArchiveRequest, caller: Keeper, s: SessionDep,
            response: Response) -> ItemRead:
    """Archive a record, with the reason: hidden from lists (`archived=include` shows it), never deleted. A record
    that still holds records that are not archived (a freezer with boxes, a species with strains) is refused."""
    return _etag(response, service.read(service.set_archived(s, caller, kind, item_id, data, archived=True)))


@router.post("/{kind}/{item_id:uuid}/restore", response_model=ItemRead)
def restore(kind: KindPath, item_id: uuid.UUID, data: ArchiveRequest, caller: Keeper, s: SessionDep,
            response: Response) -> ItemRead:
    """Restore an archived record, with the reason (its parent first, if that is archived too)."""
    return _etag(response, service.read(service.set_archived(s, caller, kind, item_id, data, archived=False)))


@router.get("/{kind}/{item_id:uuid}/label", response_class=Response, responses={200: {
    "description": "A 70 × 36 mm label: the code as a QR code and a Code 128 barcode, the name, what it is.",
    "content": {"image/svg+xml": {"schema": {"type": "string"}}}}})
def label(kind: KindPath, item_id: uuid.UUID, caller: Reader, s: SessionDep) -> Response:
    """The record's printable label (SVG). Both symbols encode the code alone, so a scanner typing it into
    GET /api/v1/registry/lookup/{code} finds the record."""
    row = service.get(s, kind, item_id)
    return Response(content=labels.label_svg(row), media_type="image/svg+xml",
                    headers={"Content-Disposition": f'inline; filename="{row.code}.svg"'})


_FORM = {"type": "object", "required": ["file"], "additionalProperties": False,
         "properties": {"file": {"type": "string", "format": "binary"}}}
_UPLOAD: dict[str, Any] = {
    "requestBody": {"required": True, "description": "UTF-8 CSV, a header line naming the columns; as the body "
                                                     "(text/csv) or as the `file` part of a form",
                    "content": {CSV_MEDIA: {"schema": {"type": "string", "maxLength": 1 << 20}},
                                MULTIPART: {"schema": _FORM}}}}


async def _upload(request: Request) -> tuple[bytes, str | None]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == MULTIPART:
        async with request.form(max_files=1, max_fields=5) as form:
            part = form.get("file")
            if part is None or isinstance(part, str):
                raise Invalid("no file", reasons=["file: the CSV file, as the form's `file` part"])
            return await part.read(), (part.filename or None)
    if media in (CSV_MEDIA, "text/plain", "application/csv"):
        return await request.body(), None
    raise HTTPException(415, f"send the CSV as {CSV_MEDIA} or as the `file` part of {MULTIPART} "
                             f"(not {media[:100] or 'no Content-Type'})")


@router.post("/{kind}/import", response_model=ImportReport, openapi_extra=_UPLOAD,
             responses={415: {"model": ErrorBody, "description": "The body is neither text/csv nor a form with a "
                                                                 "`file` part."}})
async def import_items(kind: KindPath, request: Request, caller: Keeper, s: SessionDep,
                       dry_run: bool = Query(default=True, description="report what would be done, write nothing"),
                       reason: str | None = Query(default=None, max_length=2000, description="kept in the audit "
                                                                                             "trail")
                       ) -> ImportReport:
    """Import records from CSV (see the columns below). `dry_run=true` (the default) reports, line by line, what
    would be created, changed or left unchanged and every problem, writing nothing. `dry_run=false` applies the
    file all or nothing: any problem and nothing is written (422, every line's problems in `reasons`). A file that
    is not this kind's CSV at all (not UTF-8, control characters, no header, an unknown column) is refused (422)
    either way.
    Columns: `code` (to change a record), `name`, `parent` (code or name), `status`, and the kind's attributes by
    name; lists separated by `;`; an empty cell leaves a field as it is. A line matches a record by code, else by
    name among the kind's records with the same parent. At most 5,000 lines."""
    data, filename = await _upload(request)
    return await in_tx(s, imports.import_csv, caller, kind, data, dry_run=dry_run, reason=reason, filename=filename)
