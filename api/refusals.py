"""Refusals on record, and the one rule for a replayed X-Request-ID.

A request refused with 409 or 422 changed nothing, yet stays in the caller's audit log, in a transaction of its
own that commits while the request fails. 403s and 404s are recorded by api/errors.py for every endpoint.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.deps import in_tx
from domain import audit
from domain.audit import Severity
from domain.errors import Conflict, DomainError, Forbidden
from domain.roles import Caller


def refusal_reason(doing: str, message: str) -> str:
    """`<doing> refused: <why>`, once: domain messages often say it themselves already."""
    return (message if message.startswith(f"{doing} refused") else f"{doing} refused: {message}")[:2000]


def record_refusal(s: Session, caller: Caller, entity_type: str, entity_id: str, doing: str, exc: DomainError) -> None:
    """A refused request that changed nothing stays on record (403s and 404s are recorded by api/errors.py)."""
    audit.record(s, org_id=caller.org_id, actor=caller.actor, action="refuse", entity_type=entity_type,
                 entity_id=entity_id, after={"doing": doing, "status": exc.status, "reasons": exc.reasons},
                 reason=refusal_reason(doing, exc.message), severity=Severity.warning, context=caller.context)


async def refused(s: Session, caller: Caller, entity_type: str, entity_id: str, doing: str, exc: DomainError) -> None:
    """Put the refusal on record, committed now (the caller raises `exc` after)."""
    if not isinstance(exc, Forbidden) and exc.status < 500:
        await in_tx(s, record_refusal, caller, entity_type, entity_id, doing, exc)


def asked_by_caller(first_actor_id: str | None, caller: Caller, about: str) -> None:
    """The rule for every X-Request-ID replay (launch, controls, completions, approvals): an id is one person's
    idempotency key, so a replay by another person neither acts nor tells them the first answer (Conflict,
    audited by the caller). None: an answer recorded before the asker was kept."""
    if first_actor_id is not None and first_actor_id != caller.actor.id:
        raise Conflict(f"X-Request-ID {caller.context.request_id} was already used by someone else for {about}: "
                       "send your request with a new X-Request-ID")
