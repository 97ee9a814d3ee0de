"""Files on S3 (core/storage.py S3ObjectStore): a key is written once. A second put of a key, even one that
skipped the existence check as a racing writer would, leaves the first bytes in place: the server refuses it
(If-None-Match: *)."""

from __future__ import annotations

import io
import os
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.storage import ObjectMissing, S3ObjectStore, open_store
from tests.s3.s3kit import BUCKET, S3


def _store(s3: S3) -> S3ObjectStore:
    config = s3.settings(objects_uri=f"s3://{BUCKET}/objects-{uuid.uuid4().hex[:8]}")
    store = open_store(config.resolved_objects_uri, config.resolved_objects_storage_options)
    assert isinstance(store, S3ObjectStore)
    return store


def test_a_key_is_written_once_and_read_back(s3: S3):
    store = _store(s3)
    assert not store.exists("evidence/org-1/abc")
    assert store.put_once("evidence/org-1/abc", io.BytesIO(b"first"))
    assert not store.put_once("evidence/org-1/abc", io.BytesIO(b"second"))
    assert store.exists("evidence/org-1/abc")
    with store.open("evidence/org-1/abc") as fh:
        assert fh.read() == b"first"
    with pytest.raises(ObjectMissing):
        store.open("evidence/org-1/nothing-here")
    with pytest.raises(ValueError, match="invalid object key"):
        store.put_once("../escape", io.BytesIO(b"x"))


def test_the_server_refuses_an_overwrite_that_skipped_the_existence_check(s3: S3, monkeypatch: pytest.MonkeyPatch):
    store = _store(s3)
    assert store.put_once("reports/r1.pdf", io.BytesIO(b"signed report"))
    monkeypatch.setattr(store, "exists", lambda key: False)  # as a writer that checked just before the first put
    assert not store.put_once("reports/r1.pdf", io.BytesIO(b"forged report"))
    with store.open("reports/r1.pdf") as fh:
        assert fh.read() == b"signed report"


def test_concurrent_puts_of_one_key_store_exactly_one(s3: S3):
    store = _store(s3)
    results: list[tuple[int, bool]] = []
    start = threading.Barrier(6)

    def put(i: int) -> None:
        start.wait()
        results.append((i, store.put_once("evidence/org-2/same", io.BytesIO(f"writer {i}".encode()))))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, stored in results if stored]
    assert len(winners) == 1
    with store.open("evidence/org-2/same") as fh:
        assert fh.read() == f"writer {winners[0]}".encode()


def test_an_unseekable_source_is_stored_whole(s3: S3):
    store = _store(s3)
    read_end, write_end = os.pipe()
    payload = os.urandom(300_000)

    def feed() -> None:
        with os.fdopen(write_end, "wb") as w:
            w.write(payload)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(read_end, "rb") as r:
        writer_done = store.put_once("evidence/org-3/piped", r)
    writer.join()
    assert writer_done
    with store.open("evidence/org-3/piped") as fh:
        assert fh.read() == payload


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.binary(max_size=2048), second=st.binary(max_size=2048))
def test_whatever_the_bytes_the_first_put_wins(s3: S3, first: bytes, second: bytes):
    store = _store(s3)
    assert store.put_once("k", io.BytesIO(first))
    assert not store.put_once("k", io.BytesIO(second))
    with store.open("k") as fh:
        assert fh.read() == first
