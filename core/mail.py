"""Sending email: one small interface and an SMTP implementation (standard library smtplib).

Alerts (domain/alerts/service.py) are emailed through a `MailSender`; which one is the deployment's choice
(settings.smtp_host). Tests use a local SMTP catcher, never a real mail service.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from core.config import Settings


class MailSender(Protocol):
    def send(self, to: list[str], subject: str, body: str) -> None:
        """Send one message to `to`; raises on failure."""


@dataclass(frozen=True)
class SmtpSender:
    host: str
    port: int = 25
    sender: str = "flasktrack@localhost"
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0

    def send(self, to: list[str], subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, ", ".join(to), subject
        msg.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)


def sender_from(settings: Settings) -> MailSender | None:
    """The settings' SMTP sender, or None when no mail server is configured (alerts stay in the platform)."""
    if not settings.smtp_host:
        return None
    return SmtpSender(host=settings.smtp_host, port=settings.smtp_port, sender=settings.mail_from,
                      starttls=settings.smtp_starttls, username=settings.smtp_username,
                      password=settings.smtp_password.get_secret_value() if settings.smtp_password else None)
