"""Lineage over many levels: hypothesis draws acyclic graphs, the API records them, refuses every cycle, and answers
ancestors and descendants (to any depth) exactly as a Python model of the graph does."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.roles import Role
from tests.samples.material import sample, status

OPS = ["aliquot", "subculture", "passage", "pooling", "transformation", "extraction"]


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """n nodes and edges parent → child with parent < child: acyclic by construction."""
    n = draw(st.integers(min_value=2, max_value=9))
    pairs = [(p, c) for c in range(n) for p in range(c)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=14))
    return n, edges


def _reach(start: int, step: dict[int, set[int]], depth: int) -> dict[int, int]:
    """Nodes reachable from `start` within `depth` steps, each at its least distance (the model)."""
    seen = {start: 0}
    frontier = {start}
    for d in range(1, depth + 1):
        frontier = {m for x in frontier for m in step.get(x, ())} - seen.keys()
        seen.update(dict.fromkeys(frontier, d))
    return seen


def _graph(client, org, node: str, direction: str, depth: int) -> dict:
    r = client.get(f"/api/v1/samples/{node}/lineage", params={"direction": direction, "depth": depth},
                   headers=org.headers(Role.auditor))
    assert r.status_code == 200, r.text
    return r.json()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graph=dags(), data=st.data())
def test_lineage_matches_a_model_and_refuses_cycles(client, org_a, graph, data):
    n, edges = graph
    h = org_a.headers(Role.technician)
    ids = [sample(client, org_a, name=f"node {i}")["id"] for i in range(n)]
    parents: dict[int, set[int]] = {}
    children: dict[int, set[int]] = {}
    for p, c in edges:
        r = client.post(f"/api/v1/samples/{ids[c]}/parents",
                        json={"parent_ids": [ids[p]], "operation": data.draw(st.sampled_from(OPS))}, headers=h)
        assert r.status_code == 200, r.text
        parents.setdefault(c, set()).add(p)
        children.setdefault(p, set()).add(c)

    # Every edge that would close a cycle (child already an ancestor of the parent, or itself) is refused.
    for a in range(n):
        for b in _reach(a, children, n):
            r = client.post(f"/api/v1/samples/{ids[a]}/parents", json={"parent_ids": [ids[b]], "operation": "aliquot"},
                            headers=h)
            assert r.status_code == 409, (a, b, r.text)

    depth = data.draw(st.integers(min_value=1, max_value=n))
    for i in range(n):
        for direction, step in (("ancestors", parents), ("descendants", children)):
            got = _graph(client, org_a, ids[i], direction, depth)
            want = _reach(i, step, depth)
            assert {x["id"]: x["depth"] for x in got["nodes"]} == {ids[k]: d for k, d in want.items()}
            inside = {ids[k] for k in want}
            want_edges = {(ids[p], ids[c]) for p, c in edges if ids[p] in inside and ids[c] in inside
                          and (want[p] < depth if direction == "descendants" else want[c] < depth)}
            assert {(e["parent_id"], e["child_id"]) for e in got["edges"]} == want_edges


def test_a_chain_of_twenty_generations_with_fan_out(client, org_b):
    h = org_b.headers(Role.technician)
    root = sample(client, org_b, sample_type="glycerol_stock", name="GV3101 stock")
    current = root["id"]
    for generation in range(20):
        r = client.post("/api/v1/samples/derive", json={"parent_ids": [current], "operation": "subculture",
                                                        "count": 2, "step_key": f"passage_{generation}"},
                        headers={**h, "X-Request-ID": str(uuid.uuid4())})
        assert r.status_code == 201, r.text
        kids = r.json()
        assert kids[0]["name"].endswith("subculture 1") and kids[0]["sample_type"] == "glycerol_stock"
        current = kids[0]["id"]
    down = _graph(client, org_b, root["id"], "descendants", 20)
    assert len(down["nodes"]) == 41 and len(down["edges"]) == 40
    assert max(x["depth"] for x in down["nodes"]) == 20
    up = _graph(client, org_b, current, "ancestors", 20)
    assert [x["code"] for x in up["nodes"] if x["depth"] == 20] == [root["code"]]
    assert {e["operation"] for e in up["edges"]} == {"subculture"} and up["edges"][0]["step_key"].startswith("passage")
    assert _graph(client, org_b, current, "ancestors", 3)["nodes"].__len__() == 4
    r = client.get(f"/api/v1/samples/{current}/lineage", params={"depth": 21}, headers=h)
    assert r.status_code == 422
    # Deriving from a consumed sample is refused.
    status(client, org_b, current, "consumed", "used up")
    r = client.post("/api/v1/samples/derive", json={"parent_ids": [current], "operation": "aliquot", "count": 1},
                    headers=h)
    assert r.status_code == 422 and "is consumed" in r.text


def test_a_retried_derivation_makes_children_once(client, org_b):
    parent = sample(client, org_b)
    headers = {**org_b.headers(Role.technician), "X-Request-ID": f"derive-{uuid.uuid4()}"}
    body = {"parent_ids": [parent["id"]], "operation": "aliquot", "count": 3}
    first = client.post("/api/v1/samples/derive", json=body, headers=headers)
    again = client.post("/api/v1/samples/derive", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert [x["id"] for x in first.json()] == [x["id"] for x in again.json()]
    detail = client.get(f"/api/v1/samples/{parent['id']}", headers=headers).json()
    assert sorted(detail["children"]) == sorted(x["id"] for x in first.json())
