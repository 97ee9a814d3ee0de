"""Verifying an auditor's package offline: the archive and a public key the verifier trusts, nothing else.

Nothing in the archive is taken on its word. The manifest's signature is checked with the given key; every file's
bytes against the manifest's hash; the checkpoint's signature with the given key (its key id must be that key's);
each entry's leaf hash is recomputed from its body bytes, seq and org and its inclusion proof checked against the
root the checkpoint signed (RFC 9162 §2.1.3.2); each evidence hash must appear in a proven entry, and each included
file must hash to it. The key in the archive (public-key.pem) is ignored but for saying whether it is the same.

What a package proves: every entry in it is, byte for byte, in the log the checkpoint signed, at its seq. What it
cannot prove offline: that no other entry matched the filters (the server's signed manifest attests the selection).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.audit import merkle
from domain.audit.checkpoints import Checkpoint, key_id_of

PACKAGE_TYPE = "flasktrack-audit-package/1"
MAX_MEMBER_BYTES = 1 << 30


@dataclass
class PackageResult:
    entries: int = 0
    tree_size: int = 0
    org_id: str = ""
    filters: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (f"ok: {self.entries} entries of org {self.org_id} proven in the log of {self.tree_size} entries "
                    f"signed by the given key; filters {orjson.dumps(self.filters).decode()}")
        return f"REJECTED: {self.problems[0]}"


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        k = serialization.load_pem_public_key(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(k, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return k


def _parse_ts(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def verify_package(archive: str | Path | IO[bytes], key: Ed25519PublicKey,
                   witness: Checkpoint | None = None) -> PackageResult:
    """Check the package with `key`; with `witness` (an earlier signed checkpoint the verifier kept), also that the
    package's checkpoint extends it (RFC 9162 consistency proof in `consistency.json`)."""
    res = PackageResult()
    try:
        with zipfile.ZipFile(archive) as z:
            files = {}
            for info in z.infolist():
                if info.file_size > MAX_MEMBER_BYTES or info.filename in files:
                    res.problems.append(f"archive member {info.filename!r} is too large or repeated")
                    return res
                files[info.filename] = z.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, OSError) and getattr(exc, "filename", None):
            raise
        res.problems.append(f"not a readable zip archive ({exc})")
        return res
    except Exception as exc:  # noqa: BLE001 - a damaged archive (zlib errors and the like) is a rejection
        res.problems.append(f"not a readable zip archive ({type(exc).__name__}: {exc})")
        return res
    cp = _verify(files, key, res)
    if witness is not None and cp is not None:
        _check_witness(files, key, cp, witness, res)
    return res


def _check_witness(files: dict[str, bytes], key: Ed25519PublicKey, cp: Checkpoint, witness: Checkpoint,
                   res: PackageResult) -> None:
    bad = res.problems
    kid = key_id_of(key)
    problem = witness.check_signature({kid: key})
    if problem:
        bad.append(f"witness: {problem}")
        return
    if witness.org_id != cp.org_id:
        bad.append(f"the witness is for org {witness.org_id}, the package for {cp.org_id}")
        return
    if witness.root_hash is None:
        bad.append("the witness signs no Merkle tree head (a checkpoint from before the tree)")
        return
    if witness.size > cp.size:
        bad.append(f"the package's checkpoint ({cp.size} entries) is older than the witness ({witness.size}): the "
                   f"log shrank, or this is an old package")
        return
    assert cp.root_hash is not None
    if witness.size == cp.size:
        if witness.root_hash != cp.root_hash:
            bad.append(f"the witness and the package's checkpoint sign different trees of {cp.size} entries")
        return
    try:
        c = orjson.loads(files["consistency.json"])
        proof = [bytes.fromhex(h) for h in c["proof"]]
        sizes = (int(c["first_size"]), int(c["second_size"]))
    except KeyError:
        bad.append(f"the package carries no consistency proof (ask for it with consistent_with={witness.size})")
        return
    except (ValueError, TypeError, orjson.JSONDecodeError):
        bad.append("consistency.json is not readable")
        return
    if sizes != (witness.size, cp.size):
        bad.append(f"the consistency proof runs from {sizes[0]} to {sizes[1]}, not from the witness's {witness.size} "
                   f"to {cp.size}")
    elif not merkle.verify_consistency(witness.size, cp.size, witness.root_hash, cp.root_hash, proof):
        bad.append(f"the package's checkpoint ({cp.size} entries) does not extend the witness ({witness.size}): "
                   f"the log was rewritten since the witness was signed")


def _verify(files: dict[str, bytes], key: Ed25519PublicKey, res: PackageResult) -> Checkpoint | None:
    """The checks below the witness; the package's checkpoint when it holds up this far (problems may follow)."""
    bad = res.problems
    # 1. the manifest, signed by the given key
    manifest_bytes, sig = files.get("manifest.json"), files.get("manifest.sig")
    if manifest_bytes is None or sig is None:
        bad.append("manifest.json or manifest.sig is missing")
        return None
    try:
        key.verify(base64.b64decode(sig.strip(), validate=True), manifest_bytes)
    except (InvalidSignature, binascii.Error, ValueError):
        bad.append("the manifest's signature does not verify with the given public key")
        return None
    try:
        manifest = orjson.loads(manifest_bytes)
        assert isinstance(manifest, dict) and manifest.get("type") == PACKAGE_TYPE
        org = str(uuid.UUID(manifest["org_id"]))
        listed: dict[str, str] = manifest["files"]
        assert isinstance(listed, dict)
    except (orjson.JSONDecodeError, AssertionError, KeyError, ValueError, TypeError, AttributeError):
        bad.append("manifest.json is not an audit package manifest")
        return None
    res.org_id, res.filters = org, manifest.get("filters") or {}
    # 2. every file as the manifest lists it, and nothing else
    for name, digest in sorted(listed.items()):
        data = files.get(name)
        if data is None:
            bad.append(f"{name} is listed in the manifest but missing from the archive")
        elif hashlib.sha256(data).hexdigest() != digest:
            bad.append(f"{name} does not match its SHA-256 in the manifest (changed after signing)")
    extra = sorted(set(files) - set(listed) - {"manifest.json", "manifest.sig"})
    if extra:
        bad.append(f"file(s) not in the manifest: {', '.join(extra[:5])}")
    if bad:
        return None
    # 3. the checkpoint, signed by the given key over a tree head
    try:
        cp = Checkpoint.from_json(files["checkpoint.json"])
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError):
        bad.append("checkpoint.json is not a signed audit checkpoint")
        return None
    kid = key_id_of(key)
    if cp.key_id != kid:
        bad.append(f"the checkpoint is signed with key {cp.key_id}, not the given key {kid}")
        return None
    problem = cp.check_signature({kid: key})
    if problem:
        bad.append(problem)
        return None
    if cp.root_hash is None:
        bad.append("the checkpoint signs no Merkle tree head: nothing to prove entries against")
        return None
    if cp.org_id != org:
        bad.append(f"the checkpoint is for org {cp.org_id}, the package for {org}")
        return None
    fp = (manifest.get("public_key") or {}).get("key_id")
    if fp != kid:
        bad.append(f"the manifest names key {fp}, not the given key {kid}")
        return None
    res.tree_size = cp.size
    # 4. every entry: its leaf from its own bytes, its proof to the signed root
    try:
        entries = [orjson.loads(x) for x in files["entries.jsonl"].splitlines() if x.strip()]
        proofs: dict[int, list[bytes]] = {}
        for line in files["proofs.jsonl"].splitlines():
            if not line.strip():
                continue
            p = orjson.loads(line)
            seq = int(p["seq"])
            if int(p["leaf_index"]) != seq - 1 or int(p["tree_size"]) != cp.size or seq in proofs:
                bad.append(f"the proof of entry {seq} is not for leaf {seq - 1} of the signed tree of {cp.size}")
                return None
            proofs[seq] = [bytes.fromhex(h) for h in p["proof"]]
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError):
        bad.append("entries.jsonl or proofs.jsonl is not readable")
        return None
    org_u = uuid.UUID(org)
    bodies: list[bytes] = []
    since, until = _parse_ts(res.filters.get("since")), _parse_ts(res.filters.get("until"))
    last = 0
    for e in entries:
        try:
            seq, body = int(e["seq"]), str(e["body"]).encode("utf-8")
            parsed = orjson.loads(body)
            body_org = parsed["org_id"]
            occurred = _parse_ts(parsed["occurred_at"])
        except (KeyError, ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
            bad.append(f"an entry after seq {last} is not an audit entry")
            return None
        if seq <= last:
            bad.append(f"entry {seq} is out of order or repeated")
        last = seq
        if body_org != org:
            bad.append(f"entry {seq} names org {body_org}, not {org}")
        if not 1 <= seq <= cp.size:
            bad.append(f"entry {seq} lies outside the signed tree of {cp.size} entries")
            continue
        proof = proofs.get(seq)
        if proof is None or not merkle.verify_inclusion(merkle.entry_leaf(seq, org_u, body), seq - 1, cp.size,
                                                        proof, cp.root_hash):
            bad.append(f"entry {seq} is not proven in the signed tree (entry or proof changed)")
        if (since and (occurred is None or occurred < since)) or (until and (occurred is None or occurred >= until)):
            bad.append(f"entry {seq} lies outside the package's period")
        bodies.append(body)
    if set(proofs) - {int(e["seq"]) for e in entries}:
        bad.append("proofs.jsonl has proofs for entries the package does not hold")
    res.entries = len(entries)
    if len(entries) != manifest.get("entries"):
        bad.append(f"the manifest says {manifest.get('entries')} entries, the package holds {len(entries)}")
    # 5. evidence: each hash vouched for by a proven entry; included bytes hash to it
    try:
        evidence = orjson.loads(files["evidence/manifest.json"])["files"]
        for f in evidence:
            sha = str(f["sha256"])
            if len(sha) != 64 or not any(sha.encode() in b for b in bodies):
                bad.append(f"evidence file {f.get('id')}: its hash {sha[:16]}… is named by no entry in the package")
            if f.get("included"):
                data = files.get(f"evidence/{sha}")
                if data is None or hashlib.sha256(data).hexdigest() != sha:
                    bad.append(f"evidence file {f.get('id')}: the bytes included do not hash to {sha[:16]}…")
    except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError):
        bad.append("evidence/manifest.json is not readable")
    return cp
