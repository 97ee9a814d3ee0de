"""The demo organization's compliance story (issue 10 §3): a contamination found at a late subculture check raises a
contamination event, which is investigated, worked through corrective and preventive actions and closed with the
lab manager's signature; and last month's rDNA work has a formal audit, finalized by the auditor and immutable.

Everything goes through the same domain services the API and the event workflow's activities use (audit entries,
signatures, lake rows and all). The event's transitions are the records its workflow's activity makes
(`domain/events/service.apply`): seeded closed, its workflow (started by the worker's watch) finds it closed and
ends at once. Seeded once: a second start adds nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace

from sqlalchemy import text

from core.db import TenantSessions
from domain.events import service as events
from domain.events.messages import ActionSpec, EventRef, EventStep, SignedClosure
from domain.identity.service import LoginLimits
from domain.inspections import service as inspections
from domain.inspections.models import AuditCreate, AuditFinalize, FindingCreate, FindingSeverity, Outcome
from domain.roles import Caller, RequestContext
from domain.runs.messages import ActorRef
from domain.samples import service as samples
from domain.samples.models import SampleCreate, StatusChange
from domain.signatures import Meaning, SignatureInput, verify

CONTAMINATED_PLATE = "SR1 callus subculture plate, week 47"
AUDIT_TITLE = "rDNA work (NIH Guidelines), last month"


def _step(event_id: uuid.UUID, caller: Caller, action: str, key: str, **fields: object) -> EventStep:
    return EventStep(event=EventRef(org_id=str(caller.org_id), event_id=str(event_id)), action=action,  # type: ignore[arg-type]
                     actor=ActorRef.of(caller), key=f"demo:{key}", request=RequestContext(request_id=f"demo:{key}"),
                     **fields)  # type: ignore[arg-type]


def seed_demo_events(owner: TenantSessions, manager: Caller, technician: Caller, auditor: Caller,
                     password: str) -> bool:
    """Seed the story unless the organization has it already (or the schema lacks it). True when created."""
    org = manager.org_id
    with owner.begin(org) as s:
        if s.execute(text("SELECT to_regclass('compliance_events')")).scalar() is None:
            return False
        if s.execute(text("SELECT 1 FROM samples WHERE org_id = :o AND name = :n"),
                     {"o": org, "n": CONTAMINATED_PLATE}).first():
            return False
    tech = technician
    with owner.begin(org) as s:  # the technician finds fungal colonies at a subculture check done two days late
        plate, _ = samples.create(s, _ctx(tech, "plate"), SampleCreate(
            sample_type="plate", name=CONTAMINATED_PLATE, attributes={"medium": "MS 2,4-D callus induction"},
            reason="demo lab"))
        samples.change_status(s, _ctx(tech, "plate:in_use"), plate.id,
                              StatusChange(status="in_use", reason="subcultured", revision=plate.revision))
        row = samples.row_of(s, plate.id)
        samples.change_status(s, _ctx(tech, "plate:contaminated"), plate.id, StatusChange(
            status="contaminated", revision=row.revision,
            reason="fungal colonies at the week-47 subculture check, done two days after it was due"))
        event_id = s.execute(text("SELECT event_id FROM compliance_event_links WHERE target_type = 'sample'"
                                  " AND target_id = :p"), {"p": plate.id}).scalar_one()
    now = dt.datetime.now(dt.UTC)
    with owner.begin(org) as s:  # the lab manager investigates and sets the actions
        events.apply(s, _step(event_id, manager, "investigate", "investigate", reason="plate photographed, isolated"))
        events.apply(s, _step(event_id, manager, "root_cause", "root-cause",
                              root_cause="the hood's pre-filter was overdue for change and the subculture ran late: "
                                         "spores settled on plates left open longer than usual",
                              actions=[ActionSpec(kind="corrective", description="replace the LF-2 pre-filter and "
                                                  "disinfect the hood", owner_id=str(tech.user_id),
                                                  due_at=now + dt.timedelta(days=2)),
                                       ActionSpec(kind="preventive", description="weekly pre-filter check on the "
                                                  "hood checklist", owner_id=str(tech.user_id),
                                                  due_at=now + dt.timedelta(days=7))]))
        actions = events.get(s, event_id).actions
    with owner.begin(org) as s:  # the technician does them
        for a in actions:
            events.apply(s, _step(event_id, tech, "complete_action", f"done:{a.kind}", action_id=str(a.id),
                                  note="done, photo on the hood log"))
    with owner.begin(org) as s:  # effective after three clean weeks; closed with the manager's signature
        events.apply(s, _step(event_id, manager, "effectiveness", "effective", effective=True,
                              note="three weekly subcultures since, no contamination"))
        digest = events.check_close(s, manager, event_id)
        sig = verify(s, manager, SignatureInput(password=password, meaning=Meaning.approved,
                                                reason="CAPA effective"),
                     entity_type="compliance_event", entity_id=str(event_id), content_hash=digest,
                     limits=LoginLimits())
        events.apply(s, _step(event_id, manager, "close", "close", reason="CAPA effective", signature=SignedClosure(
            signature_id=str(sig.id), signer_id=str(sig.signer_id), signer_name=sig.signer_name,
            meaning=sig.meaning.value, reason=sig.reason, content_hash=digest, signed_at=sig.signed_at)))
    today = dt.date.today()
    last_month_end = today.replace(day=1) - dt.timedelta(days=1)
    with owner.begin(org) as s:  # the auditor audits last month's rDNA work and signs the outcome
        audit, _ = inspections.create(s, _ctx(auditor, "audit"), AuditCreate(
            title=AUDIT_TITLE, framework="NIH Guidelines", period_start=last_month_end.replace(day=1),
            period_end=last_month_end, labs=["Tissue culture room 2.14"]))
        inspections.add_finding(s, _ctx(auditor, "finding"), audit.id, FindingCreate(
            severity=FindingSeverity.observation, title="Hood pre-filter change not on the hood checklist",
            description="Corrected through the contamination event's preventive action.", event_id=event_id))
        inspections.finalize(s, _ctx(auditor, "finalize"), audit.id, AuditFinalize(
            outcome=Outcome.passed, summary="rDNA work followed the NIH Guidelines; one observation, corrected.",
            password=password), LoginLimits())
    return True


def _ctx(caller: Caller, key: str) -> Caller:
    return replace(caller, context=RequestContext(request_id=f"demo-events:{key}"))
