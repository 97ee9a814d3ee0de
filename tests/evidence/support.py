"""Helpers for evidence tests: files of each kind, uploads, the object store's view, samples and batches."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import text

from core.db import TenantSessions
from domain.roles import Role
from tests.support import Org


def png(seed: int = 0) -> bytes:
    """A real 1×1 PNG whose pixel depends on `seed` (different seeds, different bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    pixel = bytes([0, seed % 256, (seed >> 8) % 256, 7])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(pixel)) + chunk(b"IEND", b""))


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256)) + b"\xff\xd9"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
CSV = b"strain,od600\nGV3101,0.45\nAGL1,0.51\n"
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(64)
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(40)


def upload(client: Any, org: Org, data: bytes, filename: str = "photo.png", content_type: str | None = "image/png",
           role: Role = Role.technician, target: dict[str, str] | None = None,
           request_id: str | None = None) -> Any:
    file: tuple[str, bytes] | tuple[str, bytes, str] = (filename, data) if content_type is None else \
        (filename, data, content_type)
    headers = {**org.headers(role), **({"X-Request-ID": request_id} if request_id else {})}
    return client.post("/api/v1/evidence", files={"file": file}, data=target or {}, headers=headers)


def uploaded(client: Any, org: Org, data: bytes, **kwargs: Any) -> dict[str, Any]:
    r = upload(client, org, data, **kwargs)
    assert r.status_code == 201, r.text
    return r.json()


def objects_of(client: Any, org: Org) -> list[Path]:
    """The files the object store holds for the org (its prefix), by name."""
    root = Path(client.app.state.platform.settings.resolved_objects_uri) / "evidence" / str(org.id)
    return sorted(p for p in root.glob("*") if not p.name.startswith(".")) if root.is_dir() else []


def rows_of(owner: TenantSessions, org: Org, table: str = "evidence_files") -> int:
    with owner.begin(None) as s:
        return int(s.execute(text(f"SELECT count(*) FROM {table} WHERE org_id = :o"), {"o": org.id}).scalar_one())


def make_sample(owner: TenantSessions, org: Org, code: str | None = None) -> tuple[uuid.UUID, str]:
    """A sample row as the samples service would leave it: (id, code)."""
    sid, code = uuid.uuid4(), code or f"S-{uuid.uuid4().hex[:6].upper()}"
    now = dt.datetime.now(dt.UTC)
    with owner.begin(org.id) as s:
        s.execute(text("INSERT INTO samples (id, org_id, code, sample_type, name, status, created_at, created_by,"
                       " updated_at) VALUES (:i, :o, :c, 'plate', 'Plate', 'received', :t, 'test', :t)"),
                  {"i": sid, "o": org.id, "c": code, "t": now})
    return sid, code


def make_batch(owner: TenantSessions, org: Org) -> uuid.UUID:
    bid = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    with owner.begin(org.id) as s:
        s.execute(text("INSERT INTO batches (id, org_id, code, batch_type, name, status, created_at, created_by,"
                       " updated_at) VALUES (:i, :o, :c, 'media', 'MS medium', 'open', :t, 'test', :t)"),
                  {"i": bid, "o": org.id, "c": f"B-{bid.hex[:6].upper()}", "t": now})
    return bid


def audit_entries(owner: TenantSessions, org: Org, action: str, entity_id: str) -> list[dict[str, Any]]:
    """The org's sealed audit entries of this action on this evidence file: their bodies."""
    import json

    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org.id})
        rows = s.execute(text("SELECT body FROM audit_log WHERE org_id = :o AND action = :a AND entity_id = :e"
                              " ORDER BY seq"), {"o": org.id, "a": action, "e": entity_id}).all()
    return [json.loads(bytes(r.body)) for r in rows]
