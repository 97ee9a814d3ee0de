"""Protocol versions and their lifecycle: draft → in_review → approved → retired (in_review → draft when sent back).

Rules kept here, not in the API:
- Only drafts change, and only by their author. An in_review version goes back to draft first; an approved or
  retired version never changes (the database trigger refuses it too): a change is a new draft version
  (`new_version`), at most one open (draft or in_review) version per protocol at a time.
- Submitting compiles the document; any problem refuses the submission with every problem and its path.
- Approval is an electronic signature (meaning "approved", password re-entered) bound to the content hash, by
  someone holding protocols.approve who did not author the version (segregation of duties).
- Approving a version leaves earlier approved versions approved (runs pin their version) until retired.
- Versions are authored by people: an API key cannot author, submit or sign.
Every change writes its audit entry (before, after, reason) in the same transaction.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.errors import Conflict, Forbidden, Invalid, NotFound, conflict_if_taken
from domain.identity.service import LoginLimits
from domain.protocols.compiler import compile_protocol, content_hash, schema_problems
from domain.protocols.definition import ProtocolDefinition
from domain.protocols.loader import ProtocolLoadError, parse_protocol_text
from domain.protocols.models import (
    ApprovalRead,
    DocumentInput,
    DraftUpdate,
    Person,
    ProtocolCreate,
    ProtocolDetail,
    ProtocolRead,
    ValidateRequest,
    ValidationResult,
    VersionCreate,
    VersionRead,
    VersionStatus,
    VersionSummary,
)
from domain.protocols.plan import ExecutionPlan, Problem
from domain.protocols.rows import PROTOCOL_SELECT, ProtocolRow, ProtocolVersionRow
from domain.roles import Caller, Permission
from domain.rows import from_row
from domain.runs import records
from domain.signatures import Meaning, SignatureInput, sign

S = VersionStatus
_DB_KEY = re.compile(r"[a-z][a-z0-9_-]{1,63}")  # the protocols.key CHECK, stricter than the compiler's slug rule


class ProtocolProblems(Invalid):
    """The document cannot be stored or submitted; `problems` lists every one with its path (422)."""

    def __init__(self, message: str, problems: list[Problem]) -> None:
        super().__init__(message, reasons=[str(problem) for problem in problems])
        self.problems = problems


class WrongStatus(Conflict):
    """The version is not in the state the requested transition starts from (409)."""

    def __init__(self, message: str, *, current: VersionStatus, requested: VersionStatus) -> None:
        super().__init__(message)
        self.current = current
        self.requested = requested


class SegregationOfDuties(Forbidden):
    """The author of a version may not approve it (403)."""


# ---------------------------------------------------------------- documents


def read_document(data: DocumentInput) -> tuple[dict[str, Any], ProtocolDefinition]:
    """The document given as `definition` or `yaml`, and its validated shape; ProtocolProblems if it has none."""
    if (data.definition is None) == (data.yaml is None):
        reason = "give exactly one document: 'definition' (a JSON object) or 'yaml' (text)"
        raise Invalid("one protocol document is needed", reasons=[f"definition: {reason}", f"yaml: {reason}"])
    if data.yaml is not None:
        try:
            document = parse_protocol_text(data.yaml)
        except ProtocolLoadError as error:
            problems = [Problem(path=f"yaml ({p.path})", message=p.message) for p in error.problems]
            raise ProtocolProblems("the YAML text cannot be read", problems) from error
    else:
        assert data.definition is not None
        document = data.definition
    try:
        definition = ProtocolDefinition.model_validate(document)
    except ValidationError as error:
        # Every problem of every layer: the shape's, and the content rules' over the well-shaped rest.
        problems = compile_protocol(document, 1).problems if isinstance(document, dict) else schema_problems(error)
        raise ProtocolProblems("the document is not a protocol definition", problems) from error
    try:
        json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as error:  # YAML dates, .nan and the like: not storable as JSON
        raise Invalid("the document holds a value JSON cannot store", reasons=[f"document: {error}"]) from error
    return document, definition


def validate(data: ValidateRequest) -> ValidationResult:
    """Compile a document without storing anything: every problem with its path, or the plan."""
    try:
        _, definition = read_document(data)
    except ProtocolProblems as error:
        return ValidationResult(ok=False, problems=error.problems, content_hash=None, plan=None)
    result = compile_protocol(definition, data.version)
    return ValidationResult(
        ok=result.ok,
        problems=result.problems,
        content_hash=content_hash(definition),
        plan=result.plan.model_dump(mode="json") if result.plan else None,
    )


# ---------------------------------------------------------------- reads

_VERSION_SQL = """
SELECT v.id, v.protocol_id, p.key AS protocol_key, v.version, v.status, v.definition, v.content_hash, v.plan,
       v.author_id, ua.display_name AS author_name, v.created_at, v.submitted_at, v.approved_at, v.retired_at,
       v.approval_signature_id, sg.signer_id, sg.signer_name, sg.meaning, sg.signed_at,
       sg.content_hash AS signed_hash, sg.reason AS signature_reason
FROM protocol_versions v
JOIN protocols p ON p.id = v.protocol_id
LEFT JOIN users ua ON ua.id = v.author_id
LEFT JOIN signatures sg ON sg.id = v.approval_signature_id
WHERE p.org_id = current_org()
"""  # the org filter repeats row-level security, for sessions that bypass it (owner: demo seed, CLI)


def _summary(row: ProtocolVersionRow) -> VersionSummary:
    approval = None
    if row.approval_signature_id is not None:
        # a signature's meaning, time and hash are never NULL
        assert row.meaning is not None and row.signed_at is not None and row.signed_hash is not None
        approval = ApprovalRead(
            signature_id=row.approval_signature_id, signer=Person(id=row.signer_id, name=row.signer_name),
            meaning=Meaning(row.meaning), signed_at=row.signed_at, content_hash=row.signed_hash,
            reason=row.signature_reason,
        )
    return VersionSummary(
        id=row.id, protocol_key=row.protocol_key, version=row.version, status=S(row.status),
        title=str(row.definition.get("title", "")), content_hash=row.content_hash,
        author=Person(id=row.author_id, name=row.author_name), created_at=row.created_at,
        submitted_at=row.submitted_at, approved_at=row.approved_at, retired_at=row.retired_at, approval=approval,
    )


def _read(row: ProtocolVersionRow) -> VersionRead:
    problems = compile_protocol(row.definition, row.version).problems if row.status == S.draft else []
    return VersionRead(
        **_summary(row).model_dump(), definition=row.definition, plan=row.plan, problems=problems
    )


def _version_row(session: Session, key: str, version: int, *, lock: bool = False) -> ProtocolVersionRow:
    row = session.execute(
        text(_VERSION_SQL + " AND p.key = :k AND v.version = :v" + (" FOR UPDATE OF v" if lock else "")),
        {"k": key, "v": version},
    ).first()
    if row is None:
        raise NotFound(f"protocol '{key}' has no version {version}")
    return from_row(ProtocolVersionRow, row)


def _protocol_row(session: Session, key: str, *, lock: bool = False) -> ProtocolRow:
    row = session.execute(text(PROTOCOL_SELECT + " AND p.key = :k" + (" FOR UPDATE OF p" if lock else "")),
                          {"k": key}).first()
    if row is None:
        raise NotFound(f"no protocol '{key}'")
    return from_row(ProtocolRow, row)


def _protocol_read(protocol: ProtocolRow, versions: list[VersionSummary]) -> ProtocolDetail:
    return ProtocolDetail(
        id=protocol.id, key=protocol.key, title=protocol.title,
        created_by=Person(id=protocol.created_by, name=protocol.created_by_name), created_at=protocol.created_at,
        latest_version=versions[-1], approved_versions=[v.version for v in versions if v.status == S.approved],
        versions=versions,
    )


def list_protocols(session: Session) -> list[ProtocolRead]:
    """Every protocol of the organization, by key, with its latest version and the approved ones."""
    protocols = [from_row(ProtocolRow, r) for r in session.execute(text(PROTOCOL_SELECT + " ORDER BY p.key")).all()]
    versions: dict[uuid.UUID, list[VersionSummary]] = {}
    for r in session.execute(text(_VERSION_SQL + " ORDER BY v.protocol_id, v.version")).all():
        row = from_row(ProtocolVersionRow, r)
        versions.setdefault(row.protocol_id, []).append(_summary(row))
    return [
        ProtocolRead(**_protocol_read(p, versions[p.id]).model_dump(exclude={"versions"}))
        for p in protocols if p.id in versions
    ]


def get_protocol(session: Session, *, key: str) -> ProtocolDetail:
    protocol = _protocol_row(session, key)
    return _protocol_read(protocol, list_versions(session, key=key))


def list_versions(session: Session, *, key: str) -> list[VersionSummary]:
    rows = session.execute(text(_VERSION_SQL + " AND p.key = :k ORDER BY v.version"), {"k": key}).all()
    if not rows:
        raise NotFound(f"no protocol '{key}'")
    return [_summary(from_row(ProtocolVersionRow, row)) for row in rows]


def get_version(session: Session, *, key: str, version: int) -> VersionRead:
    return _read(_version_row(session, key, version))


def get_version_by_hash(session: Session, *, key: str, content_hash: str) -> VersionRead:
    """The newest version of the protocol with exactly this content (a copied draft shares its source's hash)."""
    row = session.execute(
        text(_VERSION_SQL + " AND p.key = :k AND v.content_hash = :h ORDER BY v.version DESC LIMIT 1"),
        {"k": key, "h": content_hash.lower()},
    ).first()
    if row is None:
        raise NotFound(f"protocol '{key}' has no version with content hash {content_hash}")
    return _read(from_row(ProtocolVersionRow, row))


# ---------------------------------------------------------------- changes


def _state(row: ProtocolVersionRow) -> dict[str, object]:
    """What the audit trail records of a version at each step (the definition itself where it changes)."""
    return {
        "id": str(row.id), "protocol_key": row.protocol_key, "version": row.version, "status": row.status,
        "content_hash": row.content_hash, "author_id": str(row.author_id) if row.author_id else None,
        "approval_signature_id": str(row.approval_signature_id) if row.approval_signature_id else None,
    }


def _person(caller: Caller, doing: str) -> uuid.UUID:
    if caller.actor.type != "user" or caller.user_id is None:
        raise Forbidden(f"only a person can {doing}; API keys cannot (protocol versions are attributable)")
    return caller.user_id


def _expect(row: ProtocolVersionRow, current: VersionStatus, requested: VersionStatus, hint: str = "") -> None:
    if row.status != current:
        raise WrongStatus(
            f"version {row.version} of '{row.protocol_key}' is {row.status}; "
            f"only a {current} version can become {requested}{hint}",
            current=S(row.status), requested=requested,
        )


def _insert_version(
    session: Session, caller: Caller, *, protocol_id: uuid.UUID, key: str, version: int,
    document: dict[str, Any], definition: ProtocolDefinition, reason: str | None,
) -> VersionRead:
    version_id = uuid.uuid4()
    session.execute(
        text("INSERT INTO protocol_versions (id, org_id, protocol_id, version, status, definition, content_hash, "
             "author_id) VALUES (:id, :o, :p, :v, 'draft', CAST(:d AS jsonb), :h, :a)"),
        {"id": version_id, "o": caller.org_id, "p": protocol_id, "v": version, "d": json.dumps(document),
         "h": content_hash(definition), "a": caller.user_id},
    )
    row = _version_row(session, key, version)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="protocol_version",
                 entity_id=version_id, after={**_state(row), "definition": document}, reason=reason,
                 context=caller.context)
    return _read(row)


def create_protocol(session: Session, caller: Caller, *, data: ProtocolCreate) -> VersionRead:
    """A new protocol from a document; its draft version 1 is answered. The key is unique in the organization."""
    author = _person(caller, "author a protocol")
    document, definition = read_document(data)
    key_problems = [p for p in compile_protocol(definition, 1).problems if p.path == "key"]
    if not key_problems and not _DB_KEY.fullmatch(definition.key):
        key_problems = [Problem(path="key", message="must start with a letter and be 2 to 64 characters long")]
    if key_problems:
        raise ProtocolProblems("the protocol key is not valid", key_problems)
    protocol_id = uuid.uuid4()
    with conflict_if_taken(session, f"a protocol with key '{definition.key}' already exists"):
        session.execute(
            text("INSERT INTO protocols (id, org_id, key, title, created_by) VALUES (:id, :o, :k, :t, :u)"),
            {"id": protocol_id, "o": caller.org_id, "k": definition.key, "t": definition.title, "u": author},
        )
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="protocol",
                 entity_id=protocol_id, after={"id": str(protocol_id), "key": definition.key,
                                               "title": definition.title}, context=caller.context)
    return _insert_version(session, caller, protocol_id=protocol_id, key=definition.key, version=1,
                           document=document, definition=definition, reason=None)


def new_version(session: Session, caller: Caller, *, key: str, data: VersionCreate) -> VersionRead:
    """A new draft version (the next number): from the given document, or a copy of an existing version."""
    _person(caller, "author a protocol version")
    protocol = _protocol_row(session, key, lock=True)  # serializes version numbering of this protocol
    open_version = session.execute(
        text("SELECT version, status FROM protocol_versions WHERE protocol_id = :p AND status IN ('draft', "
             "'in_review') ORDER BY version LIMIT 1"), {"p": protocol.id},
    ).first()
    if open_version is not None:
        raise Conflict(f"version {open_version.version} of '{key}' is still {open_version.status}: "
                       "finish or send it back and edit it rather than opening another")
    latest = int(session.execute(text("SELECT max(version) FROM protocol_versions WHERE protocol_id = :p"),
                                 {"p": protocol.id}).scalar_one())
    if data.definition is None and data.yaml is None:
        source = _version_row(session, key, data.from_version or latest)
        document = source.definition
        definition = ProtocolDefinition.model_validate(document)
    else:
        if data.from_version is not None:
            raise Invalid("give a document or from_version, not both", reasons=["from_version: not with a document"])
        document, definition = read_document(data)
        _same_key(definition, key)
    return _insert_version(session, caller, protocol_id=protocol.id, key=key, version=latest + 1,
                           document=document, definition=definition, reason=data.reason)


def _same_key(definition: ProtocolDefinition, key: str) -> None:
    if definition.key != key:
        raise ProtocolProblems("a version cannot change the protocol key",
                               [Problem(path="key", message=f"must stay '{key}' (a new key is a new protocol)")])


def edit_draft(session: Session, caller: Caller, *, key: str, version: int, data: DraftUpdate) -> VersionRead:
    """Replace a draft's document. Anything but a draft answers 409: changing a reviewed or approved version
    means sending it back (in_review) or starting a new version (approved, retired)."""
    row = _version_row(session, key, version, lock=True)
    if row.status != S.draft:
        hint = ("; send it back to draft first (POST …/return)" if row.status == S.in_review
                else f"; approved content never changes: start a new draft with POST /api/v1/protocols/{key}/versions")
        raise WrongStatus(f"version {version} of '{key}' is {row.status} and cannot be edited{hint}",
                          current=S(row.status), requested=S.draft)
    _only_author(caller, row, "edit")
    document, definition = read_document(data)
    _same_key(definition, key)
    new_hash = content_hash(definition)
    if new_hash == row.content_hash and document == row.definition:
        return _read(row)  # nothing changed: nothing to record
    session.execute(
        text("UPDATE protocol_versions SET definition = CAST(:d AS jsonb), content_hash = :h WHERE id = :id"),
        {"d": json.dumps(document), "h": new_hash, "id": row.id},
    )
    after = _version_row(session, key, version)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="update", entity_type="protocol_version",
                 entity_id=row.id, before={**_state(row), "definition": row.definition},
                 after={**_state(after), "definition": document}, reason=data.reason, context=caller.context)
    return _read(after)


def _only_author(caller: Caller, row: ProtocolVersionRow, doing: str) -> None:
    user = _person(caller, f"{doing} a protocol version")
    if row.author_id != user:
        raise Forbidden(f"only the author of version {row.version} ({row.author_name}) may {doing} it")


def _transition(
    session: Session, caller: Caller, row: ProtocolVersionRow, *, action: str, sets: str, params: dict[str, object],
    reason: str | None,
) -> VersionRead:
    session.execute(text(f"UPDATE protocol_versions SET {sets} WHERE id = :id"), {**params, "id": row.id})
    after = _version_row(session, row.protocol_key, row.version)
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action=action, entity_type="protocol_version",
                 entity_id=row.id, before=_state(row), after=_state(after), reason=reason, context=caller.context)
    return _read(after)


def _check_hash(row: ProtocolVersionRow) -> None:
    """The stored document still hashes to its recorded hash (what is signed is what is stored)."""
    if content_hash(row.definition) != row.content_hash:
        raise Conflict(f"version {row.version} of '{row.protocol_key}' does not match its content hash; "
                       "the record was altered outside Flask Track")


def submit_for_review(session: Session, caller: Caller, *, key: str, version: int) -> VersionRead:
    """Compile the draft; with problems nothing changes (422 with each problem's path); else it is in review
    with its execution plan stored."""
    row = _version_row(session, key, version, lock=True)
    _expect(row, S.draft, S.in_review)
    _only_author(caller, row, "submit")
    _check_hash(row)
    result = compile_protocol(row.definition, row.version)
    if not result.ok or result.plan is None:
        raise ProtocolProblems(
            f"version {version} of '{key}' has {len(result.problems)} problem(s); nothing was submitted",
            result.problems,
        )
    twin = session.execute(
        text("SELECT version FROM protocol_versions WHERE protocol_id = :p AND content_hash = :h "
             "AND status = 'approved' AND id <> :id ORDER BY version LIMIT 1"),
        {"p": row.protocol_id, "h": row.content_hash, "id": row.id},
    ).scalar()
    if twin is not None:
        raise Conflict(f"version {version} has the same content as version {twin}, which is approved already")
    return _transition(
        session, caller, row, action="submit", sets="status = 'in_review', plan = CAST(:plan AS jsonb), "
        "submitted_at = now()", params={"plan": json.dumps(result.plan.model_dump(mode="json"))}, reason=None,
    )


def approve(session: Session, caller: Caller, *, key: str, version: int, signature: SignatureInput,
            limits: LoginLimits) -> VersionRead:
    """Sign the version in review with meaning "approved" (password re-entered), bound to its content hash."""
    row = _version_row(session, key, version, lock=True)
    _expect(row, S.in_review, S.approved)
    if not caller.can(Permission.protocols_approve):
        raise Forbidden(f"your role ({caller.role}) may not approve protocols")
    if caller.user_id is not None and caller.user_id == row.author_id:
        raise SegregationOfDuties(
            f"you authored version {version} of '{key}'; someone else must approve it (segregation of duties)"
        )
    if signature.meaning != Meaning.approved:
        raise Invalid("an approval is signed with the meaning 'approved'", reasons=["meaning: must be 'approved'"])
    _check_hash(row)
    sig = sign(session, caller, signature, entity_type="protocol_version", entity_id=str(row.id), limits=limits,
               content_hash=row.content_hash)
    approved = _transition(
        session, caller, row, action="approve", sets="status = 'approved', approved_at = :t, approved_by = :u, "
        "approval_signature_id = :s", params={"t": sig.signed_at, "u": sig.signer_id, "s": sig.id},
        reason=signature.reason,
    )
    records.form_published(session, caller.org_id, ExecutionPlan.model_validate(row.plan))
    protocol = _protocol_row(session, key, lock=True)
    if protocol.title != approved.title:  # the protocol is known by its newest approved title
        session.execute(text("UPDATE protocols SET title = :t WHERE id = :id"),
                        {"t": approved.title, "id": protocol.id})
        audit.record(session, org_id=caller.org_id, actor=caller.actor, action="update", entity_type="protocol",
                     entity_id=protocol.id, before={"title": protocol.title}, after={"title": approved.title},
                     reason=f"version {version} approved", context=caller.context)
    return approved


def return_to_draft(session: Session, caller: Caller, *, key: str, version: int, reason: str) -> VersionRead:
    """Send a version in review back to draft: a reviewer rejects it (action "reject") or its author withdraws it
    (action "withdraw"). The stored plan is dropped; the next submission compiles again."""
    row = _version_row(session, key, version, lock=True)
    _expect(row, S.in_review, S.draft)
    user = _person(caller, "send a protocol version back")
    if caller.can(Permission.protocols_approve) and user != row.author_id:
        action = "reject"
    elif user == row.author_id:
        action = "withdraw"
    else:
        raise Forbidden(f"only a reviewer or the author of version {version} may send it back to draft")
    return _transition(session, caller, row, action=action,
                       sets="status = 'draft', plan = NULL, submitted_at = NULL", params={}, reason=reason)


def retire(session: Session, caller: Caller, *, key: str, version: int, reason: str) -> VersionRead:
    """Take an approved version out of use (no new runs); its record and signature stay as they are."""
    row = _version_row(session, key, version, lock=True)
    _expect(row, S.approved, S.retired)
    if not caller.can(Permission.protocols_approve):
        raise Forbidden(f"your role ({caller.role}) may not retire protocols")
    return _transition(session, caller, row, action="retire", sets="status = 'retired', retired_at = now()",
                       params={}, reason=reason)
