"""Evidence files over the API: stored once by content, typed by content, bounded, linked, listed, downloaded on
record with their hash, and invisible to other organizations."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import Platform
from core.db import TenantSessions
from domain.roles import Role
from tests.evidence.support import (
    CSV,
    ELF,
    JPEG,
    PDF,
    ZIP,
    audit_entries,
    make_batch,
    make_sample,
    objects_of,
    png,
    rows_of,
    upload,
    uploaded,
)
from tests.support import Org, make_org


@pytest.fixture
def org(owner: TenantSessions, client: TestClient) -> Org:
    return make_org(owner, client)


def test_the_same_bytes_uploaded_twice_are_stored_once_and_kept_as_two_uploads(client, owner, org) -> None:
    data = png(1)
    first = uploaded(client, org, data, filename="plate-3.png")
    second = uploaded(client, org, data, filename="plate 3 again.png", role=Role.scientist)
    assert first["id"] != second["id"]
    assert first["sha256"] == second["sha256"] == hashlib.sha256(data).hexdigest()
    assert (first["uploaded_by_display"], second["uploaded_by_display"]) == (
        f"technician of {org.slug}", f"scientist of {org.slug}")
    assert [p.name for p in objects_of(client, org)] == [first["sha256"]]  # one object
    assert rows_of(owner, org) == 2  # two rows
    assert objects_of(client, org)[0].read_bytes() == data
    listed = client.get("/api/v1/evidence", params={"sha256": first["sha256"]}, headers=org.headers(Role.auditor))
    assert {e["id"] for e in listed.json()["items"]} == {first["id"], second["id"]}
    # Other bytes are another object.
    uploaded(client, org, png(2))
    assert len(objects_of(client, org)) == 2


def test_a_retried_upload_is_answered_with_the_first(client, owner, org) -> None:
    rid = f"upload-{uuid.uuid4()}"
    first = upload(client, org, png(3), request_id=rid)
    again = upload(client, org, png(3), request_id=rid)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json() == first.json()
    assert rows_of(owner, org) == 1
    other = upload(client, org, png(4), request_id=rid)  # the same id for other bytes
    assert other.status_code == 409 and rid in other.json()["detail"], other.text
    assert rows_of(owner, org) == 1


@pytest.mark.parametrize(("data", "filename", "declared", "why"), [
    (ELF, "photo.jpg", "image/jpeg", "application/x-executable"),  # a program named as a photo
    (ZIP, "report.pdf", "application/pdf", "application/zip"),
    (b"\x00\x01\x02\x03" * 100, "plate.png", "image/png", "not a type kept as evidence"),
    (png(5), "plate.jpg", "image/jpeg", "sent as image/jpeg but its content is a PNG image"),
    (CSV, "readings.csv", "text/html", "sent as text/html but its content is plain text"),
])
def test_a_file_is_typed_by_its_content_and_refused_when_it_does_not_fit(client, owner, org, data, filename,
                                                                          declared, why) -> None:
    r = upload(client, org, data, filename=filename, content_type=declared)
    assert r.status_code == 415, r.text
    assert why in r.json()["detail"], r.text
    assert rows_of(owner, org) == 0 and objects_of(client, org) == []


@pytest.mark.parametrize(("data", "filename", "declared", "stored_as"), [
    (JPEG, "IMG_0042.JPG", "image/jpeg", "image/jpeg"),
    (JPEG, "IMG_0042.JPG", None, "image/jpeg"),  # no type sent: the content says
    (png(6), "scan.png", "application/octet-stream", "image/png"),
    (PDF, "coa.pdf", "application/pdf", "application/pdf"),
    (b"II*\x00\x08\x00\x00\x00" + bytes(32), "slide.tif", "image/tiff", "image/tiff"),
    (CSV, "readings.csv", "application/vnd.ms-excel", "text/csv"),  # how Windows browsers send a CSV
    (CSV, "readings.txt", "text/plain", "text/plain"),
    (b"BM,od600\nBM1,0.4\n", "bm.csv", "text/csv", "text/csv"),  # text that begins like a bitmap
])
def test_lab_files_are_accepted_with_the_type_of_their_content(client, org, data, filename, declared,
                                                               stored_as) -> None:
    e = uploaded(client, org, data, filename=filename, content_type=declared)
    assert e["content_type"] == stored_as and e["size_bytes"] == len(data) and e["filename"] == filename


def test_an_empty_file_or_a_body_without_a_file_is_refused(client, owner, org) -> None:
    assert upload(client, org, b"", filename="empty.txt", content_type="text/plain").status_code == 422
    r = client.post("/api/v1/evidence", data={"target_type": "task"}, headers=org.headers(Role.technician),
                    files={"other": ("x.txt", b"abc", "text/plain")})
    assert r.status_code == 422, r.text
    r = client.post("/api/v1/evidence", json={"file": "abc"}, headers=org.headers(Role.technician))
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"], r.text
    assert rows_of(owner, org) == 0


@pytest.fixture
def small_limit(platform: Platform) -> Iterator[TestClient]:
    settings = platform.settings.model_copy(update={"evidence_max_bytes": 4096})
    with TestClient(create_app(replace(platform, settings=settings), background=False)) as c:
        yield c


def test_an_oversize_file_is_refused_413_and_nothing_is_stored(small_limit, owner) -> None:
    org = make_org(owner, small_limit)
    at_limit = CSV + b"x" * (4096 - len(CSV))
    assert uploaded(small_limit, org, at_limit, filename="ok.csv", content_type="text/csv")["size_bytes"] == 4096
    before = (rows_of(owner, org), objects_of(small_limit, org))
    over = upload(small_limit, org, at_limit + b"y", filename="big.csv", content_type="text/csv")
    assert over.status_code == 413 and "4096 bytes" in over.json()["detail"], over.text
    # Far larger: refused on its Content-Length, before a byte of it is read.
    huge = upload(small_limit, org, b"z" * (200 << 10), filename="huge.csv", content_type="text/csv")
    assert huge.status_code == 413 and "FLASKTRACK_EVIDENCE_MAX_BYTES" in huge.json()["detail"], huge.text

    # Streamed without a Content-Length: cut off as it passes the limit.
    def chunked() -> Iterator[bytes]:
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.csv\"\r\n\r\n"
        for _ in range(100):
            yield b"a,b\n" * 1024
        yield b"\r\n--b--\r\n"

    streamed = small_limit.post("/api/v1/evidence", content=chunked(), headers={
        **org.headers(Role.technician), "Content-Type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413, streamed.text
    assert (rows_of(owner, org), objects_of(small_limit, org)) == before


def test_an_upload_may_be_larger_than_a_json_body_but_no_other_route_grows(client, org) -> None:
    big = PDF + b"%" * (3 << 20)  # 3 MiB: over the JSON body limit (1 MiB), under the evidence limit (25 MiB)
    assert uploaded(client, org, big, filename="scan.pdf", content_type="application/pdf")["size_bytes"] == len(big)
    r = client.post("/api/v1/apikeys", content=b'{"name": "' + b"x" * (2 << 20) + b'"}',
                    headers={**org.headers(Role.admin), "Content-Type": "application/json"})
    assert r.status_code == 413
    r = client.post("/api/v1/evidence/x", content=b"x" * (2 << 20), headers=org.headers(Role.admin))
    assert r.status_code == 413  # only the upload route itself takes a larger body


def test_a_download_streams_the_bytes_and_is_on_record_with_their_hash(client, owner, org) -> None:
    e = uploaded(client, org, CSV, filename="od600 readings, run 7.csv", content_type="text/csv")
    [up] = audit_entries(owner, org, "upload", e["id"])
    assert up["after"]["sha256"] == e["sha256"] and up["actor"]["display"] == f"technician of {org.slug}"
    r = client.get(f"/api/v1/evidence/{e['id']}/content", headers=org.headers(Role.auditor))
    assert r.status_code == 200 and r.content == CSV
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["etag"] == f'"{e["sha256"]}"' and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].startswith('attachment; filename="od600 readings, run 7.csv"')
    [down] = audit_entries(owner, org, "download", e["id"])
    assert down["after"]["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert down["actor"]["display"] == f"auditor of {org.slug}" and down["entity"]["type"] == "evidence"
    client.get(f"/api/v1/evidence/{e['id']}/content", headers=org.headers(Role.technician))
    assert len(audit_entries(owner, org, "download", e["id"])) == 2  # every download
    # An analyst reads the lake, not the files.
    assert client.get(f"/api/v1/evidence/{e['id']}/content", headers=org.headers(Role.analyst)).status_code == 403


def test_a_file_name_is_kept_safe(client, org) -> None:
    e = uploaded(client, org, CSV, filename="../../etc/passwd", content_type="text/csv")
    assert e["filename"] == "passwd"
    named = uploaded(client, org, png(7), filename="Kolonie ä.png")
    r = client.get(named["content_url"], headers=org.headers(Role.technician))
    assert r.headers["content-disposition"] == ("attachment; filename=\"Kolonie _.png\"; "
                                                "filename*=UTF-8''Kolonie%20%C3%A4.png")


def test_a_file_links_to_a_sample_or_a_batch_of_the_organization(client, owner, org, org_b) -> None:
    sample_id, code = make_sample(owner, org)
    batch_id = make_batch(owner, org)
    by_id = uploaded(client, org, png(8), target={"target_type": "sample", "target_id": str(sample_id)})
    by_code = uploaded(client, org, png(9), target={"target_type": "sample", "target_id": code})
    on_batch = uploaded(client, org, PDF, filename="batch-record.pdf", content_type="application/pdf",
                        target={"target_type": "batch", "target_id": str(batch_id)})
    for e in (by_id, by_code):
        assert [(x["target_type"], x["target_id"]) for x in e["links"]] == [("sample", str(sample_id))]
    assert [(x["target_type"], x["target_id"]) for x in on_batch["links"]] == [("batch", str(batch_id))]
    listed = client.get("/api/v1/evidence", params={"target_type": "sample", "target_id": str(sample_id)},
                        headers=org.headers(Role.scientist)).json()
    assert {e["id"] for e in listed["items"]} == {by_id["id"], by_code["id"]}
    [entry] = audit_entries(owner, org, "upload", on_batch["id"])
    assert entry["after"]["links"] == [{"target_type": "batch", "target_id": str(batch_id), "detail": None}]

    # A target that is not the organization's (or nothing at all) is refused, and nothing is kept.
    other_sample, _ = make_sample(owner, org_b)
    before = rows_of(owner, org)
    for target, field in (({"target_type": "sample", "target_id": str(other_sample)}, "target_id"),
                          ({"target_type": "batch", "target_id": str(uuid.uuid4())}, "target_id"),
                          ({"target_type": "task", "target_id": str(uuid.uuid4())}, "target_id"),
                          ({"target_type": "task", "target_id": "not-a-task"}, "target_id"),
                          ({"target_type": "flask", "target_id": "F-1"}, "target_type"),
                          ({"target_type": "sample"}, "target_id"),
                          ({"target_type": "sample", "target_id": code, "checklist_item": "x"}, "checklist_item"),
                          ({"colour": "red"}, "colour")):
        r = upload(client, org, png(10), target=target)
        assert r.status_code == 422, (target, r.text)
        fields = [e["field"] for e in r.json()["errors"]] + [x.split(":")[0] for x in r.json()["reasons"]]
        assert field in fields, (target, r.text)
    assert rows_of(owner, org) == before


def test_the_list_pages_with_a_cursor_and_filters(client, org) -> None:
    ids = [uploaded(client, org, png(100 + i))["id"] for i in range(3)]
    by_scientist = uploaded(client, org, png(200), role=Role.scientist)
    h = org.headers(Role.lab_manager)
    first = client.get("/api/v1/evidence", params={"limit": 2}, headers=h).json()
    seen, cursor = [e["id"] for e in first["items"]], first["next_cursor"]
    while cursor:
        page = client.get("/api/v1/evidence", params={"limit": 2, "cursor": cursor}, headers=h).json()
        seen, cursor = seen + [e["id"] for e in page["items"]], page["next_cursor"]
    assert seen == [by_scientist["id"], *reversed(ids)]  # newest first, each once
    scientist_id = str(org.users[Role.scientist][0])
    mine = client.get("/api/v1/evidence", params={"uploaded_by": scientist_id}, headers=h).json()["items"]
    assert [e["id"] for e in mine] == [by_scientist["id"]]
    at = first["items"][-1]["uploaded_at"]
    since = client.get("/api/v1/evidence", params={"since": at}, headers=h).json()["items"]
    until = client.get("/api/v1/evidence", params={"until": at}, headers=h).json()["items"]
    assert len(since) + len(until) == 4 and {e["id"] for e in since}.isdisjoint(e["id"] for e in until)
    bad = client.get("/api/v1/evidence", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=h)
    assert bad.status_code == 422


def test_another_organization_sees_nothing_of_it(client, owner, org) -> None:
    org_b = make_org(owner, client)  # its own: the shared second organization's store holds other tests' files
    e = uploaded(client, org, png(11))
    for path in (f"/api/v1/evidence/{e['id']}", f"/api/v1/evidence/{e['id']}/content"):
        assert client.get(path, headers=org_b.headers(Role.admin)).status_code == 404, path
        assert client.get(path, headers=org.headers(Role.admin)).status_code == 200, path
    listed = client.get("/api/v1/evidence", params={"sha256": e["sha256"]}, headers=org_b.headers(Role.admin))
    assert listed.status_code == 200 and listed.json()["items"] == []
    # The same bytes in the other organization are its own upload, under its own prefix.
    theirs = uploaded(client, org_b, png(11))
    assert theirs["sha256"] == e["sha256"] and [p.name for p in objects_of(client, org_b)] == [e["sha256"]]


def _roles_of(client: TestClient, org: Org, method: str, path: str, **kwargs: Any) -> dict[Role, int]:
    return {role: client.request(method, path, headers=org.headers(role), **kwargs).status_code for role in Role}


def test_who_may_upload_and_read(client, org) -> None:
    e = uploaded(client, org, png(12))
    readers = _roles_of(client, org, "GET", f"/api/v1/evidence/{e['id']}")
    assert {r for r, status in readers.items() if status == 200} == {
        Role.owner, Role.admin, Role.lab_manager, Role.scientist, Role.technician, Role.auditor}
    uploads = {role: upload(client, org, png(13), role=role).status_code for role in Role}
    assert {r for r, status in uploads.items() if status == 201} == {
        Role.owner, Role.admin, Role.lab_manager, Role.scientist, Role.technician}
    assert uploads[Role.auditor] == uploads[Role.analyst] == 403
