"""Writing audit entries, inside the caller's own transaction.

The entry goes to `audit_pending` in the same transaction as the change it
describes: no change without its entry, no entry without its change. The
database's `audit_seal()` later links it into the org's chain (gapless seq,
hashes); writers never contend for the chain head.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.audit.chain import DERIVED_COLUMNS, derived_from_body
from domain.canonical import canonical_bytes, format_ts
from domain.roles import Actor, Caller, RequestContext

BODY_VERSION = 1


class Severity(StrEnum):
    info = "info"
    notice = "notice"
    warning = "warning"
    critical = "critical"


_INSERT = text(
    """INSERT INTO audit_pending (org_id, body, occurred_at, actor_type, actor_id, actor_display, action,
       entity_type, entity_id, severity, reason, request_id, api_key_id)
       VALUES (:org_id, :body, :occurred_at, :actor_type, :actor_id, :actor_display, :action,
       :entity_type, :entity_id, :severity, :reason, :request_id, :api_key_id)"""
)


def entry_body(
    *,
    org_id: uuid.UUID | str,
    occurred_at: dt.datetime,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: str,
    before: object = None,
    after: object = None,
    reason: str | None = None,
    severity: Severity = Severity.info,
    context: RequestContext | None = None,
) -> dict[str, Any]:
    """The hashed content of one entry: every field, including the org."""
    ctx = context or RequestContext()
    # uuids in their canonical lower-case form: the columns (uuid type) read back that way, and the
    # verifier compares the body with them
    api_key_id = str(uuid.UUID(str(ctx.api_key_id))) if ctx.api_key_id is not None else None
    return {
        "v": BODY_VERSION,
        "org_id": str(uuid.UUID(str(org_id))),
        "occurred_at": format_ts(occurred_at),
        "actor": {"type": actor.type, "id": actor.id, "display": actor.display},
        "action": action,
        "entity": {"type": entity_type, "id": str(entity_id)},
        "before": before,
        "after": after,
        "reason": reason,
        "severity": str(severity),
        "context": {
            "request_id": ctx.request_id,
            "client_address": ctx.client_address,
            "user_agent": ctx.user_agent,
            "api_key_id": api_key_id,
        },
    }


def entry_params(body: dict[str, Any]) -> dict[str, Any]:
    """Insert parameters: the canonical bytes plus the query columns derived from them, by the same
    function the verifier checks the stored columns with."""
    return {
        "org_id": body["org_id"],
        "body": canonical_bytes(body),
        **dict(zip(DERIVED_COLUMNS, derived_from_body(body), strict=True)),
    }


def record(
    session: Session,
    *,
    org_id: uuid.UUID | str,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: str | uuid.UUID,
    before: object = None,
    after: object = None,
    reason: str | None = None,
    severity: Severity = Severity.info,
    context: RequestContext | None = None,
    occurred_at: dt.datetime | None = None,
) -> None:
    """Append one audit entry in `session`'s transaction."""
    body = entry_body(
        org_id=org_id,
        occurred_at=occurred_at or dt.datetime.now(dt.UTC),
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        before=before,
        after=after,
        reason=reason,
        severity=severity,
        context=context,
    )
    session.execute(_INSERT, entry_params(body))


def record_denial(session: Session, caller: Caller, endpoint: str, reason: str, severity: Severity) -> None:
    """A denied action on record in the caller's organization: action `deny` on the endpoint (`METHOD /path`), the
    one shape the API and the web pages both write."""
    record(session, org_id=caller.org_id, actor=caller.actor, action="deny", entity_type="endpoint",
           entity_id=endpoint, reason=reason, severity=severity, context=caller.context)
