"""The auditor's, analyst's and admin's pages without a browser: what each shows, that each calls the same services
as the API (same scope, same entries on record), that refusals say why and change nothing."""

from __future__ import annotations

import csv
import io
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import text

from domain.roles import Role
from lake.writer import Append, Lake
from tests.support import PASSWORD
from tests.ui.conftest import csrf_of, log_in, pages_client


def signed_in(client, org, role):  # type: ignore[no-untyped-def]
    web = pages_client(client)
    # The organization named: another test may have invited this person elsewhere (then the page asks which).
    assert log_in(web, org.users[role][1], PASSWORD, org=org.slug).status_code == 303
    return web


def sealed(owner, org):  # type: ignore[no-untyped-def]
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": str(org.id)})


def lake_table(settings, org, rows: int = 3) -> str:  # type: ignore[no-untyped-def]
    """A form table of the org in the tests' lake, its columns labelled as the sink labels them."""
    name = f"form_webq_{uuid.uuid4().hex[:8]}"
    data = pa.table({"org_id": [str(org.id)] * rows, "strain": [f"AGL{i}" for i in range(rows)],
                     "od600": [0.25 * (i + 1) for i in range(rows)]})
    lake = Lake(settings.resolved_lake_uri)
    lake.append_once(name, lambda t: None if t is not None and t.transaction_version("t") else Append(data, {"t": 1}))
    lake.describe(name, columns={"strain": {"comment": "Strain"}, "od600": {"comment": "OD600", "unit": "AU"}})
    return name


def test_an_auditor_filters_by_email_and_name_sees_the_diff_verifies_and_exports(client, owner, org_a):
    admin_web = signed_in(client, org_a, Role.admin)
    page = admin_web.get("/ui/admin/members").text
    tech_id = org_a.users[Role.technician][0]
    r = admin_web.post(f"/ui/admin/members/{tech_id}/role",
                       data={"csrf_token": csrf_of(page), "role": "scientist", "reason": "covers the culture room"})
    assert r.status_code == 303
    sealed(owner, org_a)
    web = signed_in(client, org_a, Role.auditor)
    admin_email = org_a.users[Role.admin][1]
    by_email = web.get("/ui/audit", params={"person": admin_email, "entity_type": "membership"})
    assert by_email.status_code == 200 and "covers the culture room" in by_email.text
    assert "<del>technician</del>" in by_email.text and "<ins>scientist</ins>" in by_email.text
    by_name = web.get("/ui/audit", params={"person": f"admin of {org_a.slug}", "reason": "culture room"})
    assert "covers the culture room" in by_name.text
    nobody = web.get("/ui/audit", params={"person": "nobody@nowhere.example"})
    assert nobody.status_code == 422 and "no member of this organization has that email" in nobody.text
    bad = web.get("/ui/audit", params={"since": "yesterday"})
    assert bad.status_code == 422 and "since" in bad.text
    verified = web.get("/ui/audit/verify")
    assert verified.status_code == 200 and "Intact." in verified.text
    exported = web.get("/ui/audit/export", params={"format": "csv", "person": admin_email, "action": "update"})
    assert exported.status_code == 200 and exported.headers["content-disposition"].startswith("attachment")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows and {r["actor_id"] for r in rows} == {str(org_a.users[Role.admin][0])}
    state = web.get("/ui/audit/state", params={"entity_type": "membership", "entity_id": str(tech_id)})
    assert state.status_code == 200 and "scientist" in state.text
    admin_web.post(f"/ui/admin/members/{tech_id}/role", data={"csrf_token": csrf_of(page), "role": "technician",
                                                               "reason": "back to the bench"})


def test_another_organizations_entity_is_not_found_and_the_attempt_is_on_record(client, owner, org_a, org_b):
    web = signed_in(client, org_b, Role.auditor)
    member = str(org_a.users[Role.technician][0])
    r = web.get("/ui/audit/state", params={"entity_type": "membership", "entity_id": member})
    assert r.status_code == 404 and "technician of" not in r.text
    listed = web.get("/ui/audit", params={"entity_id": member})
    assert listed.status_code == 200 and "No entries match." in listed.text


def test_a_technician_cannot_open_the_admin_pages_and_the_attempt_is_on_record(client, owner, org_a):
    web = signed_in(client, org_a, Role.technician)
    for path in ("/ui/admin/members", "/ui/admin/keys", "/ui/lake"):
        r = web.get(path)
        assert r.status_code == 403 and "may not" in r.text, path
    sealed(owner, org_a)
    entries = client.get("/api/v1/audit", params={"action": "deny", "entity_id": "GET /ui/admin/members"},
                         headers=org_a.headers(Role.auditor)).json()["items"]
    assert entries and entries[0]["actor"]["id"] == str(org_a.users[Role.technician][0])


def test_an_admin_invites_deactivates_and_creates_a_key_shown_once(client, owner, org_a):
    web = signed_in(client, org_a, Role.admin)
    token = csrf_of(web.get("/ui/admin/members").text)
    email = f"new-{uuid.uuid4().hex[:6]}@example.org"
    short = web.post("/ui/admin/members/invite", data={"csrf_token": token, "email": email, "display_name": "New",
                                                       "password": "short", "role": "analyst"})
    assert short.status_code == 422 and "password" in short.text
    r = web.post("/ui/admin/members/invite", data={"csrf_token": token, "email": email, "display_name": "New",
                                                   "password": "a long enough password", "role": "analyst"})
    assert r.status_code == 303 and email in web.get("/ui/admin/members").text
    analyst_id = org_a.users[Role.analyst][0]
    no_reason = web.post(f"/ui/admin/members/{analyst_id}/deactivate", data={"csrf_token": token, "reason": ""})
    assert no_reason.status_code == 422
    myself = web.post(f"/ui/admin/members/{org_a.users[Role.admin][0]}/deactivate",
                      data={"csrf_token": token, "reason": "test"})
    assert myself.status_code == 409 and "yourself" in myself.text
    keys = web.get("/ui/admin/keys")
    created = web.post("/ui/admin/keys", data={"csrf_token": csrf_of(keys.text), "name": "nightly export",
                                               "role": "analyst"})
    assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
    key = created.text.split('id="new-key" type="text" readonly value="')[1].split('"')[0]
    assert key and key not in web.get("/ui/admin/keys").text  # shown once
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_deactivating_a_member_ends_their_sessions_on_record(client, owner):
    from tests.support import make_org

    org = make_org(owner, client)
    web = signed_in(client, org, Role.admin)
    victim = signed_in(client, org, Role.scientist)
    token = csrf_of(web.get("/ui/admin/members").text)
    user = org.users[Role.scientist][0]
    r = web.post(f"/ui/admin/members/{user}/deactivate", data={"csrf_token": token, "reason": "left the lab"})
    assert r.status_code == 303 and "deactivated" in web.get("/ui/admin/members").text
    assert victim.get("/ui/runs").status_code == 303  # sent to log in again
    assert client.get("/api/v1/me", headers=org.headers(Role.scientist)).status_code == 401
    sealed(owner, org)
    entries = client.get("/api/v1/audit", params={"action": "deactivate", "entity_id": str(user)},
                         headers=org.headers(Role.auditor)).json()["items"]
    assert entries[0]["reason"] == "left the lab" and entries[0]["after"]["active"] is False


def test_an_analyst_browses_tables_queries_and_downloads(client, owner, settings, org_a, org_b):
    name = lake_table(settings, org_a)
    other = lake_table(settings, org_b)
    web = signed_in(client, org_a, Role.analyst)
    console = web.get("/ui/lake")
    assert console.status_code == 200 and name in console.text and other not in console.text
    assert "OD600" in console.text and "AU" in console.text
    token = csrf_of(console.text)
    sql = f"SELECT strain, od600 FROM {name} ORDER BY strain"
    ran = web.post("/ui/lake/query", data={"csrf_token": token, "sql": sql, "action": "run"})
    assert ran.status_code == 200 and "AGL2" in ran.text and "<svg" in ran.text and "3 rows" in ran.text
    got = web.post("/ui/lake/query", data={"csrf_token": token, "sql": sql, "action": "csv"})
    assert got.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(got.text)))[1] == ["AGL0", "0.25"]
    parquet = web.post("/ui/lake/query", data={"csrf_token": token, "sql": sql, "action": "parquet"})
    assert pq.read_table(io.BytesIO(parquet.content)).num_rows == 3
    for refused in (f"SELECT * FROM {other}", "DELETE FROM runs", "SELECT * FROM read_csv('/etc/passwd')"):
        r = web.post("/ui/lake/query", data={"csrf_token": token, "sql": refused, "action": "csv"})
        assert r.status_code == 422 and 'role="alert"' in r.text, refused
    sealed(owner, org_a)
    entries = client.get("/api/v1/audit", params={"entity_type": "lake_query", "person": None},
                         headers=org_a.headers(Role.auditor)).json()["items"]
    mine = [e for e in entries if e["actor"]["id"] == str(org_a.users[Role.analyst][0])]
    assert {e["after"]["outcome"] for e in mine} >= {"ok", "refused", "error"}
