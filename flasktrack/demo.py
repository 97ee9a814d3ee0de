"""The demo organization `make run` seeds on first start: one user per role."""

from __future__ import annotations

from sqlalchemy import text

from domain.identity import service as identity
from domain.identity.models import MemberCreate
from domain.roles import SYSTEM_ACTOR, RequestContext, Role
from flasktrack.db import TenantSessions

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
    """Create the demo org and its users unless it exists. True when it was created now."""
    with owner.begin(None) as s:
        if s.execute(text("SELECT 1 FROM organizations WHERE slug = :s"), {"s": DEMO_ORG}).first():
            return False
        org = identity.create_org(s, slug=DEMO_ORG, name="Demo Plant & Fungal Lab")
        s.execute(text("SELECT set_config('flasktrack.org_id', :o, true)"), {"o": str(org.id)})
        for role, email, name in DEMO_USERS:
            identity.add_member(s, org_id=org.id, actor=SYSTEM_ACTOR, context=RequestContext(),
                                data=MemberCreate(email=email, display_name=name, password=DEMO_PASSWORD, role=role))
    return True
