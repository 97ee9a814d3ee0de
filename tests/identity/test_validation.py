"""Bad input answers 422 naming the field and the reason, and writes nothing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from domain.roles import Role


def _counts(owner, org_id):
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_id})
        return tuple(s.execute(text(f"SELECT count(*) FROM {t} WHERE org_id = :o"), {"o": org_id}).scalar_one()
                     for t in ("audit_log", "audit_pending", "api_keys", "memberships"))


def test_named_field_and_reason(client, org_a, owner):
    before = _counts(owner, org_a.id)
    r = client.post("/api/v1/members", headers=org_a.headers(Role.admin),
                    json={"email": "not-an-email", "display_name": "X", "password": "short", "role": "wizard"})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"email", "password", "role"} <= fields
    assert _counts(owner, org_a.id) == before


bad_key_bodies = st.one_of(
    st.fixed_dictionaries({"name": st.just(""), "role": st.sampled_from([r.value for r in Role])}),
    st.fixed_dictionaries({"name": st.text(min_size=201, max_size=300), "role": st.just("analyst")}),
    st.fixed_dictionaries({"name": st.text(min_size=1, max_size=20).filter(str.strip),
                           "role": st.text(max_size=12).filter(lambda x: x not in {r.value for r in Role})}),
    st.fixed_dictionaries({"name": st.just("ok"), "role": st.just("analyst"), "extra": st.integers()}),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bad_key_bodies)
def test_bad_api_key_requests_write_nothing(client, org_a, owner, body):
    before = _counts(owner, org_a.id)
    r = client.post("/api/v1/apikeys", headers=org_a.headers(Role.admin), json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"] and all(e["reason"] for e in r.json()["errors"])
    assert _counts(owner, org_a.id) == before


def test_audit_query_rejects_bad_filters(client, org_a):
    h = org_a.headers(Role.auditor)
    assert client.get("/api/v1/audit", params={"limit": 0}, headers=h).status_code == 422
    assert client.get("/api/v1/audit", params={"since": "yesterday"}, headers=h).status_code == 422
    assert client.get("/api/v1/audit", params={"severity": "loud"}, headers=h).status_code == 422
    assert client.get("/api/v1/audit", params={"cursor": "garbage!"}, headers=h).status_code == 422
