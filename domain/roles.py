"""Roles, callers and the permission matrix (data, not code scattered in handlers)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import ConfigDict


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
    samples_read = "samples.read"
    samples_work = "samples.work"
    samples_manage = "samples.manage"
    registry_read = "registry.read"
    registry_write = "registry.write"
    evidence_upload = "evidence.upload"
    evidence_read = "evidence.read"
    compliance_read = "compliance.read"
    compliance_tag = "compliance.tag"
    compliance_manage = "compliance.manage"
    authorizations_approve = "authorizations.approve"
    reports_use = "reports.use"
    reports_finalize = "reports.finalize"
    events_read = "events.read"
    events_raise = "events.raise"
    events_manage = "events.manage"
    capa_work = "capa.work"
    audits_read = "audits.read"
    audits_conduct = "audits.conduct"
    alerts_read = "alerts.read"


class AuditScope(StrEnum):
    """How much of the organization's audit log a role may read."""

    whole = "whole"  # every entry
    work = "work"  # every entry but identity and access ones (logins, members, API keys)
    own = "own"  # the entries of the caller's own actions
    none = "none"


R = Role
AUDIT_SCOPES: dict[Role, AuditScope] = {
    R.owner: AuditScope.whole,
    R.admin: AuditScope.whole,
    R.auditor: AuditScope.whole,
    R.lab_manager: AuditScope.work,
    R.scientist: AuditScope.work,
    R.technician: AuditScope.own,
    R.analyst: AuditScope.none,
}

PERMISSIONS: dict[Permission, frozenset[Role]] = {
    Permission.org_read: ALL_ROLES,
    Permission.members_read: frozenset({R.owner, R.admin, R.lab_manager, R.auditor}),
    Permission.members_manage: frozenset({R.owner, R.admin}),
    Permission.apikeys_manage: frozenset({R.owner, R.admin}),
    # What each role sees of the log is narrowed further by audit_scope().
    Permission.audit_read: frozenset(r for r, scope in AUDIT_SCOPES.items() if scope is not AuditScope.none),
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
    # Samples and batches: everyone who works at the bench or inspects reads them (trace, lineage, custody).
    Permission.samples_read: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician, R.auditor}),
    # Bench work: register samples and batches, move and hand them over, derive children, put them in use,
    # consume, dispose or flag them contaminated, correct their details.
    Permission.samples_work: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician}),
    # Decisions on material: release or reject a batch, close it, archive and restore records.
    Permission.samples_manage: frozenset({R.owner, R.admin, R.lab_manager}),
    # The registries (strains, plasmids, ingredients and lots, equipment, suppliers, locations): whoever works
    # with the material or inspects it reads them and prints their labels; lab managers and administrators keep
    # them (create, change, archive and restore, CSV import). Analysts read them in the lake.
    Permission.registry_read: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician, R.auditor}),
    Permission.registry_write: frozenset({R.owner, R.admin, R.lab_manager}),
    # Evidence files: whoever works the bench keeps them (photos, printouts); whoever reviews or audits the work
    # reads and downloads them. Analysts see their metadata in the lake, not the files. Links are written by an
    # upload or a completion, with the permission each needs.
    Permission.evidence_upload: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician}),
    Permission.evidence_read: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician, R.auditor}),
    # Compliance: whoever works or inspects reads tags, surfaces, checklists, authorizations, qualifications and
    # statuses; scientists and lab managers tag material and protocols (with the reason); lab managers keep the
    # vocabulary, frameworks, rules, authorization records and training records; an authorization is put in force
    # by an approver's e-signature (never the person who recorded it).
    Permission.compliance_read: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician, R.auditor}),
    Permission.compliance_tag: frozenset({R.owner, R.admin, R.lab_manager, R.scientist}),
    Permission.compliance_manage: frozenset({R.owner, R.admin, R.lab_manager}),
    Permission.authorizations_approve: frozenset({R.owner, R.admin}),
    # Reports (domain/reports): the builder (browse the lake's tables, validate, preview, save definitions), executing
    # reports, exports. Lab managers and scientists read the lake through reports only (not Flight SQL); technicians
    # do not report. Finalizing is a reviewer's signature.
    Permission.reports_use: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.auditor, R.analyst}),
    Permission.reports_finalize: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.auditor}),
    # Compliance events (deviations, contaminations, ...): whoever works or inspects raises and reads them; lab
    # managers run their investigation and CAPA and close them (never the reporter: domain/events/service.py).
    Permission.events_read: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician, R.auditor}),
    Permission.events_raise: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician, R.auditor}),
    Permission.events_manage: frozenset({R.owner, R.admin, R.lab_manager}),
    # A CAPA action is done by its owner (any bench role) or a lab manager.
    Permission.capa_work: frozenset({R.owner, R.admin, R.lab_manager, R.scientist, R.technician}),
    # Formal audits: auditors conduct them (scope, findings, outcome, their signature); managers read them.
    Permission.audits_read: frozenset({R.owner, R.admin, R.lab_manager, R.auditor}),
    Permission.audits_conduct: frozenset({R.owner, R.admin, R.auditor}),
    # Alerts: every member reads and acknowledges the alerts addressed to them or their role.
    Permission.alerts_read: ALL_ROLES,
}


def allowed(role: Role | str, permission: Permission) -> bool:
    return Role(role) in PERMISSIONS[permission]


def audit_scope(role: Role | str) -> AuditScope:
    """The part of the audit log `role` may read: one rule for the API and the lake (Flight SQL)."""
    return AUDIT_SCOPES.get(Role(role), AuditScope.none) if role in ALL_ROLES else AuditScope.none


AUDIT_LOG_TABLE = "audit_log"  # the lake's copy of the audit log


def may_read_lake_table(role: Role | str, table: str) -> bool:
    """Whether `role` may see (list and query) the lake table `table` over Flight SQL (roles with `lake.query`) or
    through reports (roles with `reports.use`).

    The lake's `audit_log` follows the API's audit rule: a table cannot be narrowed to part of
    the log, so only roles that read the whole log see it.
    """
    if role not in ALL_ROLES or not (allowed(role, Permission.lake_query) or allowed(role, Permission.reports_use)):
        return False
    if table == AUDIT_LOG_TABLE:
        return audit_scope(role) is AuditScope.whole
    return True


@dataclass(frozen=True)
class Actor:
    """Who acted: a user, an API key, or the platform itself (escalations, sealing)."""

    type: str  # "user" | "api_key" | "system"
    id: str
    display: str


SYSTEM_ACTOR = Actor(type="system", id="flasktrack", display="Flask Track")


@dataclass(frozen=True)
class RequestContext:
    """The request an action came with, as the API saw it: on every audit entry, and carried through Temporal
    with completions, decisions and controls (the same fields in recorded histories)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # as a Temporal payload's field: unknown fields refused

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
