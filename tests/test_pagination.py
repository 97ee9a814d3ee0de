"""Runs and tasks lists page by cursor and find by words: paging through any set returns each row once, in the
list's order; a cursor the API did not hand out is refused."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from core.db import TenantSessions
from domain.protocols.compiler import compile_protocol
from domain.roles import Role
from tests.runs.support import approve_protocol, one_task
from tests.support import Org, make_org

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)
PROTOCOL = one_task("paging-check")
_PLAN = compile_protocol(PROTOCOL, 1).plan
assert _PLAN is not None
SPEC = _PLAN.step("weigh").model_dump_json()


@pytest.fixture(scope="module")
def lab(owner: TenantSessions, client: TestClient) -> tuple[Org, uuid.UUID]:
    org = make_org(owner, client)
    version_id, _ = approve_protocol(owner, org.id, PROTOCOL)
    return org, version_id


def add_runs(owner: TenantSessions, org: Org, version_id: uuid.UUID, launched: list[int],
             title: str = "Paging check") -> list[str]:
    """Runs launched `launched[i]` minutes after T0 (equal minutes share one timestamp), each with one open task
    due that many hours later (none when odd): their ids in insertion order."""
    ids = []
    with owner.begin(org.id) as s:
        for i, minutes in enumerate(launched):
            run_id, at = uuid.uuid4(), T0 + dt.timedelta(minutes=minutes)
            s.execute(text(
                "INSERT INTO runs (id, org_id, protocol_version_id, protocol_key, protocol_version, protocol_title,"
                " status, subjects, launched_by, launched_by_display, launched_at, updated_at)"
                " VALUES (:i, :o, :v, 'paging-check', 1, :t, 'running', CAST(:subj AS jsonb), 'user:x', 'Ana Ortiz',"
                " :at, :at)"),
                {"i": run_id, "o": org.id, "v": version_id, "t": title, "at": at,
                 "subj": json.dumps([{"type": "sample", "id": f"S-{i:06d}"}])})
            s.execute(text(
                "INSERT INTO tasks (id, org_id, run_id, step_key, iteration, kind, title, roles, spec, status,"
                " opened_at, due_at) VALUES (:i, :o, :r, 'weigh', 0, 'task', :t, ARRAY['technician'],"
                " CAST(:spec AS jsonb), 'open', :at, :due)"),
                {"i": uuid.uuid4(), "o": org.id, "r": run_id, "t": f"Weigh {title}", "at": at, "spec": SPEC,
                 "due": None if minutes % 2 else at + dt.timedelta(hours=minutes % 5)})
            ids.append(str(run_id))
    return ids


def walk(client: TestClient, org: Org, path: str, limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    url: str | None = f"{path}&limit={limit}"
    while url:
        r = client.get(url, headers=org.headers(Role.lab_manager))
        assert r.status_code == 200, r.text
        seen.extend(r.json())
        cursor = r.headers.get("X-Next-Cursor")
        assert (cursor is None) == ('rel="next"' not in r.headers.get("Link", ""))
        url = f"{path}&limit={limit}&cursor={cursor}" if cursor else None
    return seen


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(launched=st.lists(st.integers(0, 6), min_size=0, max_size=14), limit=st.integers(1, 5))
def test_paging_through_runs_and_tasks_returns_each_once_in_order(owner: TenantSessions, client: TestClient,
                                                                  lab: tuple[Org, uuid.UUID], launched: list[int],
                                                                  limit: int) -> None:
    org, version_id = lab
    word = f"batch{uuid.uuid4().hex[:12]}"  # this example's runs, among the module's others
    ids = add_runs(owner, org, version_id, launched, title=f"Paging {word}")

    runs = walk(client, org, f"/api/v1/runs?q={word}", limit)
    assert sorted(r["id"] for r in runs) == sorted(ids)
    keys = [(r["launched_at"], r["id"]) for r in runs]
    assert keys == sorted(keys, reverse=True)

    tasks = walk(client, org, f"/api/v1/tasks?q={word}", limit)
    assert sorted(t["run_id"] for t in tasks) == sorted(ids)
    order = [(t["due_at"] is None, t["due_at"] or "", t["opened_at"], t["id"]) for t in tasks]
    assert order == sorted(order)


def test_search_finds_runs_and_tasks_by_words_of_protocol_subject_and_person(
        owner: TenantSessions, client: TestClient) -> None:
    org = make_org(owner, client)
    version_id, _ = approve_protocol(owner, org.id, PROTOCOL)
    [callus] = add_runs(owner, org, version_id, [1], title="Callus induction")
    [rooting] = add_runs(owner, org, version_id, [2], title="Rooting")
    h = org.headers(Role.lab_manager)

    def found(path: str) -> set[str]:
        r = client.get(path, headers=h)
        assert r.status_code == 200, r.text
        return {x.get("run_id", x["id"]) for x in r.json()}

    assert found("/api/v1/runs?q=callus") == {callus}
    assert found("/api/v1/runs?q=ROOT") == {rooting}  # a word's beginning, any case
    assert found("/api/v1/runs?q=ortiz callus") == {callus}  # every word must match
    assert found("/api/v1/runs?q=000000") == {callus, rooting}  # the subject S-000000, by its number
    assert found("/api/v1/tasks?q=weigh callus") == {callus}
    assert found("/api/v1/runs?q=nothing-like-this") == set()
    assert found("/api/v1/runs?q=%26%7C!%3A*()") == {callus, rooting}  # no words: no filter, never a 500


@pytest.mark.parametrize("cursor", ["nope", "MjAyNg", "a" * 201, "MjAyNi0xMS0wMVQwODowMDowMHw"])
def test_a_cursor_the_api_did_not_hand_out_is_refused(client: TestClient, lab: tuple[Org, uuid.UUID],
                                                      cursor: str) -> None:
    org, _ = lab
    for path in ("/api/v1/runs", "/api/v1/tasks"):
        r = client.get(f"{path}?cursor={cursor}", headers=org.headers(Role.lab_manager))
        assert r.status_code == 422, (path, r.text)
