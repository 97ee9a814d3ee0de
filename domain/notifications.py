"""Telling people about work: one adapter interface, a database-recording implementation today.

Escalations call `Notifier.notify`; what reaches a person (the inbox over the API now, email later) is
the adapter's business. Notifications carry an id derived from what caused them, so a retried
escalation notifies once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.tasks.models import NotificationRead


@dataclass(frozen=True)
class Notification:
    id: uuid.UUID
    org_id: str
    recipient_role: str
    subject: str
    body: str
    run_id: str | None = None
    task_id: str | None = None


class Notifier(Protocol):
    def notify(self, session: Session, notification: Notification) -> None:
        """Deliver (or queue) one notification inside the caller's transaction; once per id."""


class DatabaseNotifier:
    """Records notifications in the `notifications` table, where the inbox reads them."""

    channel = "db"

    def notify(self, session: Session, notification: Notification) -> None:
        n = notification
        session.execute(
            text("INSERT INTO notifications (id, org_id, run_id, task_id, recipient_role, channel, subject, body)"
                 " VALUES (:id, :o, :r, :t, :role, :ch, :s, :b) ON CONFLICT (id) DO NOTHING"),
            {"id": n.id, "o": n.org_id, "r": n.run_id, "t": n.task_id, "role": n.recipient_role, "ch": self.channel,
             "s": n.subject, "b": n.body},
        )


def for_role(session: Session, role: str, *, limit: int = 100) -> list[NotificationRead]:
    """Notifications addressed to a role, newest first."""
    rows = session.execute(
        text("SELECT id, run_id, task_id, recipient_role, channel, subject, body, created_at FROM notifications"
             " WHERE org_id = current_org() AND recipient_role = :r ORDER BY created_at DESC LIMIT :n"),
        {"r": role, "n": limit},
    ).all()
    return [NotificationRead.model_validate(r._asdict()) for r in rows]
