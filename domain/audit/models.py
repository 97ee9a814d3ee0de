"""The auditor's package over HTTP: what is asked for, what is answered."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from domain.limits import Input

PackageScope = Literal["run", "sample", "batch", "entity", "period"]
SCOPE_DOC = ("`run` (the run, its tasks and their evidence), `sample` or `batch` (it and its evidence), `entity` (any "
             "entity the log names: `entity_type` and `id`), or `period` (every entry between `since` and `until`)")


class PackageCreate(Input):
    scope: PackageScope = Field(description=SCOPE_DOC)
    id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$",
                           description="the run, sample or batch id (a UUID), or the entity's id; not for `period`")
    entity_type: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[a-z][a-z_]*$",
                                    description="with scope `entity` only")
    since: AwareDatetime | None = Field(default=None, description="entries that occurred at or after this instant")
    until: AwareDatetime | None = Field(default=None, description="entries that occurred before this instant")
    consistent_with: int | None = Field(
        default=None, ge=1, le=2**62,
        description="the size of an earlier signed checkpoint you keep (a witness): the package then carries the "
                    "RFC 9162 consistency proof from it to the package's checkpoint (`verify-package --witness`)")
    include_files: bool = Field(default=False, description="put the evidence files' bytes in the archive too "
                                                           "(their hashes are always in its evidence manifest)")

    @model_validator(mode="after")
    def _shape(self) -> Self:
        for name in ("since", "until"):
            v = getattr(self, name)
            if v is not None:
                try:
                    setattr(self, name, v.astimezone(dt.UTC))
                except (OverflowError, ValueError):
                    raise ValueError(f"{name}: not an instant that can be given in UTC") from None
        if self.scope == "period":
            if self.id is not None or self.entity_type is not None:
                raise ValueError("scope period takes since and until, not id or entity_type")
            if self.since is None or self.until is None:
                raise ValueError("scope period needs since and until")
        else:
            if self.id is None:
                raise ValueError(f"scope {self.scope} needs id")
            if (self.entity_type is not None) != (self.scope == "entity"):
                raise ValueError("entity_type goes with scope entity, and scope entity needs it")
            if self.scope in ("run", "sample", "batch"):
                try:
                    uuid.UUID(self.id)
                except ValueError:
                    raise ValueError(f"id: the {self.scope}'s id is a UUID") from None
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class PackageRead(BaseModel):
    id: uuid.UUID
    scope: dict[str, object]
    entries: int
    checkpoint_size: int
    root_hash: str
    sha256: str
    size_bytes: int
    created_at: dt.datetime
    created_by: str
    download: str = Field(description="GET this path for the archive (zip)")
