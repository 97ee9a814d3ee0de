"""Test helpers shared by every test package: organizations with one user per role."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field

from fastapi.testclient import TestClient
from sqlalchemy import text

from core.db import TenantSessions
from domain.identity import service as identity
from domain.identity.models import MemberCreate
from domain.roles import Actor, RequestContext, Role

PASSWORD = "correct horse battery staple"

# Material every test organization has, under the codes the run tests name as subjects and in sample_ref /
# batch_ref fields (runs take only existing, usable material).
SAMPLE_CODES = ("S-1", "S-7", "S-A-1", "S-B-2", "S-R-1", "S-C-1", "S-H-1", "S-T-1", "S-L-1", "S-L-2", "S-UI",
                "S-2024-0042", "GS-0042", "pBIN19-GFP", "AG-2024-117", "S-LIVE-1")
BATCH_CODES = ("NT-B12", "MS-SEL-7", "MS-SEL-8", "B-7")


def seed_material(owner: TenantSessions, org_id: uuid.UUID, samples: tuple[str, ...] | list[str] = SAMPLE_CODES,
                  batches: tuple[str, ...] | list[str] = BATCH_CODES) -> None:
    """Samples and batches under the given codes (as the table owner; existing codes are left as they are)."""
    with owner.begin(org_id) as s:
        for code in batches:
            s.execute(text("INSERT INTO batches (id, org_id, code, batch_type, name, status, created_at, created_by,"
                           " updated_at) VALUES (:i, :o, :c, 'other', :c, 'open', now(), 'test', now())"
                           " ON CONFLICT (org_id, code) DO NOTHING"), {"i": uuid.uuid4(), "o": org_id, "c": code})
        for code in samples:
            s.execute(text("INSERT INTO samples (id, org_id, code, sample_type, name, status, created_at, created_by,"
                           " updated_at) VALUES (:i, :o, :c, 'other', :c, 'received', now(), 'test', now())"
                           " ON CONFLICT (org_id, code) DO NOTHING"), {"i": uuid.uuid4(), "o": org_id, "c": code})


@dataclass
class Org:
    id: uuid.UUID
    slug: str
    users: dict[Role, tuple[uuid.UUID, str]] = field(default_factory=dict)  # role → (user id, email)
    tokens: dict[Role, str] = field(default_factory=dict)

    def headers(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_org(owner: TenantSessions, client: TestClient, slug: str | None = None) -> Org:
    slug = slug or f"lab-{secrets.token_hex(4)}"
    with owner.begin(None) as s:
        org = identity.create_org(s, slug=slug, name=f"Lab {slug}")
    o = Org(id=org.id, slug=slug)
    for role in Role:
        email = f"{role.value}.{slug}@example.org"
        with owner.begin(org.id) as s:
            m = identity.add_member(s, org_id=org.id, actor=Actor("system", "test", "test"), context=RequestContext(),
                                    data=MemberCreate(email=email, display_name=f"{role.value} of {slug}",
                                                      password=PASSWORD, role=role))
        o.users[role] = (m.user_id, email)
        r = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        o.tokens[role] = r.json()["token"]
    seed_material(owner, org.id)
    return o


