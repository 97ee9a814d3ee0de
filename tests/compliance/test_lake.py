"""Authorizations, qualifications and surface snapshots reach the lake: their outbox payloads type into their
tables (lake/tables.py FIXED_TOPICS) without a reject."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import text

from domain.compliance import authorizations, qualifications
from domain.compliance.models import AuthorizationCreate, AuthorizationSign, QualificationCreate, RuleCreate
from domain.identity.service import LoginLimits
from domain.roles import Role
from domain.runs import service as runs
from domain.runs.models import RunLaunch, Subject
from lake.tables import FIXED_TOPICS, type_rows
from tests.compliance.support import agro_material, tag
from tests.runs.support import PASSWORD_OF, approve_protocol, caller
from tests.support import make_org


def test_compliance_payloads_type_into_their_lake_tables(client, owner, platform):
    org = make_org(owner, client)
    m = agro_material(client, org)
    tag(client, org, "recombinant_dna", "plasmid", m["plasmid"]["id"])
    manager, admin = caller(org, Role.lab_manager), caller(org, Role.admin)
    key = f"lake-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, {"key": key, "title": "Subculture", "steps": [
        {"key": "transfer", "kind": "task", "title": "Transfer", "roles": ["technician"]}]})
    now = dt.datetime.now(dt.UTC)
    with platform.sessions.begin(org.id) as s:
        authorizations.create_rule(s, manager, RuleCreate(tags=["recombinant_dna"], authorization_type="IBC approval"))
        auth = authorizations.create(s, manager, AuthorizationCreate(
            authorization_type="IBC approval", title="IBC-1", issuer="IBC", protocol_keys=[key], tags=["gmo"],
            valid_from=now, valid_until=now + dt.timedelta(days=30)))
        qualifications.record(s, manager, QualificationCreate(
            user_id=org.users[Role.technician][0], course="biosafety_bsl2", completed_on=now.date(),
            expires_on=now.date() + dt.timedelta(days=365)))
        run, _, _ = runs.launch(s, manager, RunLaunch(protocol_key=key, subjects=[
            Subject(type="sample", id=m["plate"]["code"])]))
        held = authorizations.check_run(s, runs.ref(run), now)
    with platform.sessions.begin(org.id) as s:
        authorizations.sign(s, admin, auth.id, AuthorizationSign(password=PASSWORD_OF), LoginLimits())
    assert held.held  # the record covers gmo, not rDNA
    with owner.begin(None) as s:
        rows = s.execute(text("SELECT topic, payload FROM outbox WHERE org_id = :o AND topic IN"
                              " ('authorization', 'qualification', 'surface_snapshot') ORDER BY id"),
                         {"o": org.id}).all()
    by_topic: dict[str, list[dict]] = {}
    for r in rows:
        by_topic.setdefault(r.topic, []).append(r.payload)
    assert {t: len(p) for t, p in by_topic.items()} == {"authorization": 2, "qualification": 1, "surface_snapshot": 1}
    for topic, payloads in by_topic.items():
        typed = type_rows(FIXED_TOPICS[topic].columns, payloads)
        assert typed.rejected == {}, (topic, typed.rejected)
    snapshot = by_topic["surface_snapshot"][0]
    assert snapshot["tags"] == ["recombinant_dna"] and snapshot["held"] is True
    assert snapshot["provenance"]["recombinant_dna"].startswith("rDNA / NIH Guidelines ← plasmid ")
    assert [p["status"] for p in by_topic["authorization"]] == ["pending", "active"]
