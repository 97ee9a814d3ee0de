"""Events, CAPA actions, audits, findings and alerts reach the lake through the outbox: an analyst follows an event
to its closure and an audit to its outcome over Flight SQL, and sees only their organization's."""

from __future__ import annotations

import datetime as dt
import uuid

import adbc_driver_flightsql.dbapi as flight_sql
from sqlalchemy import text

from domain.alerts.models import Addressees
from domain.alerts.service import raise_alert
from domain.events import service as events
from domain.events.messages import ActionSpec, EventRef, EventStep
from domain.events.models import EventCreate
from domain.inspections import service as inspections
from domain.inspections.models import AuditCreate, FindingCreate
from domain.roles import Role
from domain.runs.messages import ActorRef
from lake.sink import Sink, SinkSettings
from lake.writer import Lake
from tests.runs.support import caller
from tests.support import PASSWORD, make_org


def test_an_analyst_follows_events_audits_and_alerts_in_the_lake(client, owner, platform, analyst_lake) -> None:
    lake_dir, uri = analyst_lake
    org, other = make_org(owner, client), make_org(owner, client)
    tech, manager, auditor = caller(org, Role.technician), caller(org, Role.lab_manager), caller(org, Role.auditor)
    with platform.sessions.begin(org.id) as s:
        event, _ = events.create(s, tech, EventCreate(kind="equipment_failure", severity="high",
                                                      title="Incubator at 31 °C", description="Alarm overnight."))
    ref = EventRef(org_id=str(org.id), event_id=str(event.id))
    with platform.sessions.begin(org.id) as s:
        events.apply(s, EventStep(event=ref, action="investigate", actor=ActorRef.of(manager), key="i"))
        events.apply(s, EventStep(event=ref, action="root_cause", actor=ActorRef.of(manager), key="r",
                                  root_cause="thermostat relay", actions=[ActionSpec(
                                      kind="corrective", description="replace the relay", owner_id=str(tech.user_id),
                                      due_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))]))
        audit, _ = inspections.create(s, auditor, AuditCreate(title="Q4", framework="BMBL BSL-2",
                                                              period_start=dt.date(2026, 10, 1),
                                                              period_end=dt.date(2026, 12, 31)))
        inspections.add_finding(s, auditor, audit.id, FindingCreate(severity="major", title="Incubator log gaps",
                                                                    description="d", event_id=event.id))
        raise_alert(s, org.id, "other", ("note", uuid.uuid4().hex), Addressees(roles=("analyst",)), title="hello")
    with platform.sessions.begin(other.id) as s:
        events.create(s, caller(other, Role.technician), EventCreate(kind="incident", severity="low", title="theirs",
                                                                     description="d"))

    Sink(owner.engine, Lake(str(lake_dir)), SinkSettings()).drain()
    with owner.begin(None) as s:
        assert s.execute(text("SELECT count(*) FROM outbox WHERE org_id = :o"), {"o": org.id}).scalar_one() == 0

    with flight_sql.connect(uri, db_kwargs={"username": org.users[Role.analyst][1], "password": PASSWORD}) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT code, status, root_cause, revision FROM compliance_events_current")
        assert cur.fetchall() == [(event.code, "capa", "thermostat relay", 3)]
        cur.execute("SELECT status FROM compliance_events ORDER BY revision")
        assert [r[0] for r in cur.fetchall()] == ["open", "investigating", "capa"]
        cur.execute("SELECT event_id, kind, status, owner_display FROM capa_actions_current")
        assert cur.fetchall() == [(str(event.id), "corrective", "open", f"technician of {org.slug}")]
        cur.execute("SELECT a.code, a.framework, a.period_end, f.title, f.event_id FROM audits_current a"
                    " JOIN audit_findings f ON f.audit_id = a.audit_id")
        assert cur.fetchall() == [(audit.code, "BMBL BSL-2", dt.date(2026, 12, 31), "Incubator log gaps",
                                   str(event.id))]
        cur.execute("SELECT kind, title FROM alerts_current ORDER BY title")
        assert ("other", "hello") in cur.fetchall()
