"""Labs' internal mail domains are real addresses: `.test`, `.local` and `.home.arpa` are accepted for members (their
syntax still checked); `.invalid`, `.localhost` and broken addresses are refused (422), adding no one."""

from __future__ import annotations

import secrets

import pytest

from domain.identity.models import lab_email
from domain.roles import Role
from tests.support import PASSWORD


@pytest.mark.parametrize("domain", ["plantlab.test", "PlantLab.Local", "bench.lab.home.arpa", "lab.internal"])
def test_a_member_with_an_internal_mail_domain_is_added_and_signs_in(client, org_a, domain):
    email = f"ana.{secrets.token_hex(3)}@{domain}"
    r = client.post("/api/v1/members", headers=org_a.headers(Role.admin),
                    json={"email": email, "display_name": "Ana", "password": PASSWORD, "role": "technician"})
    assert r.status_code == 201, r.text
    stored = r.json()["email"]
    assert stored == email.split("@")[0] + "@" + domain.lower()
    login = client.post("/api/v1/auth/login", json={"email": stored, "password": PASSWORD, "org": org_a.slug})
    assert login.status_code == 200, login.text


@pytest.mark.parametrize("email", ["ana@lab.invalid", "ana@localhost", "ana@.local", "ana b@lab.local",
                                   "ana@lab..test", "not-an-email", "ana@onion.onion"])
def test_an_address_that_is_none_is_refused(client, org_a, email):
    before = client.get("/api/v1/members", headers=org_a.headers(Role.admin)).json()
    r = client.post("/api/v1/members", headers=org_a.headers(Role.admin),
                    json={"email": email, "display_name": "X", "password": PASSWORD, "role": "technician"})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["email"]
    assert client.get("/api/v1/members", headers=org_a.headers(Role.admin)).json() == before


def test_the_domain_is_lower_cased_and_the_local_part_kept():
    assert lab_email("Ana.Ruiz@Lab.LOCAL") == "Ana.Ruiz@lab.local"
    assert lab_email("ana@Example.ORG") == "ana@example.org"
