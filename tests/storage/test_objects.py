"""The object store is write-once: a key's first bytes stay; concurrent puts of one key store one object."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.storage import LocalObjectStore, ObjectMissing, ObjectStore, check_key


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return LocalObjectStore(tmp_path / "objects")


def test_a_key_is_written_once(store: ObjectStore) -> None:
    assert store.put_once("evidence/org/abc", io.BytesIO(b"first")) is True
    assert store.put_once("evidence/org/abc", io.BytesIO(b"second")) is False
    with store.open("evidence/org/abc") as f:
        assert f.read() == b"first"
    assert store.exists("evidence/org/abc")


def test_a_missing_key_is_reported(store: ObjectStore) -> None:
    assert not store.exists("evidence/none")
    with pytest.raises(ObjectMissing):
        store.open("evidence/none")


def test_concurrent_puts_store_one_object(store: ObjectStore) -> None:
    results: list[bool] = []
    payloads = [bytes([i]) * 100_000 for i in range(8)]

    def put(data: bytes) -> None:
        results.append(store.put_once("k/same", io.BytesIO(data)))

    threads = [threading.Thread(target=put, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    with store.open("k/same") as f:
        assert f.read() in payloads


@given(st.sampled_from(["../x", "/abs", "a/../b", ".hidden", "a//b", "a/", "", "a b", "x" * 600]))
def test_keys_cannot_leave_the_store(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)
