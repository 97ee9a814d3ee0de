"""The lab manager's and approver's pages without a browser: protocol authoring with the compiler's located
problems, submit, send back, approve with a signature (author refused, wrong password refused); a run's controls
refused with the reason; launch validation; malformed addresses never 500."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import text

from domain.roles import Role
from tests.runs.conftest import wait_for
from tests.runs.support import approve_protocol, one_task
from tests.support import PASSWORD, make_org
from tests.ui.conftest import csrf_of, log_in, pages_client

DOCUMENT = """key: {key}
title: Weighing {key}
steps:
  - key: weigh
    kind: task
    title: Weigh the sample
    roles: [technician]
    form:
      key: {form}
      fields:
        - {{key: mass_g, label: Mass, type: number, unit: g, min: 0, max: {max}}}
"""


def signed_in(client, org, role: Role):  # type: ignore[no-untyped-def]
    web = pages_client(client)
    assert log_in(web, org.users[role][1], PASSWORD).status_code == 303
    return web


def post(web, path: str, data: dict[str, str], page: str | None = None):  # type: ignore[no-untyped-def]
    token = csrf_of(web.get(page or "/ui/inbox").text)
    return web.post(path, data={**data, "csrf_token": token})


def test_authoring_shows_problems_where_they_are_then_submit_and_another_person_approves(client, owner):
    org = make_org(owner, client)  # a wrong signature password counts towards these accounts' lockout only
    key = f"auth-{uuid.uuid4().hex[:6]}"
    form = key.replace("-", "_") + "_w"
    author = signed_in(client, org, Role.lab_manager)
    assert 'for="yaml"' in author.get("/ui/protocols/new").text
    r = post(author, "/ui/protocols/new", {"yaml": DOCUMENT.format(key=key, form=form, max=-5), "action": "check"})
    assert r.status_code == 422 and "steps[0].form.fields[0].max" in r.text  # the compiler's path
    assert ">line 11</a>" in r.text  # … and the line of the text it points at
    r = post(author, "/ui/protocols/new", {"yaml": "key: [unclosed", "action": "save"})
    assert r.status_code == 422 and "line 1" in r.text  # the YAML's own place
    assert client.get(f"/api/v1/protocols/{key}", headers=org.headers(Role.lab_manager)).status_code == 404
    r = post(author, "/ui/protocols/new", {"yaml": DOCUMENT.format(key=key, form=form, max=1000), "action": "save"})
    assert r.status_code == 303 and r.headers["location"] == f"/ui/protocols/{key}/versions/1?done=saved"
    page = f"/ui/protocols/{key}/versions/1"
    r = post(author, f"{page}/edit", {"yaml": DOCUMENT.format(key=key, form=form, max=1000), "action": "submit"},
             page=page)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=submit")
    mine = author.get(page).text
    assert "in review" in mine and "Approve with your signature" not in mine  # its author may not approve it
    content_hash = client.get(f"/api/v1/protocols/{key}/versions/1", headers=org.headers(Role.lab_manager)
                              ).json()["content_hash"]
    r = post(author, f"{page}/approve", {"password": PASSWORD, "content_hash": "0" * 64}, page=page)
    assert r.status_code == 409 and "changed since this page showed it" in r.text  # sign only what was shown
    r = post(author, f"{page}/approve", {"password": PASSWORD, "content_hash": content_hash}, page=page)
    assert r.status_code == 403 and "segregation of duties" in r.text  # shown in place, and on record

    manager = signed_in(client, org, Role.admin)
    shown = manager.get(page).text
    assert "Approve with your signature" in shown and "means <strong>approved</strong>" in shown
    assert content_hash in shown
    r = post(manager, f"{page}/approve", {"password": "not it", "content_hash": content_hash}, page=page)
    assert r.status_code == 403 and "the password is not correct" in r.text
    r = post(manager, f"{page}/approve", {"password": PASSWORD, "content_hash": content_hash}, page=page)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=approve")
    version = client.get(f"/api/v1/protocols/{key}/versions/1", headers=org.headers(Role.lab_manager)).json()
    assert version["status"] == "approved" and version["approval"]["signer"]["name"]
    assert f'value="{key}:1"' in manager.get("/ui/runs/new").text  # now a run may use it


def test_sending_back_needs_a_reason(client, owner, org_a):
    key = f"back-{uuid.uuid4().hex[:6]}"
    form = key.replace("-", "_") + "_w"
    author = signed_in(client, org_a, Role.scientist)
    post(author, "/ui/protocols/new", {"yaml": DOCUMENT.format(key=key, form=form, max=10), "action": "save"})
    page = f"/ui/protocols/{key}/versions/1"
    post(author, f"{page}/edit", {"yaml": DOCUMENT.format(key=key, form=form, max=10), "action": "submit"}, page=page)
    manager = signed_in(client, org_a, Role.lab_manager)
    r = post(manager, f"{page}/return", {"reason": " "}, page=page)
    assert r.status_code == 422 and "give the reason" in r.text
    r = post(manager, f"{page}/return", {"reason": "the balance's range is wrong"}, page=page)
    assert r.status_code == 303
    assert client.get(f"/api/v1/protocols/{key}/versions/1", headers=org_a.headers(Role.lab_manager)
                      ).json()["status"] == "draft"


def test_run_controls_and_launch_refuse_with_the_reason(client, owner, org_a):
    key = f"ctl-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org_a.id, one_task(key, due=None))
    run = client.post("/api/v1/runs", headers=org_a.headers(Role.lab_manager), json={"protocol_key": key}).json()
    manager = signed_in(client, org_a, Role.lab_manager)
    page = f"/ui/runs/{run['id']}"
    r = post(manager, f"{page}/hold", {"reason": ""}, page=page)
    assert r.status_code == 422 and "give the reason" in r.text
    r = post(manager, f"{page}/resume", {"reason": "nothing to resume"}, page=page)
    assert r.status_code == 409 and "Not done" in r.text  # the workflow's refusal, as the API answers it
    assert post(manager, f"{page}/explode", {"reason": "x"}, page=page).status_code == 404
    technician = signed_in(client, org_a, Role.technician)
    seen = technician.get(page).text  # a role without the audit history reads the run's step events
    assert f"lab_manager of {org_a.slug}: run started" in seen and "Hold, resume or cancel" not in seen
    r = post(technician, f"{page}/cancel", {"reason": "not mine to cancel"})
    assert r.status_code == 403 and "may not" in r.text
    now = client.get(f"/api/v1/runs/{run['id']}", headers=org_a.headers(Role.lab_manager)).json()
    assert now["status"] == "running"
    r = post(manager, "/ui/runs", {"protocol": f"{key}:1", "time_scale": "5", "subjects": "", "parameters": ""},
             page="/ui/runs/new")
    assert r.status_code == 422 and 'id="time_scale-error"' in r.text and "less than or equal to 1" in r.text
    r = post(manager, "/ui/runs", {"protocol": f"{key}:9", "subjects": "", "parameters": "", "time_scale": "1"},
             page="/ui/runs/new")
    assert r.status_code == 404 and f"no protocol &#39;{key}&#39; version 9" in r.text


def test_malformed_addresses_are_not_found(client, org_a):
    manager = signed_in(client, org_a, Role.lab_manager)
    for path in ("/ui/runs/not-a-run", "/ui/approvals/123", "/ui/protocols/x/versions/0",
                 f"/ui/approvals/{uuid.uuid4()}", "/ui/protocols/no-such-protocol"):
        assert manager.get(path).status_code == 404, path


def test_the_live_inbox_refreshing_itself_does_not_keep_an_idle_session_alive(client, owner):
    org = make_org(owner, client)
    web = signed_in(client, org, Role.technician)
    token = web.cookies["ft_session"]
    assert web.get("/ui/inbox").status_code == 200  # the person's use: last seen now

    def last_seen_minutes_ago() -> float:
        with owner.begin(None) as s:
            return float(s.execute(text("SELECT extract(epoch FROM now() - last_seen_at) / 60 FROM auth_sessions"
                                        " WHERE org_id = :o AND revoked_at IS NULL AND last_seen_at IS NOT NULL"),
                                   {"o": org.id}).scalar_one())

    with owner.begin(None) as s:
        s.execute(text("UPDATE auth_sessions SET last_seen_at = now() - interval '20 minutes' WHERE org_id = :o"
                       " AND last_seen_at IS NOT NULL"), {"o": org.id})
    poll = {"HX-Request": "true", "X-Flasktrack-Poll": "1"}
    assert web.get("/ui/inbox", headers=poll).status_code == 200  # still within the idle timeout: answered
    assert last_seen_minutes_ago() > 19  # … but not counted as the person's use
    with owner.begin(None) as s:
        s.execute(text("UPDATE auth_sessions SET last_seen_at = now() - interval '2 hours' WHERE org_id = :o"
                       " AND last_seen_at IS NOT NULL"), {"o": org.id})
    r = web.get("/ui/inbox", headers=poll)
    assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/ui/login")  # the open page logs out
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_closed_approval_shows_the_hash_that_was_signed_not_the_current_one(client, owner):
    from tests.ui.test_manager import open_task, reviewed_protocol

    org = make_org(owner, client)
    key = reviewed_protocol(owner, org)
    run_id = client.post("/api/v1/runs", headers=org.headers(Role.lab_manager),
                         json={"protocol_key": key, "subjects": [{"type": "sample", "id": "S-7"}]}).json()["id"]
    weigh = open_task(client, org, run_id, "weigh")
    done = client.post(f"/api/v1/tasks/{weigh['id']}/complete", headers=org.headers(Role.technician),
                       json={"values": {"mass_g": 12.5}, "checklist": {"balance_calibrated": True}})
    assert done.status_code == 200, done.text
    review = open_task(client, org, run_id, "review", Role.lab_manager)
    web = signed_in(client, org, Role.lab_manager)
    before = web.get(f"/ui/approvals/{review['id']}").text
    shown = re.search(r'id="content-hash">([0-9a-f]{64})<', before).group(1)  # type: ignore[union-attr]
    signed = client.post(f"/api/v1/runs/{run_id}/approvals", headers=org.headers(Role.lab_manager),
                         json={"task_id": review["id"], "decision": "approve", "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    page = web.get(f"/ui/approvals/{review['id']}").text
    assert "Signed by" in page and f'id="content-hash">{shown}<' in page and 'id="hash-changed"' not in page
    # Were the records ever to hash otherwise (a later signature on record here stands for that), the page shows
    # the hash the latest signature bound, and says that today's records differ.
    with owner.begin(org.id) as s:
        s.execute(text("INSERT INTO signatures (id, org_id, signer_id, signer_name, meaning, entity_type, entity_id,"
                       " content_hash) VALUES (:i, :o, :u, 'Later Signer', 'reviewed', 'task', :t, :h)"),
                  {"i": uuid.uuid4(), "o": org.id, "u": org.users[Role.lab_manager][0], "t": review["id"],
                   "h": "ab" * 32})
    page = web.get(f"/ui/approvals/{review['id']}").text
    assert f'id="content-hash">{"ab" * 32}<' in page and 'id="hash-changed"' in page and shown in page


def test_the_runs_board_and_the_inbox_read_a_page_set_at_a_time(client, owner, temporal_api):
    """What each run waits for and each task's subject are read for the whole page at once: the statements a page
    makes do not grow with its rows."""
    from sqlalchemy import event

    org = make_org(owner, client)
    key = f"n1-{uuid.uuid4().hex[:6]}"
    approve_protocol(owner, org.id, one_task(key, due="PT2H"))
    manager, tech = signed_in(client, org, Role.lab_manager), signed_in(client, org, Role.technician)
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    def counted(web, path: str) -> int:  # type: ignore[no-untyped-def]
        statements.clear()
        event.listen(temporal_api.sessions.engine, "before_cursor_execute", seen)
        try:
            assert web.get(path).status_code == 200
        finally:
            event.remove(temporal_api.sessions.engine, "before_cursor_execute", seen)
        return sum(1 for s in statements if "FROM tasks" in s or "FROM runs" in s or "FROM step_events" in s)

    def launch(n: int) -> None:
        for _ in range(n):
            r = client.post("/api/v1/runs", headers=org.headers(Role.lab_manager),
                            json={"protocol_key": key, "subjects": [{"type": "sample", "id": "S-7"}]})
            assert r.status_code == 201, r.text
        wait_for(lambda: len(client.get("/api/v1/tasks", headers=org.headers(Role.technician)).json()) >= total[0],
                 timeout=60)

    total = [2]
    launch(2)
    few = counted(manager, "/ui/runs"), counted(tech, "/ui/inbox")
    assert all(few), "the pages' statements are seen"
    total[0] = 6
    launch(4)
    assert (counted(manager, "/ui/runs"), counted(tech, "/ui/inbox")) == few
