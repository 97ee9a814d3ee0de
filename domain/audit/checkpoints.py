"""Signed checkpoints: Ed25519 over (org, size, head hash), kept outside the database.

A checkpoint vouches that the org's chain had `size` entries ending in `head_hash`.
Anyone able to rewrite the table can recompute plain hashes; they cannot forge the
signature, so a rewritten suffix, a truncation or a restarted chain disagrees with
a checkpoint.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import SecretStr

from core.signing import ed25519_from_secret
from domain.canonical import canonical_bytes, format_ts, parse_ts

CHECKPOINT_TYPE = "flasktrack-audit-checkpoint/1"  # chain head only (signed before the Merkle tree)
CHECKPOINT_TYPE_V2 = "flasktrack-audit-checkpoint/2"  # chain head and Merkle tree head (size, root)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    key_id: str

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_or_create_signing_key(path: Path) -> SigningKey:
    """The org-independent checkpoint key; created (0600) on first use, its public half beside it."""
    if path.exists():
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 private key")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    key = SigningKey(private=private, key_id=key_id_of(private.public_key()))
    pub_path = path.parent / f"{key.key_id}.pub.pem"
    if not pub_path.exists():
        pub_path.write_bytes(key.public_pem)
    return key


def load_signing_key(path: Path, secret: SecretStr | None = None) -> SigningKey:
    """The checkpoint key: the configured secret (setting `signing_key`) when there is one, else the file at
    `path`, created on first use. A key from a secret still leaves its public half beside `path`, where
    `audit verify` looks for trusted keys, when that folder is writable."""
    if secret is None:
        return load_or_create_signing_key(path)
    private = ed25519_from_secret(secret.get_secret_value())
    key = SigningKey(private=private, key_id=key_id_of(private.public_key()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pub_path = path.parent / f"{key.key_id}.pub.pem"
        if not pub_path.exists():
            pub_path.write_bytes(key.public_pem)
    except OSError:
        pass  # a read-only host: the API still serves the public key (GET /api/v1/audit/public-key)
    return key


def load_public_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """Trusted verification keys by key id (old keys stay trusted after rotation)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for p in paths:
        candidates = sorted(p.glob("*.pub.pem")) if p.is_dir() else [p]
        for c in candidates:
            try:
                k = serialization.load_pem_public_key(c.read_bytes())
            except ValueError as exc:  # not PEM, or not a public key: say which file
                raise ValueError(f"{c}: not a PEM public key ({exc})") from None
            if not isinstance(k, Ed25519PublicKey):
                raise ValueError(f"{c}: not an Ed25519 public key")
            keys[key_id_of(k)] = k
    return keys


@dataclass(frozen=True)
class Checkpoint:
    org_id: str
    size: int
    head_hash: bytes
    issued_at: dt.datetime
    key_id: str
    signature: bytes
    root_hash: bytes | None = None  # the Merkle tree head over entries 1..size (None: a /1 checkpoint)

    def signed_bytes(self) -> bytes:
        return signed_payload(self.org_id, self.size, self.head_hash, self.issued_at, self.key_id, self.root_hash)

    def to_json(self) -> bytes:
        d: dict[str, Any] = {
            "type": CHECKPOINT_TYPE if self.root_hash is None else CHECKPOINT_TYPE_V2,
            "org_id": self.org_id,
            "size": self.size,
            "head_hash": self.head_hash.hex(),
            "issued_at": format_ts(self.issued_at),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }
        if self.root_hash is not None:
            d["root_hash"] = self.root_hash.hex()
        return orjson.dumps(d, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes | str) -> Checkpoint:
        d: dict[str, Any] = orjson.loads(data)
        if not isinstance(d, dict) or d.get("type") not in (CHECKPOINT_TYPE, CHECKPOINT_TYPE_V2):
            raise ValueError("not a Flask Track audit checkpoint")
        root = bytes.fromhex(d["root_hash"]) if d["type"] == CHECKPOINT_TYPE_V2 else None
        if root is not None and len(root) != 32:
            raise ValueError("checkpoint root_hash is not a SHA-256 hash")
        return cls(
            org_id=d["org_id"],
            size=int(d["size"]),
            head_hash=bytes.fromhex(d["head_hash"]),
            issued_at=parse_ts(d["issued_at"]),
            key_id=d["key_id"],
            signature=base64.b64decode(d["signature"], validate=True),
            root_hash=root,
        )

    def check_signature(self, keys: dict[str, Ed25519PublicKey]) -> str | None:
        """None when valid, else what is wrong."""
        key = keys.get(self.key_id)
        if key is None:
            return f"checkpoint of size {self.size} is signed with unknown key {self.key_id}"
        try:
            key.verify(self.signature, self.signed_bytes())
        except InvalidSignature:
            return f"checkpoint of size {self.size} has an invalid signature"
        return None


def signed_payload(org_id: str, size: int, head_hash: bytes, issued_at: dt.datetime, key_id: str,
                   root_hash: bytes | None = None) -> bytes:
    """What the key signs. A /2 checkpoint adds the Merkle tree head (its size is `size`); the type is signed
    too, so a /2 checkpoint cannot be passed off as a /1 one without its root, nor the reverse."""
    d: dict[str, Any] = {
        "type": CHECKPOINT_TYPE if root_hash is None else CHECKPOINT_TYPE_V2,
        "org_id": org_id,
        "size": size,
        "head_hash": head_hash.hex(),
        "issued_at": format_ts(issued_at),
        "key_id": key_id,
    }
    if root_hash is not None:
        d["root_hash"] = root_hash.hex()
    return canonical_bytes(d)


def sign(key: SigningKey, org_id: str, size: int, head_hash: bytes, issued_at: dt.datetime,
         root_hash: bytes | None = None) -> Checkpoint:
    sig = key.private.sign(signed_payload(org_id, size, head_hash, issued_at, key.key_id, root_hash))
    return Checkpoint(org_id, size, head_hash, issued_at, key.key_id, sig, root_hash)


class CheckpointStore:
    """Checkpoint files under `<root>/<org_id>/<size>-<issued>.json`, written once, never rewritten."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, cp: Checkpoint) -> Path:
        d = self.root / cp.org_id
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{cp.size:012d}-{cp.issued_at.strftime('%Y%m%dT%H%M%S%fZ')}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(cp.to_json())
        os.replace(tmp, path)
        return path

    def list(self, org_id: str) -> list[tuple[Path, Checkpoint | None]]:
        d = self.root / org_id
        out: list[tuple[Path, Checkpoint | None]] = []
        if not d.is_dir():
            return out
        for p in sorted(d.glob("*.json")):
            try:
                out.append((p, Checkpoint.from_json(p.read_bytes())))
            except (ValueError, KeyError, orjson.JSONDecodeError):
                out.append((p, None))
        return out
