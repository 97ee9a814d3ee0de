"""In real headless Chromium: a technician reads a sample's compliance surface, each tag with the path that brought
it; the owner signs an IBC approval recorded by the admin with the password re-entered; axe-core finds no serious
violation on the authorization, event and alert pages."""

from __future__ import annotations

import re
import uuid

import pytest

from domain.alerts.models import Addressees
from domain.alerts.service import raise_alert
from domain.roles import Role
from tests.compliance.support import agro_material, tag
from tests.support import PASSWORD
from tests.ui.conftest import screenshot
from tests.ui.test_browser_roles import log_in, serious_violations
from tests.ui.test_compliance_pages import authorization

pytestmark = pytest.mark.usefixtures("chromium")


def test_a_technician_reads_a_samples_compliance_surface_with_its_paths(page, web_url, client, org_a):
    m = agro_material(client, org_a)
    tag(client, org_a, "recombinant_dna", "plasmid", m["plasmid"]["id"])
    log_in(page, web_url, org_a.users[Role.technician][1], r"/ui/inbox")
    page.goto(f"{web_url}/ui/samples/{m['plate']['id']}")
    surface = page.locator("#compliance-surface")
    surface.wait_for()
    row = surface.get_by_role("row").filter(has_text="recombinant_dna")
    assert row.count() == 1
    path = row.locator(".provenance").first.inner_text()
    assert m["plasmid"]["name"] in path and m["plate"]["code"] in path, path
    assert page.locator("#compliance-status").inner_text()
    screenshot(page, "sample_compliance")
    assert serious_violations(page) == []


def test_the_owner_signs_an_authorization_and_the_compliance_pages_pass_axe(page, web_url, client, owner, org_a):
    auth = authorization(client, org_a, Role.admin)
    m = agro_material(client, org_a)
    event = client.post("/api/v1/events", headers={**org_a.headers(Role.technician), "X-Request-ID": uuid.uuid4().hex},
                        json={"kind": "contamination", "severity": "high", "title": "Fungus on the plate",
                              "description": "fungal growth at day 3", "links": {"samples": [m["plate"]["id"]]}})
    assert event.status_code == 201, event.text
    with owner.begin(org_a.id) as s:
        raise_alert(s, org_a.id, "other", ("sample", m["plate"]["id"]), Addressees(roles=("owner",)),
                    title="Look at the plate")
    log_in(page, web_url, org_a.users[Role.owner][1], r"/ui/")
    for path in ("/ui/authorizations", "/ui/events", "/ui/events/new", f"/ui/events/{event.json()['id']}",
                 "/ui/alerts", f"/ui/authorizations/{auth['id']}"):
        page.goto(f"{web_url}{path}")
        assert serious_violations(page) == [], path
    page.get_by_label("Your password, to sign").fill(PASSWORD)
    page.get_by_role("button", name="Sign").click()
    page.wait_for_url(re.compile(r"\?signed=1"))
    assert page.locator("#authorization-status").inner_text() == "active"
    screenshot(page, "authorization")
