"""The documented API is the API: schemathesis generates requests for every operation in /openapi.json (valid
and invalid, NUL and other control characters included) with an admin's token and checks each answer: never a
5xx, a documented status, a documented content type, a body that fits its documented schema, a body the
schema allows accepted, one it forbids refused."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from schemathesis.python import asgi

from api.app import create_app
from api.deps import Platform
from core.db import TenantSessions
from domain.roles import Role
from tests.support import PASSWORD, Org, make_org

# Bounded: with the coverage phase's cases, ten generated per operation keep the whole contract to a few minutes
# on two cores (it grows with every operation); raise it locally to look harder.
EXAMPLES_PER_OPERATION = 10


@pytest.fixture(scope="module")
def contract_org(owner: TenantSessions, client: Any) -> Org:
    return make_org(owner, client)


@pytest.fixture(scope="module")
def contract_app(platform: Platform) -> Iterator[Any]:
    app = create_app(replace(platform), background=False)
    yield app
    asgi.shutdown_lifespans()


def run_schemathesis(app: Any, org: Org, logout_token: str) -> tuple[list[str], dict[str, int]]:
    """Every phase schemathesis has but the stateful one; the distinct failures and the cases per operation."""
    config = SchemathesisConfig.from_dict({
        "headers": dict(org.headers(Role.admin)),
        # Logging out revokes the token it is called with: a session of its own, so the others keep theirs.
        "operations": [
                       # Compliance events, audits and alerts name records that must exist in the organization
                       # (links, owners, evidence, events) and follow a life (a step their state does not allow is
                       # 409); an event's transitions are Updates on its workflow, which with no Temporal worker (as
                       # here) answer 503 saying so, like /healthz. (First: the
                       # first entry an operation matches sets its checks.)
                       {"include-path-regex": "^/api/v1/(events|audits|alerts)",
                        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
                                   "positive_data_acceptance": {"expected-statuses": [
                                       "2xx", "401", "403", "404", "409", "422", "429", "503"]}}},
                       # An evidence upload's file is judged by its bytes (a photo, a PDF, UTF-8 text) and must agree
                       # with the type its part declares; its link target must exist. No schema can say what bytes
                       # are: a schema-valid upload of other bytes is refused 415 (or 422 for a target that is not
                       # there), with the reason. The refusals themselves are tested in tests/evidence.
                       {"include-path-regex": "^/api/v1/evidence$", "include-method-regex": "^POST$",
                        "checks": {"positive_data_acceptance": {"expected-statuses": [
                            "2xx", "401", "403", "404", "409", "413", "415", "422", "429"]}}},
                       {"include-path": "/api/v1/auth/logout",
                        "headers": {"Authorization": f"Bearer {logout_token}"}},
                       # /healthz answers 503 by design while a dependency is down (no worker in this test).
                       {"include-path": "/healthz",
                        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
                                   "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "503"]}}},
                       # A protocol document's meaning (steps that exist, expressions that parse, one key per
                       # step; a version keeping its protocol's key from the path) is more than a JSON Schema can
                       # say: the schema states the top level the compiler requires (key, title, steps), and a
                       # body that has it may still name no valid protocol, answered 422 with every problem's path.
                       # (Path and method in one regex filter: separate `include-path` and `include-method` keys
                       # would each match alone, widening the entry to every operation of that method.)
                       *({"include-path-regex": f"^{re.escape(path)}$", "include-method-regex": f"^{method}$",
                          "checks": {"positive_data_acceptance": {"expected-statuses": [
                              "2xx", "401", "403", "404", "409", "422", "429"]}}}
                         for path, method in (("/api/v1/protocols", "POST"),
                                              ("/api/v1/protocols/{key}/versions", "POST"),
                                              ("/api/v1/protocols/{key}/versions/{version}", "PUT"))),
                       # A registry record's attributes depend on its kind (in the path), its parent and references
                       # must name records of the right kind that exist, its name is unique under its parent, a
                       # change names the revision it was made from, an archive needs a record in use; a CSV file's
                       # columns depend on the kind: refused 409 or 422, naming what is wrong (nothing written).
                       {"include-path-regex": "^/api/v1/registry/", "include-method-regex": "^(POST|PATCH)$",
                        "checks": {"positive_data_acceptance": {"expected-statuses": [
                            "2xx", "401", "403", "404", "409", "422", "429"]}}},
                       # `actor=` takes a member's email: one that no member has is refused 422 (naming the
                       # field) rather than answered with an empty page that reads as "did nothing".
                       {"include-path-regex": "^/api/v1/audit(/export)?$", "include-method-regex": "^GET$",
                        "checks": {"positive_data_acceptance": {"expected-statuses": [
                            "2xx", "401", "403", "404", "422", "429"]}}},
                       # An auditor's package names a run, sample or batch (a UUID the schema allows) that must exist
                       # in the organization (404 otherwise), and its scope decides which other fields it takes
                       # (`period`: since and until, since first; the others: an id): 422 naming what is wrong.
                       {"include-path-regex": "^/api/v1/audit/packages$", "include-method-regex": "^POST$",
                        "checks": {"positive_data_acceptance": {"expected-statuses": [
                            "2xx", "401", "403", "404", "409", "422", "429"]}}},
                       # Material names other records that must exist and be usable in the organization (a storage
                       # location, a batch, a member, parent samples, a run) and lists take only cursors this API
                       # handed out: a request the schema allows may name none, answered 422 naming the field.
                       {"include-path-regex": "^/api/v1/(samples|batches)",
                        "checks": {"positive_data_acceptance": {"expected-statuses": [
                            "2xx", "401", "403", "404", "409", "422", "429"]}}},
                       # Compliance records name others that must exist in the organization (a tag of its
                       # vocabulary, a target of the right kind, a member, a framework, an authorization), a signature
                       # re-enters the right password and is not its recorder's, a key is unique: a request the
                       # schema allows may name none, refused 403, 404, 409 or 422 with the reason.
                       {"include-path-regex": "^/api/v1/(compliance/|runs/[^/]+/compliance-)",
                        "checks": {"positive_data_acceptance": {"expected-statuses": [
                            "2xx", "401", "403", "404", "409", "422", "429"]}}},
                       # A report's SQL is judged by the lake's sandbox (one SELECT over the organization's tables
                       # that exist), its parameters by the definition they belong to, its lifecycle by its status,
                       # its reports and executions must exist: a schema-valid request may name none of that,
                       # answered 404, 409 or 422 with the reason.
                       {"include-path-regex": "^/api/v1/reports",
                        "checks": {"positive_data_acceptance": {"expected-statuses": [
                            "2xx", "401", "403", "404", "409", "422", "429"]}}}],
        "continue-on-failure": True,
        # A body over the size limit is refused before it is read: 413 is a refusal like 422.
        "checks": {"negative_data_rejection": {"expected-statuses": [
            "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]}},
        "seed": 7,
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "allow-x00": True, "codec": "utf-8"},
        "phases": {"stateful": {"enabled": False}},
    })
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    failures: set[str] = set()
    cases: dict[str, int] = {}
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            label = event.recorder.label
            cases[label] = cases.get(label, 0) + len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        f = check.failure_info.failure
                        failures.add(f"{f.operation}: {f.title}: {' / '.join(f.message.splitlines()[:4])}")
                        failures.add(f"  {f.operation}: {check.failure_info.code_sample}"[:600])
        elif isinstance(event, events.NonFatalError) and type(event.value).__name__ == "FailedHealthCheck":
            # Hypothesis found the smallest body of one operation large (free-form documents); the other
            # phases still cover it. A generator's limit, not the API's.
            continue
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.add(f"error: {event}")
    return sorted(failures), cases


def test_every_operation_keeps_its_contract(contract_app: Any, contract_org: Org, client: Any) -> None:
    email = contract_org.users[Role.admin][1]
    login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    failures, cases = run_schemathesis(contract_app, contract_org, login.json()["token"])
    documented = {f"{method.upper()} {path}" for path, operations in contract_app.openapi()["paths"].items()
                  for method in operations}
    assert {label for label, n in cases.items() if n >= 10} == documented, cases
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- the pieces, one by one


def _new_org(owner: TenantSessions, client: Any) -> Org:
    return make_org(owner, client)


def test_error_bodies_name_the_field_and_where_it_is(client: Any, owner: TenantSessions) -> None:
    org = _new_org(owner, client)
    h = org.headers(Role.admin)
    url = f"/api/v1/tasks/{uuid.uuid4()}/complete"

    missing = client.post(url, headers=h)
    assert missing.status_code == 422
    assert missing.json()["errors"] == [{"location": "body", "field": "body", "reason": "a JSON body is required"}]

    malformed = client.post(url, content=b'{"values": {"mass_g": 1,}}',
                            headers={**h, "Content-Type": "application/json"})
    assert malformed.status_code == 422
    [error] = malformed.json()["errors"]
    assert error["location"] == "body" and error["field"] == "body"
    assert error["reason"].startswith("malformed JSON at character 24"), error

    nested = client.post("/api/v1/runs", json={"protocol_key": "p", "subjects": [{"type": "sample", "id": "ok"},
                                                                                 {"type": "flask", "id": "S-1"}]},
                         headers=h)
    assert nested.status_code == 422
    assert {(e["location"], e["field"]) for e in nested.json()["errors"]} == {("body", "subjects[1].type")}

    query = client.get("/api/v1/audit", params={"limit": 0}, headers=h)
    assert [(e["location"], e["field"]) for e in query.json()["errors"]] == [("query", "limit")]

    # Every kind of refusal has the one shape, documented as such for every operation.
    unknown = client.get(f"/api/v1/runs/{uuid.uuid4()}", headers=h)
    assert unknown.status_code == 404 and set(unknown.json()) == {"detail", "reasons", "errors"}
    too_large = client.post("/api/v1/apikeys", content=b'{"name": "' + b"x" * (2 << 20) + b'"}',
                            headers={**h, "Content-Type": "application/json"})
    assert too_large.status_code == 413 and set(too_large.json()) == {"detail", "reasons", "errors"}
    documented = client.get("/openapi.json").json()
    for path, operations in documented["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/"):
                assert operation["responses"]["422"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"}, (method, path)
    assert "HTTPValidationError" not in documented["components"]["schemas"]


def test_a_wrong_method_is_told_every_method_the_path_serves(client: Any) -> None:
    r = client.put("/api/v1/apikeys")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    assert client.request("PATCH", "/api/v1/protocols/validate").headers["allow"] == "POST"


def test_a_request_id_that_does_not_fit_is_refused_not_replaced(client: Any, owner: TenantSessions) -> None:
    org = _new_org(owner, client)
    h = org.headers(Role.admin)
    keys_before = client.get("/api/v1/apikeys", headers=h).json()
    for bad in ("has spaces", "x" * 129, "ünïcode".encode(), "semi;colon"):
        r = client.post("/api/v1/apikeys", json={"name": "sync", "role": "analyst"},
                        headers={**h, "X-Request-ID": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["errors"][0]["location"] == "header" and r.json()["errors"][0]["field"] == "X-Request-ID"
        assert r.headers["x-request-id"] != (bad.decode() if isinstance(bad, bytes) else bad)
    assert client.get("/api/v1/apikeys", headers=h).json() == keys_before
    # A fitting one is kept and echoed.
    r = client.get("/api/v1/me", headers={**h, "X-Request-ID": "lims-2024.05:42_a-b"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "lims-2024.05:42_a-b"


def test_the_document_declares_how_to_authenticate_and_both_ways_work(client: Any, owner: TenantSessions) -> None:
    org = _new_org(owner, client)
    documented = client.get("/openapi.json").json()
    schemes = documented["components"]["securitySchemes"]
    assert {name: (s["type"], s["scheme"]) for name, s in schemes.items()} == {
        "sessionToken": ("http", "bearer"), "apiKey": ("http", "bearer")}
    assert documented["paths"]["/api/v1/me"]["get"]["security"] == [{"sessionToken": []}, {"apiKey": []}]
    assert "security" not in documented["paths"]["/api/v1/auth/login"]["post"]
    key = client.post("/api/v1/apikeys", json={"name": "docs", "role": "auditor"},
                      headers=org.headers(Role.admin)).json()["key"]
    for token in (org.tokens[Role.auditor], key):
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_interactive_docs_need_no_internet(client: Any, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    references = re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""", r.text)
    references += re.findall(r"""url:\s*["']([^"']+)["']""", r.text)  # Swagger UI's spec URL
    assert references, r.text
    for ref in references:
        assert urlsplit(ref).netloc == "" and not ref.startswith("//"), f"{page} loads {ref} from elsewhere"
        asset = client.get(ref)
        assert asset.status_code == 200 and len(asset.content) > 1000, ref
    assert not re.search(r"https?://", re.sub(r"https?://(www\.)?w3\.org[^\s\"']*", "", r.text)), r.text


def test_a_protocol_document_body_states_what_the_compiler_requires(client: Any) -> None:
    """`{"definition": {}}` is refused for a missing `key`: the documented schema says so, so a client (and the
    schemathesis run) does not take it for a body the operation accepts."""
    documented = client.get("/openapi.json").json()
    operations = [("post", "/api/v1/protocols"), ("post", "/api/v1/protocols/{key}/versions"),
                  ("put", "/api/v1/protocols/{key}/versions/{version}")]
    for method, path in operations:
        body = documented["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.Draft202012Validator({**body, "components": documented["components"]})
        assert not validator.is_valid({"definition": {}}), (method, path)
        assert not validator.is_valid({"definition": {"key": "p", "title": "P"}}), (method, path)
        assert validator.is_valid({"definition": {"key": "p", "title": "P", "steps": []}}), (method, path)
        assert validator.is_valid({"yaml": "key: p"}), (method, path)
    copy = documented["paths"]["/api/v1/protocols/{key}/versions"]["post"]["requestBody"]
    validator = jsonschema_rs.Draft202012Validator({**copy["content"]["application/json"]["schema"],
                                                    "components": documented["components"]})
    assert validator.is_valid({}) and validator.is_valid({"from_version": 1})  # a copy of an existing version
    # Validating takes any document and answers its problems, a missing key among them.
    check = documented["paths"]["/api/v1/protocols/validate"]["post"]["requestBody"]
    validator = jsonschema_rs.Draft202012Validator({**check["content"]["application/json"]["schema"],
                                                    "components": documented["components"]})
    assert validator.is_valid({"definition": {}})


def test_a_json_body_sent_as_another_media_type_is_told_so(client: Any, owner: TenantSessions) -> None:
    """A JSON body labelled `text/plain` answered 422 "Input should be a valid dictionary": 415 naming the media
    type, documented on every operation that reads a body, and nothing is created."""
    org = _new_org(owner, client)
    h = org.headers(Role.admin)
    keys_before = client.get("/api/v1/apikeys", headers=h).json()
    r = client.post("/api/v1/apikeys", content=b'{"name": "sync", "role": "analyst"}',
                    headers={**h, "Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    assert "application/json" in r.json()["detail"] and "text/plain" in r.json()["detail"], r.text
    assert client.get("/api/v1/apikeys", headers=h).json() == keys_before
    login = client.post("/api/v1/auth/login", content=b'{"email": "a@b.c", "password": "x"}',
                        headers={"Content-Type": "text/plain; charset=utf-8"})
    assert login.status_code == 415, login.text
    # JSON with parameters or a +json type still is JSON; a body without Content-Type is read as JSON.
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        ok = client.post("/api/v1/apikeys", content=b'{"name": "sync", "role": "analyst"}',
                         headers={**h, "Content-Type": content_type})
        assert ok.status_code == 201, (content_type, ok.text)
    documented = client.get("/openapi.json").json()
    for path, operations in documented["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert operation["responses"]["415"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"}, (method, path)
