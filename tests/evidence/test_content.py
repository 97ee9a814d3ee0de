"""What a file is, read from its bytes; its name made safe; the spool's hash and limit."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import Invalid
from domain.evidence.content import (
    HEAD_BYTES,
    MAX_FILENAME,
    Spool,
    TooLarge,
    UnsupportedType,
    content_type_of,
    safe_filename,
)
from tests.evidence.support import CSV, JPEG, PDF, png

MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"%PDF", b"II*\x00", b"MM\x00*", b"RIFF")


def _spooled(data: bytes, chunk: int = 7):  # type: ignore[no-untyped-def]
    spool = Spool(1 << 20)
    for i in range(0, len(data), chunk):
        spool.write(data[i:i + chunk])
    return spool, spool.finish()


@given(st.binary(min_size=1, max_size=2000), st.integers(min_value=1, max_value=300))
def test_the_hash_and_size_are_those_of_the_bytes_however_they_arrive(data: bytes, chunk: int) -> None:
    spool, facts = _spooled(data, chunk)
    with spool:
        assert facts.sha256 == hashlib.sha256(data).hexdigest() and facts.size == len(data)
        assert facts.head == data[:HEAD_BYTES] and spool.file.read() == data


@given(st.binary(min_size=1, max_size=400).filter(lambda b: not b.startswith(MAGIC)))
def test_bytes_that_are_neither_a_known_type_nor_text_are_refused(data: bytes) -> None:
    spool, facts = _spooled(data)
    with spool:
        if facts.text:  # UTF-8 without control characters: text, whatever the name
            assert content_type_of(facts, None, "x.jpg") == "text/plain"
        else:
            with pytest.raises(UnsupportedType):
                content_type_of(facts, "image/jpeg", "photo.jpg")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=500))
def test_utf8_text_is_text(text: str) -> None:
    spool, facts = _spooled(text.encode())
    with spool:
        assert facts.text
        assert content_type_of(facts, "text/csv", "values.csv") == "text/csv"


def test_a_multibyte_character_cut_at_the_end_is_not_text() -> None:
    spool, facts = _spooled("od600 µ".encode()[:-1])
    with spool:
        assert not facts.text


@pytest.mark.parametrize(("data", "declared", "expected"), [
    (JPEG, "image/jpg", "image/jpeg"), (png(1), "IMAGE/PNG; x=1", "image/png"), (PDF, None, "application/pdf"),
    (CSV, "binary/octet-stream", "text/plain"),
])
def test_the_declared_type_may_say_it_in_other_words(data: bytes, declared: str | None, expected: str) -> None:
    spool, facts = _spooled(data)
    with spool:
        assert content_type_of(facts, declared, "file") == expected


def test_an_empty_file_is_invalid_and_a_large_one_stops_at_the_limit() -> None:
    spool, facts = _spooled(b"")
    with spool, pytest.raises(Invalid):
        content_type_of(facts, None, "empty")
    with Spool(10) as small:
        small.write(b"0123456789")
        with pytest.raises(TooLarge):
            small.write(b"x")


@given(st.text(max_size=600))
def test_a_kept_file_name_is_one_safe_segment(raw: str) -> None:
    name = safe_filename(raw)
    assert 1 <= len(name) <= MAX_FILENAME
    assert not any(c in name for c in '/\\"') and all(c.isprintable() for c in name)
    assert name == safe_filename(name)  # already safe: kept as it is


def test_a_long_name_keeps_its_extension() -> None:
    assert safe_filename("a" * 300 + ".jpeg").endswith("a.jpeg") and len(safe_filename("a" * 300 + ".jpeg")) == 200
    assert safe_filename("C:\\Users\\lab\\IMG_1.HEIC") == "IMG_1.HEIC" and safe_filename("../..") == "evidence"
