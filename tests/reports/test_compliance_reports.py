"""The compliance system reports on records made through the real services (events and their CAPA, authorizations,
training records, audits and findings, refused completions), drained into the lake; figures worked by hand from
the dates the services recorded and the report's as-of date."""

from __future__ import annotations

import datetime as dt
import uuid

from domain.compliance import authorizations, qualifications
from domain.compliance.models import AuthorizationCreate, QualificationCreate
from domain.events import service as events
from domain.events.messages import ActionSpec, EventRef, EventStep
from domain.events.models import EventCreate
from domain.inspections import service as inspections
from domain.inspections.models import AuditCreate, FindingCreate
from domain.roles import RequestContext, Role
from domain.runs.messages import ActorRef, RunRef
from domain.tasks.actions import refusal
from tests.reports.support import drain, new_report
from tests.runs.support import caller
from tests.samples.material import seal
from tests.support import make_org


def _rows(result: dict) -> list[dict]:
    return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]


def test_the_compliance_reports_on_records_made_by_the_services(client, owner, platform) -> None:
    org, other = make_org(owner, client), make_org(owner, client)

    def who(role: Role):  # a fresh X-Request-ID each time: every create is a new record
        return caller(org, role, uuid.uuid4().hex)

    manager, auditor = who(Role.lab_manager), who(Role.auditor)
    tech_id, sci_id = org.users[Role.technician][0], org.users[Role.scientist][0]
    now = dt.datetime.now(dt.UTC)
    with platform.sessions.begin(org.id) as s:
        autoclave, _ = events.create(s, who(Role.technician), EventCreate(
            kind="deviation", severity="medium", title="Autoclave cycle short", description="15 min, not 20."))
        incubator, _ = events.create(s, who(Role.technician), EventCreate(
            kind="equipment_failure", severity="high", title="Incubator at 31 °C", description="Alarm overnight."))
    ref = EventRef(org_id=str(org.id), event_id=str(incubator.id))
    with platform.sessions.begin(org.id) as s:
        events.apply(s, EventStep(event=ref, action="investigate", actor=ActorRef.of(manager), key="i"))
        events.apply(s, EventStep(event=ref, action="root_cause", actor=ActorRef.of(manager), key="r",
                                  root_cause="thermostat relay", actions=[
                                      ActionSpec(kind="corrective", description="replace the relay",
                                                 owner_id=str(tech_id), due_at=now + dt.timedelta(days=1)),
                                      ActionSpec(kind="preventive", description="monthly relay check",
                                                 owner_id=str(sci_id), due_at=now + dt.timedelta(days=10))]))
        for title, days in (("IBC-7 transgenic tobacco", 20), ("IBC-9 Agrobacterium BSL-2", 200)):
            authorizations.create(s, manager, AuthorizationCreate(
                authorization_type="IBC approval", title=title, issuer="IBC", valid_from=now,
                valid_until=now + dt.timedelta(days=days)))
        today = now.date()
        # a renewal supersedes the technician's older record; the scientist's lasts a year
        for user, completed, expires in ((tech_id, today - dt.timedelta(days=400), today - dt.timedelta(days=35)),
                                         (tech_id, today - dt.timedelta(days=1), today + dt.timedelta(days=12)),
                                         (sci_id, today, today + dt.timedelta(days=365))):
            qualifications.record(s, manager, QualificationCreate(user_id=user, course="biosafety_bsl2",
                                                                  completed_on=completed, expires_on=expires))
        nih, _ = inspections.create(s, auditor, AuditCreate(title="rDNA work", framework="NIH Guidelines",
                                                            period_start=dt.date(2026, 10, 1),
                                                            period_end=dt.date(2026, 10, 31)))
        bmbl, _ = inspections.create(s, who(Role.auditor), AuditCreate(
            title="Biosafety", framework="BMBL BSL-2", period_start=dt.date(2026, 10, 1),
            period_end=dt.date(2026, 10, 31)))
        for audit, severity, title, event in ((nih, "major", "rDNA waste not logged", None),
                                              (nih, "minor", "Label faded", None),
                                              (nih, "major", "Checklist skipped twice", autoclave.id),
                                              (bmbl, "major", "Incubator log gaps", incubator.id)):
            inspections.add_finding(s, auditor, audit.id, FindingCreate(severity=severity, title=title,
                                                                        description="seen on site", event_id=event))
        # two completions refused by the gate, as it records them: one item twice, the protocol's own once
        run = RunRef(org_id=str(org.id), run_id=str(uuid.uuid4()), protocol_key="sub", protocol_version=1)
        tech = ActorRef.of(who(Role.technician))
        for invalid in (["checklist.compliance_rdna_waste: not confirmed", "plates: required"],
                        ["checklist.compliance_rdna_waste: not confirmed", "checklist.hood_clean: not confirmed"]):
            refusal(s, run, None, step_key="transfer", iteration=0, actor=tech, request=RequestContext(),
                    forbidden=[], conflicts=[], invalid=invalid, doing="completion")
    with platform.sessions.begin(other.id) as s:  # another organization's records stay out of org's reports
        events.create(s, caller(other, Role.technician, uuid.uuid4().hex), EventCreate(
            kind="deviation", severity="low", title="theirs", description="d"))
    seal(owner, org.id)
    drain(owner, platform.settings.resolved_lake_uri)

    def execute(key: str, parameters: dict | None = None, role: Role = Role.lab_manager) -> list[dict]:
        report = new_report(client, org, role, key, parameters)
        r = client.post(f"/api/v1/reports/{report['id']}/execute", headers=org.headers(role))
        assert r.status_code == 200, (key, r.text)
        return _rows(r.json())

    # By hand: both events were raised on `raised`; as of 5 days later they are 5 days old, the newer first by code.
    raised = incubator.created_at.astimezone(dt.UTC).date()
    as_of = (raised + dt.timedelta(days=5)).isoformat()
    open_events = execute("compliance-open-events", {"as_of": as_of})
    assert [(r["code"], r["kind"], r["status"], r["age_days"], r["age"]) for r in open_events] == [
        (autoclave.code, "deviation", "open", 5, "0-7 days"),
        (incubator.code, "equipment_failure", "capa", 5, "0-7 days")]
    assert [r["code"] for r in execute("compliance-open-events", {"as_of": as_of, "kind": "deviation"})] == [
        autoclave.code]

    # The relay was due the day after `now`: 5 days after `raised` it is 4 days overdue; the check is not yet due.
    due = (now + dt.timedelta(days=1)).date()
    capa = execute("compliance-capa-ageing", {"as_of": (due + dt.timedelta(days=4)).isoformat()})
    assert [(r["event_code"], r["kind"], r["owner"], r["days_overdue"], r["state"]) for r in capa] == [
        (incubator.code, "corrective", f"technician of {org.slug}", 4, "overdue"),
        (incubator.code, "preventive", f"scientist of {org.slug}", 0, "not yet due")]

    # Within 90 days of today: IBC-7 (20 days left); IBC-9 (200) is outside the window until 150 days from now.
    auth = execute("compliance-authorization-expiry", {"as_of": today.isoformat()})
    assert [(r["title"], r["status"], r["days_left"], r["state"]) for r in auth] == [
        ("IBC-7 transgenic tobacco", "pending", 20, "within 30 days")]
    later = execute("compliance-authorization-expiry", {"as_of": (today + dt.timedelta(days=150)).isoformat()})
    assert [(r["title"], r["days_left"], r["state"]) for r in later] == [
        ("IBC-7 transgenic tobacco", -130, "expired"), ("IBC-9 Agrobacterium BSL-2", 50, "within the window")]

    # The technician's renewal (12 days left) stands, not the lapsed record; the scientist's year is outside 90 days.
    quals = execute("compliance-qualification-expiry", {"as_of": today.isoformat()})
    assert [(r["member"], r["course"], r["days_left"], r["state"]) for r in quals] == [
        (str(tech_id), "biosafety_bsl2", 12, "within 30 days")]
    assert len(execute("compliance-qualification-expiry", {"as_of": today.isoformat(), "within_days": 400})) == 2

    refusals = execute("compliance-checklist-refusals", role=Role.auditor)  # the audit log: auditors, not managers
    assert [(r["item"], r["from_framework"], r["person"], r["refusals"]) for r in refusals] == [
        ("compliance_rdna_waste", True, f"technician of {org.slug}", 2),
        ("hood_clean", False, f"technician of {org.slug}", 1)]

    findings = execute("compliance-audit-findings")
    assert [(r["framework"], r["severity"], r["findings"], r["audits"], r["with_corrective_event"])
            for r in findings] == [("BMBL BSL-2", "major", 1, 1, 1), ("NIH Guidelines", "major", 2, 1, 1),
                                   ("NIH Guidelines", "minor", 1, 1, 0)]


def test_each_compliance_report_ships_with_a_chart(client, owner) -> None:
    org = make_org(owner, client)
    r = client.get("/api/v1/reports/definitions", headers=org.headers(Role.lab_manager))
    assert r.status_code == 200, r.text
    shipped = {d["key"]: d for d in r.json() if d["key"].startswith("compliance-")}
    assert sorted(shipped) == ["compliance-audit-findings", "compliance-authorization-expiry",
                               "compliance-capa-ageing", "compliance-checklist-refusals", "compliance-open-events",
                               "compliance-qualification-expiry"]
    for d in shipped.values():
        assert d["chart"]["mark"] == "bar" and d["chart"]["encoding"]["x"] and d["chart"]["encoding"]["y"]
