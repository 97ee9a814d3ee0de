"""What callers send and get about regulatory tags, the compliance surface, checklists, authorizations,
qualifications and compliance status."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, PrivateAttr

from domain.limits import Input, SafeText

TAG_KEY = r"^[A-Za-z][A-Za-z0-9_-]{0,39}$"
ITEM_KEY = r"^[a-z][a-z0-9_]{0,63}$"
COURSE = r"^[a-z][a-z0-9_-]{0,63}$"
REGISTRY_TARGETS = ("strain", "plasmid", "ingredient", "lot", "equipment", "supplier", "species")
def _no_number(value: object) -> object:
    # Pydantic alone would take 0 as a Unix time: an instant or a day is written out (what `format` promises).
    if isinstance(value, int | float | bool):
        raise ValueError("written out: 2026-05-01T09:30:00Z for an instant, 2026-05-01 for a day")
    return value


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("an instant needs its offset (Z or ±hh:mm)")
    return value


Instant = Annotated[dt.datetime, BeforeValidator(_no_number), AfterValidator(_aware)]
Day = Annotated[dt.date, BeforeValidator(_no_number)]
TargetType = Literal["strain", "plasmid", "ingredient", "lot", "equipment", "supplier", "species", "protocol", "step",
                     "sample", "batch"]
Reason = Field(min_length=1, max_length=2000, description="why (kept in the audit trail)")


class TagRead(BaseModel):
    id: uuid.UUID
    key: str
    name: str
    description: str
    framework: str
    archived: bool


class TagCreate(Input):
    key: str = Field(pattern=TAG_KEY, max_length=40, description="e.g. `recombinant_dna`, `BSL-2`")
    name: SafeText = Field(min_length=1, max_length=120)
    description: SafeText = Field(default="", max_length=2000)
    framework: SafeText = Field(default="", max_length=200)


class TagAttach(Input):
    """Attach a tag (by key) to a registry record, protocol (by key), protocol step (a protocol version's id and
    the step's key), sample or batch."""

    tag: str = Field(max_length=40, pattern=TAG_KEY)
    target_type: TargetType
    target_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                           description="the record's id; a protocol's key; a step's protocol version id")
    step_key: str | None = Field(max_length=64, default=None, pattern=r"^[a-z][a-z0-9_]{0,63}$",
                                 description="steps only")
    reason: SafeText = Reason


class TagLinkRead(BaseModel):
    id: uuid.UUID
    tag: str
    target_type: str
    target_id: str
    step_key: str | None
    attached_at: dt.datetime
    attached_by_display: str
    reason: str | None


class Hop(BaseModel):
    """One link of the path that brought a tag: a record, or a derivation between two samples."""

    type: str = Field(description="sample, batch, strain, plasmid, lot, …, protocol, step, run, derivation")
    id: str | None = None
    code: str | None = None
    label: str


class Provenance(BaseModel):
    """The path that brought a tag: `path` from the record holding it to the first sample (`through`), then down
    the lineage (`generations` derivations, each step in the surface's `lineage`) to the subject, then `after`
    (a batch surface's batch)."""

    source: Hop = Field(description="the record the tag is attached to")
    path: list[Hop] = Field(description="from the source to the sample it came through (that sample last)")
    through: uuid.UUID | None = Field(default=None, description="the sample the path enters the lineage at")
    generations: int = Field(default=0, description="derivations from `through` down to the subject")
    after: list[Hop] = Field(default=[], description="hops after the lineage (a batch surface: the batch)")
    text: str = Field(description="the whole path as people read it: `rDNA ← plasmid pCAMBIA1301 ← … ← plate "
                                  "S-311` (more than 8 generations: the middle ones counted, not named)")
    step_key: str | None = Field(default=None, description="a run's step tag: it applies to that step only")


class LineageStep(BaseModel):
    """A sample on a shown path and the derivation that leads from it towards the subject."""

    id: str = Field(description="the sample's id")
    code: str
    label: str
    child_id: str | None = Field(description="the next sample's id towards the subject; null: the subject")
    derivation: str | None = Field(description="how the child derives from it, e.g. `subculture run … step …`")


class SurfaceTag(BaseModel):
    key: str
    name: str
    framework: str
    provenance: list[Provenance] = Field(description="the shortest paths first (at most 10)")
    paths: int = Field(description="how many paths bring the tag in all")


class Surface(BaseModel):
    subject_type: Literal["sample", "batch", "run"]
    subject_id: uuid.UUID
    subject_label: str
    ancestors: int = Field(description="samples reached through lineage")
    tags: list[SurfaceTag]
    lineage: list[LineageStep] = Field(default=[], description="every sample on a shown path, once: follow "
                                                               "`child_id` from a provenance's `through`")
    # The lineage steps as plain rows (a thousand of them are not worth a model each): `to_json` writes them.
    _steps: list[dict[str, str | None]] = PrivateAttr(default_factory=list)

    def with_steps(self, steps: list[dict[str, str | None]]) -> Surface:
        self._steps = steps
        return self

    def to_json(self) -> bytes:
        """The answer's JSON, `lineage` included (as `model_dump_json` would write it, faster)."""
        if not self._steps:
            return self.model_dump_json().encode()
        head = self.model_dump_json(exclude={"lineage"}).encode()
        return head[:-1] + b',"lineage":' + orjson.dumps(self._steps) + b"}"

    def keys(self, step_key: str | None = None) -> set[str]:
        """The tag keys on the surface; for one step of a run, without other steps' own tags."""
        return {t.key for t in self.tags
                if any(p.step_key is None or p.step_key == step_key for p in t.provenance)}


# ---------------------------------------------------------------- frameworks, checklists


TagKey = Annotated[str, Field(max_length=40, pattern=TAG_KEY)]


class Scope(Input):
    """Which runs and steps a checklist item applies to. Every condition given must hold."""

    any: list[TagKey] = Field(default=[], max_length=20, description="at least one of these tags on the surface")
    all: list[TagKey] = Field(default=[], max_length=20, description="every one of these tags")
    none: list[TagKey] = Field(default=[], max_length=20, description="none of these tags")
    entity_type: Literal["sample", "batch"] | None = Field(default=None, description="the run has a subject of it")
    protocol_key: str | None = Field(max_length=64, default=None, pattern=r"^[a-z][a-z0-9_-]{1,63}$")
    step_kind: Literal["task"] | None = None
    step_key: str | None = Field(max_length=64, default=None, pattern=r"^[a-z][a-z0-9_]{0,63}$")
    role: str | None = Field(default=None, max_length=40, description="the step is done by this role")


class FrameworkCreate(Input):
    key: str = Field(max_length=40, pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    name: SafeText = Field(min_length=1, max_length=200)
    description: SafeText = Field(default="", max_length=2000)


class FrameworkRead(BaseModel):
    id: uuid.UUID
    key: str
    name: str
    description: str
    items: list[ChecklistItemRead] = []


class ChecklistItemCreate(Input):
    key: str = Field(max_length=64, pattern=ITEM_KEY,
                     description="unique in the organization; the task's checklist key is `compliance_<key>`")
    text: SafeText = Field(min_length=1, max_length=500)
    scope: Scope


class ChecklistItemRead(BaseModel):
    id: uuid.UUID
    framework_id: uuid.UUID
    key: str
    text: str
    scope: Scope
    archived: bool


# ---------------------------------------------------------------- authorizations, qualifications


class RuleCreate(Input):
    tags: list[TagKey] = Field(min_length=1, max_length=20, description="any of these tags on a run's surface …")
    authorization_type: SafeText = Field(min_length=1, max_length=80, description="… needs an active one of these")
    description: SafeText = Field(default="", max_length=2000)


class RuleRead(BaseModel):
    id: uuid.UUID
    tags: list[str]
    authorization_type: str
    description: str


class AuthorizationCreate(Input):
    authorization_type: SafeText = Field(min_length=1, max_length=80, description="e.g. `IBC approval`")
    title: SafeText = Field(min_length=1, max_length=200)
    issuer: SafeText = Field(min_length=1, max_length=200, description="e.g. the Institutional Biosafety Committee")
    protocol_keys: list[Annotated[str, Field(max_length=64, pattern=r"^[a-z][a-z0-9_-]{1,63}$")]] = Field(
        default=[], max_length=50, description="protocols covered; empty: every one")
    tags: list[TagKey] = Field(default=[], max_length=20, description="tags covered; empty: every one the type is for")
    valid_from: Instant
    valid_until: Instant


class AuthorizationSign(Input):
    password: str = Field(min_length=1, max_length=1024, description="re-entered to sign (21 CFR 11.200)")
    reason: SafeText | None = Field(default=None, max_length=2000)


class AuthorizationRead(BaseModel):
    id: uuid.UUID
    code: str
    authorization_type: str
    title: str
    issuer: str
    protocol_keys: list[str]
    tags: list[str]
    valid_from: dt.datetime
    valid_until: dt.datetime
    status: Literal["pending", "active", "revoked"]
    in_force: bool
    approved_by_display: str | None
    approved_at: dt.datetime | None
    signature_id: uuid.UUID | None


class QualificationCreate(Input):
    user_id: uuid.UUID
    course: str = Field(max_length=64, pattern=COURSE, description="e.g. `biosafety_bsl2`")
    completed_on: Day
    expires_on: Day | None = None
    evidence_id: uuid.UUID | None = None


class QualificationRead(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    course: str
    completed_on: dt.date
    expires_on: dt.date | None
    current: bool
    evidence_id: uuid.UUID | None
    recorded_at: dt.datetime


class ComplianceStatus(BaseModel):
    subject_type: Literal["sample", "run"]
    subject_id: uuid.UUID
    status: Literal["compliant", "action_needed", "on_hold", "deviation_open"]
    reasons: list[str]
    tags: list[str]


FrameworkRead.model_rebuild()
