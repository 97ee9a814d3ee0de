"""Shapes of approvals over the API."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field

from domain.limits import Input


class ApprovalRequest(Input):
    """Approve or reject an approval step with an electronic signature (password re-entered)."""

    task_id: uuid.UUID | None = Field(default=None, description="the approval task; default: the one open approval")
    decision: Literal["approve", "reject"]
    password: str = Field(min_length=1, max_length=1024)
    reason: str | None = Field(default=None, max_length=2000, description="required when rejecting")
