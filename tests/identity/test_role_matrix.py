"""Every endpoint against every role: the permission matrix in domain/roles.py is what the API enforces."""

from __future__ import annotations

import uuid

from fastapi.routing import APIRoute
from sqlalchemy import text

from domain.roles import PERMISSIONS, Permission, Role

PUBLIC = {("POST", "/api/v1/auth/login"), ("GET", "/healthz")}
AUTHENTICATED_ONLY = {("POST", "/api/v1/auth/logout")}


def _permission_of(route: APIRoute) -> Permission | None:
    stack = list(route.dependant.dependencies)
    while stack:
        d = stack.pop()
        perm = getattr(d.call, "permission", None)
        if perm is not None:
            return perm
        stack.extend(d.dependencies)
    return None


def _flatten(routes):
    for r in routes:
        inner = getattr(r, "original_router", None)  # FastAPI ≥ 0.160 wraps included routers
        if inner is not None:
            yield from _flatten(inner.routes)
        else:
            yield r


def _routes(app):
    for r in _flatten(app.routes):
        if isinstance(r, APIRoute) and r.path.startswith(("/api/", "/healthz")):
            for m in r.methods:
                yield m, r


def _fill(path: str) -> str:
    out = path
    while "{" in out:
        a, b = out.index("{"), out.index("}")
        out = out[:a] + str(uuid.uuid4()) + out[b + 1:]
    return out


def test_every_api_route_declares_a_permission(client):
    undeclared = [(m, r.path) for m, r in _routes(client.app)
                  if _permission_of(r) is None and (m, r.path) not in PUBLIC | AUTHENTICATED_ONLY]
    assert not undeclared, f"routes without a permission: {undeclared}"


def test_role_by_endpoint_matrix(client, org_a, owner):
    checked = 0
    for method, route in sorted(_routes(client.app), key=lambda x: (x[1].path, x[0])):
        perm = _permission_of(route)
        if perm is None or route.path.endswith("/auth/logout"):
            continue
        path = _fill(route.path)
        for role in Role:
            r = client.request(method, path, headers=org_a.headers(role), json={})
            denied = r.status_code == 403 and perm.value in r.json().get("detail", "")
            assert denied == (role not in PERMISSIONS[perm]), (method, route.path, role, r.status_code, r.text[:200])
            checked += 1
    assert checked >= len(Role) * 10
    # Each refusal is on record in the caller's org.
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_a.id})
        denials = s.execute(text("SELECT count(*) FROM audit_log WHERE org_id = :o AND action = 'deny'"),
                            {"o": org_a.id}).scalar_one()
    expected = sum(1 for m, rt in _routes(client.app) if (p := _permission_of(rt)) is not None
                   and not rt.path.endswith("/auth/logout") for role in Role if role not in PERMISSIONS[p])
    assert denials >= expected
