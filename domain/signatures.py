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
from domain.limits import Input
from domain.roles import Caller


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


def sign(
    session: Session,
    caller: Caller,
    data: SignatureInput,
    *,
    entity_type: str,
    entity_id: str,
    content_hash: str,
) -> Signature:
    """Check the re-entered password and record the signature (plus its audit entry).

    A wrong password raises SignatureRefused (403); the API records every 403 in
    the audit log in its own transaction, so the refusal stays on record even though
    this transaction rolls back.
    """
    if caller.actor.type != "user" or caller.user_id is None:
        raise Forbidden("only a person can sign; API keys cannot")
    row = session.execute(
        text("SELECT u.password_hash, u.display_name FROM users u WHERE u.id = :u"), {"u": caller.user_id}
    ).first()
    if row is None or not secrets.verify_password(row.password_hash, data.password):
        raise SignatureRefused("signature refused: the password is not correct")
    if data.meaning == Meaning.rejected and not (data.reason and data.reason.strip()):
        raise Invalid("a rejection needs a reason", reasons=["reason: required when rejecting"])
    sig = Signature(
        id=uuid.uuid4(), signer_id=caller.user_id, signer_name=row.display_name, meaning=data.meaning,
        reason=data.reason, entity_type=entity_type, entity_id=entity_id, content_hash=content_hash,
        signed_at=dt.datetime.now(dt.UTC),
    )
    session.execute(
        text("INSERT INTO signatures (id, org_id, signer_id, signer_name, meaning, reason, entity_type, entity_id, "
             "content_hash, signed_at) VALUES (:id, :o, :s, :n, :m, :r, :et, :ei, :h, :t)"),
        {"id": sig.id, "o": caller.org_id, "s": sig.signer_id, "n": sig.signer_name, "m": sig.meaning.value,
         "r": sig.reason, "et": entity_type, "ei": entity_id, "h": content_hash, "t": sig.signed_at},
    )
    audit.record(session, org_id=caller.org_id, actor=caller.actor, action="sign", entity_type="signature",
                 entity_id=sig.id, after=sig.model_dump(mode="json"), reason=data.reason, context=caller.context)
    return sig


class SignatureRefused(Forbidden):
    """Wrong password at signing: 403, and the attempt is on record."""
