"""Samples and batches: register, list and search, correct, move along their life, archive; lineage, trace and
chain of custody. Handlers authenticate, check the permission, validate, and make one service call
(domain/samples/)."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api import temporal
from api.deps import Instant, Permitted, PlatformDep, SessionDep, in_tx
from api.paging import CursorQuery, SearchQuery
from domain.compliance import checklists
from domain.compliance import tags as compliance_tags
from domain.pagination import Page
from domain.roles import Caller, Permission
from domain.samples import batches, custody, lineage, service, trace
from domain.samples.models import (
    MAX_DEPTH,
    ArchiveChange,
    BatchCreate,
    BatchDetail,
    BatchRead,
    BatchStatus,
    BatchStatusChange,
    BatchType,
    BatchUpdate,
    Derivation,
    Lineage,
    Move,
    MovementRead,
    ParentLink,
    SampleCreate,
    SampleDetail,
    SampleRead,
    SampleStatus,
    SampleType,
    SampleUpdate,
    StatusChange,
    Trace,
    Whereabouts,
)

router = APIRouter(prefix="/api/v1/samples", tags=["samples"])
batch_router = APIRouter(prefix="/api/v1/batches", tags=["batches"])
Reader = Annotated[Caller, Depends(Permitted(Permission.samples_read))]
Worker = Annotated[Caller, Depends(Permitted(Permission.samples_work))]
Manager = Annotated[Caller, Depends(Permitted(Permission.samples_manage))]

Limit = Query(default=50, ge=1, le=500)
CREATED: dict[int | str, dict[str, Any]] = {
    200: {"description": "What this X-Request-ID created before (a retry): nothing new."}}


# ---------------------------------------------------------------- what samples and batches share


def _life_routes(r: APIRouter, kind: Literal["sample", "batch"], read: type[BaseModel], status_body: type[BaseModel],
                 change_status: Callable[..., BaseModel], archive: Callable[..., BaseModel], status_doc: str) -> None:
    """`POST /{id}/status`, `/archive` and `/restore` of samples or batches: made here once for both (the path keeps
    its `sample_id` / `batch_id`, each operation its name: `change_sample_status`, `archive_batch`, …). A status
    move needs samples.work (batch decisions: samples.manage, asked by the service); archive and restore need
    samples.manage."""
    ident = f"{kind}_id"

    def route(action: str, name: str, doc: str, body: type[BaseModel], caller: Any,
              act: Callable[..., BaseModel]) -> None:
        def endpoint(**kw: Any) -> BaseModel:
            return act(kw["s"], kw["caller"], kw[ident], kw["data"])

        endpoint.__name__, endpoint.__doc__ = name, doc
        # FastAPI reads the parameters (path id, body, caller, session) from the signature.
        endpoint.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a)
            for n, a in ((ident, uuid.UUID), ("data", body), ("caller", caller), ("s", SessionDep))])
        r.add_api_route(f"/{{{ident}:uuid}}/{action}", endpoint, methods=["POST"], response_model=read, name=name)

    route("status", f"change_{kind}_status", status_doc, status_body, Worker, change_status)
    route("archive", f"archive_{kind}", f"Archive the {kind}: out of lists and work, never deleted.", ArchiveChange,
          Manager, archive)
    route("restore", f"restore_{kind}", f"Bring an archived {kind} back.", ArchiveChange, Manager,
          lambda s, caller, i, data: archive(s, caller, i, data, restore=True))


# ---------------------------------------------------------------- samples


@router.post("", response_model=SampleRead, status_code=201, responses=CREATED)
def create_sample(data: SampleCreate, caller: Worker, s: SessionDep) -> JSONResponse:
    """Register a sample (status `received`, code `S-000123`), with where it is kept, who holds it and what it is
    made of. Retrying with the same X-Request-ID returns the same sample (200)."""
    sample, created = service.create(s, caller, data)
    return JSONResponse(status_code=201 if created else 200, content=sample.model_dump(mode="json"))


@router.get("", response_model=Page[SampleRead])
def list_samples(caller: Reader, s: SessionDep, status: SampleStatus | None = None,
                 sample_type: SampleType | None = None, batch_id: uuid.UUID | None = None,
                 location_id: uuid.UUID | None = None, owner_id: uuid.UUID | None = None,
                 archived: bool = Query(default=False, description="archived samples instead of the others"),
                 q: str | None = SearchQuery, cursor: str | None = CursorQuery, limit: int = Limit) -> Page[SampleRead]:
    """Samples of the organization, newest first; `next_cursor` continues the list."""
    return service.list_samples(s, status=status, sample_type=sample_type, batch_id=batch_id,
                                location_id=location_id, owner_id=owner_id, archived=archived, q=q, cursor=cursor,
                                limit=limit)


@router.post("/derive", response_model=list[SampleRead], status_code=201, responses=CREATED)
def derive(data: Derivation, caller: Worker, s: SessionDep) -> JSONResponse:
    """Make child samples from one or more parents by a named operation (aliquot, subculture, passage, pooling,
    transformation, extraction), recorded with the run, step and task that did it. Parents that are consumed,
    disposed, contaminated or archived are refused (422, with the reason)."""
    ids, created = lineage.derive(s, caller, data)
    made = [service.read(service.row_of(s, i)) for i in ids]
    return JSONResponse(status_code=201 if created else 200, content=[m.model_dump(mode="json") for m in made])


@router.get("/{sample_id:uuid}", response_model=SampleDetail)
def get_sample(sample_id: uuid.UUID, caller: Reader, s: SessionDep) -> SampleDetail:
    """The sample, what it is made of, its parents and children."""
    return service.get(s, sample_id)


@router.patch("/{sample_id:uuid}", response_model=SampleRead)
def update_sample(sample_id: uuid.UUID, data: SampleUpdate, caller: Worker, s: SessionDep) -> SampleRead:
    """Correct the name, details or batch, naming the revision you read (409 if it changed since) and why."""
    return service.update(s, caller, sample_id, data)


@router.post("/{sample_id:uuid}/parents", response_model=Lineage)
async def link_parents(sample_id: uuid.UUID, data: ParentLink, caller: Worker, s: SessionDep,
                       p: PlatformDep) -> Lineage:
    """Record that this sample derives from these parents by an operation. A link that would make the sample its
    own ancestor is refused (409). Open runs on the sample (or its descendants) see their compliance surface
    change: their tasks' checklist items follow (on record) and they check their authorizations again."""
    graph, runs = await in_tx(s, _link, caller, sample_id, data)
    await temporal.recheck_authorizations(p, runs)
    return graph


def _link(s: Session, caller: Caller, sample_id: uuid.UUID, data: ParentLink) -> tuple[Lineage, list[uuid.UUID]]:
    graph = lineage.link(s, caller, sample_id, data)
    runs = compliance_tags.runs_of_samples(s, [sample_id])
    checklists.sync_runs(s, runs, why=f"sample {sample_id} has new parents")
    return graph, runs


@router.get("/{sample_id:uuid}/lineage", response_model=Lineage)
def get_lineage(sample_id: uuid.UUID, caller: Reader, s: SessionDep,
                direction: Literal["ancestors", "descendants"] = "ancestors",
                depth: int = Query(default=MAX_DEPTH, ge=1, le=MAX_DEPTH, description="generations")) -> Response:
    """The sample's ancestors or descendants: nodes (code, type, status) and edges (operation, run, step, task)."""
    # Serialized once, by the model that built it (no second validation pass: this is the hot read of lineage).
    return Response(lineage.graph(s, sample_id, direction, depth).model_dump_json(), media_type="application/json")


@router.get("/{sample_id:uuid}/trace", response_model=Trace)
def sample_trace(sample_id: uuid.UUID, caller: Reader, s: SessionDep) -> Trace:
    """Everything that happened to the sample, in time order: changes, runs, steps that named it, movements and
    hand-overs, lineage events, evidence files, each with who did it."""
    return trace.sample_trace(s, caller.org_id, sample_id)


@router.post("/{sample_id:uuid}/moves", response_model=MovementRead, status_code=201)
def move_sample(sample_id: uuid.UUID, data: Move, caller: Worker, s: SessionDep) -> MovementRead:
    """Move the sample to a storage location and/or hand it over to a member, with the reason (chain of
    custody; an audit entry)."""
    return custody.move(s, caller, sample_id, data)


@router.get("/{sample_id:uuid}/locations", response_model=Whereabouts)
def sample_locations(sample_id: uuid.UUID, caller: Reader, s: SessionDep,
                     at: Instant | None = Query(default=None, description="the instant asked about (default: now)")
                     ) -> Whereabouts:
    """Where the sample was at `at`, who held it, since when; and its whole location history."""
    return custody.whereabouts(s, sample_id, at)


_life_routes(router, "sample", SampleRead, StatusChange, service.change_status, service.archive,
             "Move the sample along its life: received → in_use → consumed / disposed / contaminated (contaminated →"
             " disposed), with the reason; another move is refused (409, naming both states).")


# ---------------------------------------------------------------- batches


@batch_router.post("", response_model=BatchRead, status_code=201, responses=CREATED)
def create_batch(data: BatchCreate, caller: Worker, s: SessionDep) -> JSONResponse:
    """Open a batch (code `B-000007`) with its batch record. Retrying with the same X-Request-ID returns it (200)."""
    batch, created = batches.create(s, caller, data)
    return JSONResponse(status_code=201 if created else 200, content=batch.model_dump(mode="json"))


@batch_router.get("", response_model=Page[BatchRead])
def list_batches(caller: Reader, s: SessionDep, status: BatchStatus | None = None,
                 batch_type: BatchType | None = None,
                 archived: bool = Query(default=False, description="archived batches instead of the others"),
                 q: str | None = SearchQuery, cursor: str | None = CursorQuery, limit: int = Limit) -> Page[BatchRead]:
    """Batches of the organization, newest first."""
    return batches.list_batches(s, status=status, batch_type=batch_type, archived=archived, q=q, cursor=cursor,
                                limit=limit)


@batch_router.get("/{batch_id:uuid}", response_model=BatchDetail)
def get_batch(batch_id: uuid.UUID, caller: Reader, s: SessionDep) -> BatchDetail:
    """The batch, its record and its samples."""
    return batches.get(s, batch_id)


@batch_router.patch("/{batch_id:uuid}", response_model=BatchRead)
def update_batch(batch_id: uuid.UUID, data: BatchUpdate, caller: Worker, s: SessionDep) -> BatchRead:
    """Correct the name or (while open) the batch record, naming the revision you read and why."""
    return batches.update(s, caller, batch_id, data)


@batch_router.get("/{batch_id:uuid}/trace", response_model=Trace)
def batch_trace(batch_id: uuid.UUID, caller: Reader, s: SessionDep) -> Trace:
    """Everything that happened to the batch, in time order: changes and decisions, runs, steps that named it,
    its samples, evidence files."""
    return trace.batch_trace(s, caller.org_id, batch_id)


_life_routes(batch_router, "batch", BatchRead, BatchStatusChange, batches.change_status, batches.archive,
             "Release or reject an open batch, close a decided one (lab managers: samples.manage), with the reason.")
