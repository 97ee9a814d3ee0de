"""Test helpers shared by every test package: organizations with one user per role."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field

from fastapi.testclient import TestClient

from core.db import TenantSessions
from domain.identity import service as identity
from domain.identity.models import MemberCreate
from domain.roles import Actor, RequestContext, Role

PASSWORD = "correct horse battery staple"


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
    return o


