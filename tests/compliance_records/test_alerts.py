"""Alerts: the watch's scan raises each expiry alert once; people read and acknowledge the alerts addressed to them
(on record); new alerts are emailed through SMTP, caught here by a local SMTP server (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from collections.abc import Iterator
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from activities.events import EventActivities
from core.mail import SmtpSender
from domain.alerts.models import Addressees
from domain.alerts.service import raise_alert
from domain.roles import Role
from tests.registry.support import make
from tests.support import make_org


class Catcher:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Catcher, int]]:
    catcher = Catcher()
    with socket.socket() as probe:  # a free port (aiosmtpd's start checks the port it was given)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(catcher, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield catcher, port
    finally:
        controller.stop()


def _h(org, role: Role) -> dict[str, str]:
    return {**org.headers(role), "X-Request-ID": uuid.uuid4().hex}


def test_expiry_alerts_are_raised_once_acknowledged_on_record_and_emailed(client, owner, platform, smtp):
    catcher, port = smtp
    org = make_org(owner, client)
    soon = (dt.date.today() + dt.timedelta(days=10)).isoformat()
    ms = make(client, org, "ingredient", "MS basal salts")
    lot = make(client, org, "lot", "MS lot 2401", parent_id=ms["id"], attributes={"lot_number": "2401",
                                                                                    "expiry_date": soon})
    make(client, org, "lot", "MS lot 2402", parent_id=ms["id"],
         attributes={"lot_number": "2402", "expiry_date": (dt.date.today() + dt.timedelta(days=400)).isoformat()})
    hood = make(client, org, "equipment", "Hood 1", attributes={"calibration_due": "2020-01-01"})

    scanner = EventActivities(platform.sessions, mail=SmtpSender(host="127.0.0.1", port=port), horizon_days=30)
    raised, _ = scanner.scan_org(str(org.id))
    assert raised == 2
    assert scanner.scan_org(str(org.id))[0] == 0  # once each

    alerts = client.get("/api/v1/alerts", headers=_h(org, Role.lab_manager)).json()["items"]
    by_kind = {a["kind"]: a for a in alerts}
    assert set(by_kind) == {"lot_expiry", "calibration_due"}
    assert by_kind["lot_expiry"]["subject_id"] == lot["id"] and soon in by_kind["lot_expiry"]["title"]
    calibration = by_kind["calibration_due"]
    assert calibration["subject_id"] == hood["id"] and calibration["severity"] == "critical"
    # Addressed to lab managers: a technician sees none of them, and cannot acknowledge them (404).
    assert client.get("/api/v1/alerts", headers=_h(org, Role.technician)).json()["items"] == []
    alert = by_kind["lot_expiry"]
    assert client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={},
                       headers=_h(org, Role.technician)).status_code == 404

    r = client.post(f"/api/v1/alerts/{alert['id']}/read", headers=_h(org, Role.lab_manager))
    assert r.status_code == 200 and r.json()["read_at"] and not r.json()["acknowledged_at"]
    r = client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={"note": "lot moved to the front"},
                    headers=_h(org, Role.lab_manager))
    assert r.status_code == 200 and r.json()["acknowledged_by_display"] == f"lab_manager of {org.slug}"
    again = client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={}, headers=_h(org, Role.lab_manager))
    assert again.json()["acknowledged_at"] == r.json()["acknowledged_at"]
    unacked = client.get("/api/v1/alerts", params={"unacknowledged": "true"}, headers=_h(org, Role.lab_manager))
    assert [a["kind"] for a in unacked.json()["items"]] == ["calibration_due"]
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org.id})
        trail = s.execute(text("SELECT actor_id, action, reason FROM audit_log WHERE org_id = :o AND entity_type ="
                               " 'alert' AND entity_id = :a ORDER BY seq"), {"o": org.id, "a": alert["id"]}).all()
    lab_manager = str(org.users[Role.lab_manager][0])
    assert [(t.actor_id, t.action) for t in trail] == [("flasktrack", "raise"), (lab_manager, "read"),
                                                       (lab_manager, "acknowledge")]
    assert trail[2].reason == "lot moved to the front"

    # Each alert was emailed once, to the organization's lab manager.
    assert len(catcher.messages) == 2
    to, content = catcher.messages[0]
    assert to == [org.users[Role.lab_manager][1]]
    assert " ".join(message_from_bytes(content)["Subject"].split()).startswith("[Flask Track] ")
    scanner.scan_org(str(org.id))
    assert len(catcher.messages) == 2


def test_an_alert_addressed_to_a_person_reaches_only_them(client, owner, platform, org_a):
    tech_id = org_a.users[Role.technician][0]
    with platform.sessions.begin(org_a.id) as s:
        ident = raise_alert(s, org_a.id, "authorization_expiry", ("authorization", "IBC-7"),
                            Addressees(users=(tech_id,)), title="IBC approval IBC-7 expires in 14 days")
        assert raise_alert(s, org_a.id, "authorization_expiry", ("authorization", "IBC-7"),
                           Addressees(users=(tech_id,)), title="again") is None
    assert client.get(f"/api/v1/alerts/{ident}", headers=_h(org_a, Role.technician)).status_code == 200
    assert client.get(f"/api/v1/alerts/{ident}", headers=_h(org_a, Role.scientist)).status_code == 404


def test_alert_endpoints_are_404_across_organizations(client, platform, org_a, org_b):
    with platform.sessions.begin(org_a.id) as s:
        ident = raise_alert(s, org_a.id, "other", ("note", uuid.uuid4().hex), Addressees(roles=("admin",)),
                            title="a note for admins")
    assert client.get(f"/api/v1/alerts/{ident}", headers=_h(org_a, Role.admin)).status_code == 200
    for method, path in (("GET", ""), ("POST", "/read"), ("POST", "/acknowledge")):
        r = client.request(method, f"/api/v1/alerts/{ident}{path}", json={} if path.endswith("acknowledge") else None,
                           headers=_h(org_b, Role.admin))
        assert r.status_code == 404, (method, path)
