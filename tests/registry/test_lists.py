"""Lists: search over codes and names, and cursor pages that return every record exactly once."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from domain.roles import Role
from tests.registry.support import BASE, make
from tests.support import Org, make_org

NAMES = ["pCAMBIA1300", "pCAMBIA2300", "pGreenII 0029", "pBIN19", "pUC19", "pET-28a", "pBluescript SK",
         "pCAMBIA1301-GUS", "pK7WG2", "pH7WG2", "pB7WG2", "pMDC32", "pMDC43", "pEarleyGate 100", "pGWB5",
         "pGWB2", "pORE O1", "pPZP200", "pRI 201-AN", "pSoup", "pCambia0390", "pTRV1", "pTRV2"]


@pytest.fixture(scope="module")
def plasmids(client, owner) -> tuple[Org, list[dict]]:
    """An organization with 23 plasmids (one archived), five of them created at the very same instant."""
    org = make_org(owner, client)
    made = [make(client, org, "plasmid", n, attributes={"backbone": "b"}) for n in NAMES]
    same = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    with owner.begin(org.id) as s:  # as an import would: several records in one instant; order falls to the id
        s.execute(text("UPDATE registry_items SET created_at = :t WHERE id = ANY(:ids)"),
                  {"t": same, "ids": [m["id"] for m in made[5:10]]})
    archived = made[-1]
    r = client.post(f"{BASE}/plasmid/{archived['id']}/archive", json={"reason": "lost"},
                    headers=org.headers(Role.admin))
    assert r.status_code == 200
    return org, made


def _pages(client, org: Org, limit: int, **params) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        r = client.get(f"{BASE}/plasmid", params=query, headers=org.headers(Role.technician))
        assert r.status_code == 200, r.text
        pages.append([i["id"] for i in r.json()["items"]])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(min_value=1, max_value=30),
       q=st.sampled_from([None, "pcambia", "pGWB", "PL-0000", "p", "pTRV2", "pMDC 3", "zzz"]),
       archived=st.sampled_from(["exclude", "include", "only"]))
def test_paging_through_any_list_returns_each_record_exactly_once(client, plasmids, limit, q, archived):
    org, _ = plasmids
    params = {"archived": archived, **({"q": q} if q else {})}
    everything = client.get(f"{BASE}/plasmid", params={**params, "limit": 500},
                            headers=org.headers(Role.technician)).json()
    assert everything["next_cursor"] is None
    whole = [i["id"] for i in everything["items"]]
    pages = _pages(client, org, limit, **params)
    flat = [i for p in pages for i in p]
    assert flat == whole  # every record once, in the same order
    assert all(len(p) == limit for p in pages[:-1])


def test_search_finds_names_and_codes_by_word_prefixes(client, plasmids):
    org, made = plasmids
    h = org.headers(Role.technician)

    def names(q: str, **extra) -> set[str]:
        r = client.get(f"{BASE}/plasmid", params={"q": q, "limit": 500, **extra}, headers=h)
        assert r.status_code == 200, r.text
        return {i["name"] for i in r.json()["items"]}

    assert names("pcambia") == {"pCAMBIA1300", "pCAMBIA2300", "pCAMBIA1301-GUS", "pCambia0390"}
    assert names("pCAMBIA1301 gus") == {"pCAMBIA1301-GUS"}
    assert names(made[3]["code"]) == {"pBIN19"}
    assert names(made[3]["code"].lower().replace("-", " ")) == {"pBIN19"}
    assert names("pTRV") == {"pTRV1"}  # pTRV2 is archived
    assert names("pTRV", archived="include") == {"pTRV1", "pTRV2"}
    assert names("---") == {i["name"] for i in made[:-1]}  # nothing to search for: everything
    r = client.get(f"{BASE}/plasmid", params={"cursor": "not a cursor"}, headers=h)
    assert r.status_code == 422
    r = client.get(f"{BASE}/plasmid", params={"cursor": "AAAA"}, headers=h)
    assert r.status_code == 422 and "cursor" in r.text
