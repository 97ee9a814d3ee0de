"""Electronic signatures (21 CFR Part 11 §11.50, §11.70, §11.200).

A signing re-enters the password (the second component beside the session), names
its meaning, and is bound to the SHA-256 of exactly the content signed. Only people
sign: an API key cannot.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.errors import Forbidden, Invalid
from domain.identity import secrets
from domain.identity import service as identity
from domain.limits import Input
from domain.roles import Actor, Caller, RequestContext


class Meaning(StrEnum):
    approved = "approved"
    reviewed = "reviewed"
    verified = "verified"
    responsibility = "responsibility"
    authored = "authored"
    rejected = "rejected"


class SignatureInput(Input):
    """What a person submits to sign."""

    password: str = Field(min_length=1, max_length=1024, description="re-entered to sign")
    meaning: Meaning
    reason: str | None = Field(default=None, max_length=2000)


class Signature(BaseModel):
    id: uuid.UUID
    signer_id: uuid.UUID
    signer_name: str
    meaning: Meaning
    reason: str | None
    entity_type: str
    entity_id: str
    content_hash: str
    signed_at: dt.datetime


def verify(session: Session, caller: Caller, data: SignatureInput, *, entity_type: str, entity_id: str,
           content_hash: str, limits: identity.LoginLimits, signature_id: uuid.UUID | None = None) -> Signature:
    """Check the re-entered password and the rules of a signing; the signature to record, not recorded yet.

    A wrong password raises SignatureRefused (403); the API records every 403 in the audit log in its own
    transaction, and counts it towards the account's lockout like a failed login (`limits`). Nothing is
    written here: the signature is recorded with what it signs (`record`), in the
    same transaction, so a decision refused afterwards leaves no signature behind.
    """
    if caller.actor.type != "user" or caller.user_id is None:
        raise Forbidden("only a person can sign; API keys cannot")
    row = session.execute(
        text("SELECT u.password_hash, u.display_name, u.email FROM users u WHERE u.id = :u"), {"u": caller.user_id}
    ).first()
    if row is not None:  # a locked account signs no more than it logs in (429, on record once per lockout)
        identity.check_throttle(session, row.email, None, max_fail=limits.max_fail,
                                max_fail_addr=limits.max_fail_addr, window=limits.window)
    if row is None or not secrets.verify_password(row.password_hash, data.password):
        raise SignatureRefused("signature refused: the password is not correct")
    if data.meaning == Meaning.rejected and not (data.reason and data.reason.strip()):
        raise Invalid("a rejection needs a reason", reasons=["reason: required when rejecting"])
    return Signature(
        id=signature_id or uuid.uuid4(), signer_id=caller.user_id, signer_name=row.display_name, meaning=data.meaning,
        reason=data.reason, entity_type=entity_type, entity_id=entity_id, content_hash=content_hash,
        signed_at=dt.datetime.now(dt.UTC),
    )


def record(session: Session, sig: Signature, *, org_id: uuid.UUID | str, actor: Actor,
           context: RequestContext) -> Signature:
    """Record a verified signature and its audit entry, in the transaction of what it signs."""
    session.execute(
        text("INSERT INTO signatures (id, org_id, signer_id, signer_name, meaning, reason, entity_type, entity_id, "
             "content_hash, signed_at) VALUES (:id, :o, :s, :n, :m, :r, :et, :ei, :h, :t)"),
        {"id": sig.id, "o": str(org_id), "s": sig.signer_id, "n": sig.signer_name, "m": sig.meaning.value,
         "r": sig.reason, "et": sig.entity_type, "ei": sig.entity_id, "h": sig.content_hash, "t": sig.signed_at},
    )
    audit.record(session, org_id=org_id, actor=actor, action="sign", entity_type="signature",
                 entity_id=sig.id, after=sig.model_dump(mode="json"), reason=sig.reason, context=context)
    return sig


def sign(
    session: Session,
    caller: Caller,
    data: SignatureInput,
    *,
    entity_type: str,
    entity_id: str,
    content_hash: str,
    limits: identity.LoginLimits,
) -> Signature:
    """Verify and record a signature in the caller's transaction (with what it signs)."""
    sig = verify(session, caller, data, entity_type=entity_type, entity_id=entity_id, content_hash=content_hash,
                 limits=limits)
    return record(session, sig, org_id=caller.org_id, actor=caller.actor, context=caller.context)


class SignatureRefused(Forbidden):
    """Wrong password at signing: 403, and the attempt is on record."""
