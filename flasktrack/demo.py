"""The demo organization `make run` seeds on first start: one user per role, and the example protocols
authored by the demo scientist and approved (signed) by the demo lab manager."""

from __future__ import annotations

import structlog
from sqlalchemy import text

from core.db import TenantSessions
from domain.errors import DomainError
from domain.identity import service as identity
from domain.identity.models import MemberCreate
from domain.identity.service import LoginLimits
from domain.protocols import service as protocols
from domain.protocols.loader import example_protocols
from domain.protocols.models import ProtocolCreate
from domain.roles import SYSTEM_ACTOR, Actor, Caller, RequestContext, Role
from domain.signatures import Meaning, SignatureInput
from flasktrack.demo_events import seed_demo_events
from flasktrack.demo_lab import seed_demo_compliance, seed_demo_lab

log = structlog.get_logger("flasktrack.demo")

DEMO_ORG = "demo"
DEMO_PASSWORD = "flasktrack-demo"  # local demo only; printed by `flasktrack up`

DEMO_USERS: list[tuple[Role, str, str]] = [
    (Role.owner, "owner@demo.example.org", "Olivia Owner"),
    (Role.admin, "admin@demo.example.org", "Adam Admin"),
    (Role.lab_manager, "manager@demo.example.org", "Maria Manager"),
    (Role.scientist, "scientist@demo.example.org", "Sam Scientist"),
    (Role.technician, "tech@demo.example.org", "Tariq Technician"),
    (Role.auditor, "auditor@demo.example.org", "Aiko Auditor"),
    (Role.analyst, "analyst@demo.example.org", "Ana Analyst"),
]


def seed_demo(owner: TenantSessions) -> bool:
    """Create the demo org and its users unless it exists, then any example protocol it lacks.
    True when the org was created now."""
    with owner.begin(None) as s:
        created = s.execute(text("SELECT 1 FROM organizations WHERE slug = :s"), {"s": DEMO_ORG}).first() is None
        if created:
            org = identity.create_org(s, slug=DEMO_ORG, name="Demo Plant & Fungal Lab")
            s.execute(text("SELECT set_config('flasktrack.org_id', :o, true)"), {"o": str(org.id)})
            for role, email, name in DEMO_USERS:
                identity.add_member(s, org_id=org.id, actor=SYSTEM_ACTOR, context=RequestContext(), data=MemberCreate(
                    email=email, display_name=name, password=DEMO_PASSWORD, role=role))
    seed_demo_protocols(owner)
    manager, technician = _demo_caller(owner, Role.lab_manager), _demo_caller(owner, Role.technician)
    seed_demo_lab(owner, manager, technician)
    seed_demo_compliance(owner, manager, _demo_caller(owner, Role.scientist), technician)
    seed_demo_events(owner, manager, technician, _demo_caller(owner, Role.auditor), DEMO_PASSWORD)
    return created


def _demo_caller(owner: TenantSessions, role: Role) -> Caller:
    email = next(email for r, email, _ in DEMO_USERS if r == role)
    with owner.begin(None) as s:
        row = s.execute(
            text("SELECT o.id AS org_id, u.id AS user_id, u.display_name FROM organizations o "
                 "JOIN memberships m ON m.org_id = o.id JOIN users u ON u.id = m.user_id "
                 "WHERE o.slug = :o AND lower(u.email) = lower(:e)"),
            {"o": DEMO_ORG, "e": email},
        ).one()
    return Caller(org_id=row.org_id, org_slug=DEMO_ORG, role=role,
                  actor=Actor("user", str(row.user_id), row.display_name), user_id=row.user_id)


def seed_demo_protocols(owner: TenantSessions) -> list[str]:
    """Each example protocol the demo org does not have yet: created and submitted by the demo scientist, approved
    with a real signature by the demo lab manager, through the protocol service. Returns the keys created now."""
    scientist = _demo_caller(owner, Role.scientist)
    manager = _demo_caller(owner, Role.lab_manager)
    created: list[str] = []
    for key, document in example_protocols().items():
        try:
            with owner.begin(scientist.org_id) as s:
                if s.execute(text("SELECT 1 FROM protocols WHERE org_id = :o AND key = :k"),
                             {"o": scientist.org_id, "k": key}).first():
                    continue
                draft = protocols.create_protocol(s, scientist, data=ProtocolCreate(definition=document))
                protocols.submit_for_review(s, scientist, key=key, version=draft.version)
                signature = SignatureInput(password=DEMO_PASSWORD, meaning=Meaning.approved,
                                           reason="demo protocol, shipped with Flask Track")
                protocols.approve(s, manager, key=key, version=draft.version, signature=signature,
                                  limits=LoginLimits())
        except DomainError as error:  # a broken example must not keep the platform from starting
            log.warning("demo protocol not seeded", key=key, reason=error.message, problems=error.reasons)
            continue
        created.append(key)
    return created
