"""Domain errors; the API maps each class to one HTTP status."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


class DomainError(Exception):
    status = 400

    def __init__(self, message: str, *, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = reasons or []


class NotFound(DomainError):
    status = 404


class Forbidden(DomainError):
    status = 403


class Conflict(DomainError):
    status = 409


class Invalid(DomainError):
    status = 422


class Unauthenticated(DomainError):
    status = 401


class RateLimited(DomainError):
    status = 429

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(DomainError):
    status = 503


@contextmanager
def conflict_if_taken(session: Session, message: str) -> Iterator[None]:
    """Run the statements inside in a savepoint: a constraint they break (a taken key or name) is answered
    as Conflict(message), and the transaction goes on."""
    try:
        with session.begin_nested():
            yield
    except IntegrityError as exc:
        raise Conflict(message) from exc
