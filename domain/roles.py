"""Roles, callers and the permission matrix (data, not code scattered in handlers)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    owner = "owner"
    admin = "admin"
    lab_manager = "lab_manager"
    scientist = "scientist"
    technician = "technician"
    auditor = "auditor"
    analyst = "analyst"


ALL_ROLES: frozenset[Role] = frozenset(Role)


class Permission(StrEnum):
    org_read = "org.read"
    members_read = "members.read"
    members_manage = "members.manage"
    apikeys_manage = "apikeys.manage"
    audit_read = "audit.read"
    audit_verify = "audit.verify"
    audit_export = "audit.export"
    protocols_read = "protocols.read"
    protocols_author = "protocols.author"
    protocols_approve = "protocols.approve"
    runs_read = "runs.read"
    runs_launch = "runs.launch"
    runs_control = "runs.control"
    runs_history = "runs.history"
    tasks_read = "tasks.read"
    tasks_work = "tasks.work"
    approvals_sign = "approvals.sign"
    lake_query = "lake.query"


R = Role
PERMISSIONS: dict[Permission, frozenset[Role]] = {
    Permission.org_read: ALL_ROLES,
    Permission.members_read: frozenset({R.owner, R.admin, R.lab_manager, R.auditor}),
    Permission.members_manage: frozenset({R.owner, R.admin}),
    Permission.apikeys_manage: frozenset({R.owner, R.admin}),
    # What each role sees of the log is narrowed further by audit_scope().
    Permission.audit_read: frozenset({R.owner, R.admin, R.auditor, R.lab_manager, R.scientist, R.technician}),
    Permission.audit_verify: frozenset({R.owner, R.admin, R.auditor}),
    Permission.audit_export: frozenset({R.owner, R.admin, R.auditor}),
    Permission.protocols_read: frozenset(
        {R.owner, R.admin, R.lab_manager, R.scientist, R.technician, R.auditor}
    ),
    Permission.protocols_author: frozenset({R.owner, R.admin, R.lab_manager, R.scientist}),
    Permission.protocols_approve: frozenset({R.owner, R.admin, R.lab_manager}),
    Permission.runs_read: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician, R.auditor}),
    Permission.runs_launch: frozenset({R.owner, R.admin, R.lab_manager}),
    Permission.runs_control: frozenset({R.owner, R.admin, R.lab_manager}),
    Permission.runs_history: frozenset({R.owner, R.admin, R.lab_manager, R.auditor}),
    Permission.tasks_read: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician}),
    # Each step narrows this further to the roles its protocol allows.
    Permission.tasks_work: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician}),
    Permission.approvals_sign: frozenset({R.owner, R.admin, R.lab_manager, R.scientist}),
    Permission.lake_query: frozenset({R.owner, R.admin, R.auditor, R.analyst}),
}


def allowed(role: Role | str, permission: Permission) -> bool:
    return Role(role) in PERMISSIONS[permission]


@dataclass(frozen=True)
class Actor:
    """Who acted: a user, an API key, or the platform itself (escalations, sealing)."""

    type: str  # "user" | "api_key" | "system"
    id: str
    display: str


SYSTEM_ACTOR = Actor(type="system", id="flasktrack", display="Flask Track")


@dataclass(frozen=True)
class RequestContext:
    request_id: str | None = None
    client_address: str | None = None
    user_agent: str | None = None
    api_key_id: str | None = None


@dataclass(frozen=True)
class Caller:
    """An authenticated principal acting in one organization."""

    org_id: uuid.UUID
    org_slug: str
    role: Role
    actor: Actor
    user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    context: RequestContext = field(default_factory=RequestContext)

    def can(self, permission: Permission) -> bool:
        return allowed(self.role, permission)
