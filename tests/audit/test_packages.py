"""The auditor's package: built over HTTP for a sample (with its evidence), downloaded on record, verified offline
with nothing but the archive and the public key, and rejected after one byte of any entry, proof or checkpoint is
changed; another organization's package is not found; a technician may not make one."""

from __future__ import annotations

import base64
import datetime as dt
import io
import zipfile
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import text

from core.db import TenantSessions
from domain.audit.package_verify import load_public_key, verify_package
from domain.roles import Role
from tests.evidence.support import png, upload
from tests.support import Org, make_org

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab(owner: TenantSessions, client: TestClient) -> Org:
    return make_org(owner, client)


def _sample_with_history(client: TestClient, lab: Org) -> str:
    h = lab.headers(Role.technician)
    s = client.post("/api/v1/samples", json={"sample_type": "plate", "name": "Plate 1"}, headers=h)
    assert s.status_code == 201, s.text
    sid = s.json()["id"]
    r = client.patch(f"/api/v1/samples/{sid}", json={"revision": 1, "reason": "typo", "name": "Plate A1"}, headers=h)
    assert r.status_code == 200, r.text
    for i in range(2):
        up = upload(client, lab, png(100 + i), target={"target_type": "sample", "target_id": sid})
        assert up.status_code == 201, up.text
    return sid


def _package(client: TestClient, lab: Org, body: dict[str, object], role: Role = Role.auditor) -> bytes:
    r = client.post("/api/v1/audit/packages", json=body, headers=lab.headers(role))
    assert r.status_code == 201, r.text
    d = client.get(r.json()["download"], headers=lab.headers(role))
    assert d.status_code == 200 and d.headers["content-type"] == "application/zip", d.text
    return d.content


@pytest.fixture(scope="module")
def public_key(client: TestClient, lab: Org, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pem = client.get("/api/v1/audit/public-key", headers=lab.headers(Role.auditor))
    path = tmp_path_factory.mktemp("key") / "audit.pub.pem"
    path.write_bytes(pem.content)
    return path


@pytest.fixture(scope="module")
def sample_package(client: TestClient, lab: Org) -> tuple[str, bytes]:
    sid = _sample_with_history(client, lab)
    return sid, _package(client, lab, {"scope": "sample", "id": sid, "include_files": True})


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rezip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    return out.getvalue()


def _flip(b: bytes, at: int) -> bytes:
    return b[:at] + bytes([b[at] ^ 0x01]) + b[at + 1:]


def test_a_sample_package_verifies_offline(sample_package, public_key, client, lab, owner):
    sid, data = sample_package
    files = _members(data)
    assert {"manifest.json", "manifest.sig", "checkpoint.json", "entries.jsonl", "proofs.jsonl",
            "evidence/manifest.json", "public-key.pem"} <= set(files)
    entries = [orjson.loads(x) for x in files["entries.jsonl"].splitlines()]
    kinds = [(orjson.loads(e["body"])["entity"]["type"], orjson.loads(e["body"])["action"]) for e in entries]
    assert ("sample", "create") in kinds and ("sample", "update") in kinds
    assert sum(1 for k in kinds if k == ("evidence", "upload")) == 2
    evidence = orjson.loads(files["evidence/manifest.json"])["files"]
    assert len(evidence) == 2 and all(f["included"] for f in evidence)
    assert {f"evidence/{f['sha256']}" for f in evidence} <= set(files)
    manifest = orjson.loads(files["manifest.json"])
    assert manifest["filters"] == {"scope": "sample", "id": sid, "include_files": True}
    r = verify_package(io.BytesIO(data), load_public_key(public_key))
    assert r.ok, r.problems
    assert r.entries == len(entries) == manifest["entries"]
    # creating and downloading it are on record
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": lab.id})
        actions = [r[0] for r in s.execute(text(
            "SELECT action FROM audit_log WHERE org_id = :o AND entity_type = 'audit_package' ORDER BY seq"),
            {"o": lab.id})]
    assert actions[:2] == ["create", "download"]


def test_the_cli_verifies_it_and_rejects_a_changed_byte(sample_package, public_key, tmp_path):
    import subprocess
    import sys

    _, data = sample_package
    good = tmp_path / "package.zip"
    good.write_bytes(data)
    files = _members(data)
    files["entries.jsonl"] = files["entries.jsonl"].replace(b"Plate A1", b"Plate A7", 1)
    changed = tmp_path / "changed.zip"
    changed.write_bytes(_rezip(files))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flasktrack.cli", "audit", "verify-package", *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})

    ok = run(str(good), "--public-key", str(public_key))
    assert ok.returncode == 0 and ok.stdout.startswith("ok: "), ok.stdout + ok.stderr
    bad = run(str(changed), "--public-key", str(public_key))
    assert bad.returncode == 1 and "REJECTED" in bad.stderr, bad.stdout + bad.stderr
    assert run(str(tmp_path / "none.zip"), "--public-key", str(public_key)).returncode == 2


def _resigned(files: dict[str, bytes], key: Ed25519PrivateKey) -> dict[str, bytes]:
    """The package with the manifest's file hashes recomputed after a change and signed again with `key`."""
    import hashlib

    m = orjson.loads(files["manifest.json"])
    m["files"] = {n: hashlib.sha256(b).hexdigest() for n, b in files.items() if n in m["files"]}
    manifest = orjson.dumps(m, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    return {**files, "manifest.json": manifest, "manifest.sig": base64.b64encode(key.sign(manifest))}


@pytest.mark.parametrize("member", ["entries.jsonl", "proofs.jsonl", "checkpoint.json"])
def test_one_changed_byte_of_any_entry_proof_or_checkpoint_is_rejected(sample_package, public_key, member, client):
    """Caught by the manifest's hashes; and, should the manifest be signed again (by a rogue key, or even by the
    real one), by the checks below it: leaf hashes from the entries' bytes, proofs to the signed root, the
    checkpoint's own signature."""
    _, data = sample_package
    key = load_public_key(public_key)
    real = client.app.state.platform.signing_key.private
    rogue = Ed25519PrivateKey.generate()
    files = _members(data)
    original = files[member]
    # bytes that carry meaning: inside the hashes, bodies and numbers, not JSON punctuation alone
    positions = [i for i, c in enumerate(original) if chr(c).isalnum()]
    step = max(1, len(positions) // 40)
    for at in positions[::step]:
        changed = {**files, member: _flip(original, at)}
        assert not verify_package(io.BytesIO(_rezip(changed)), key).ok, (member, at)
        r = verify_package(io.BytesIO(_rezip(_resigned(changed, rogue))), key)
        assert not r.ok and "signature does not verify with the given public key" in r.problems[0], (member, at)
        deep = verify_package(io.BytesIO(_rezip(_resigned(changed, real))), key)
        assert not deep.ok, (member, at, original[max(0, at - 20):at + 20])
        assert "manifest" not in deep.problems[0], deep.problems


def test_a_forged_entry_under_a_validly_signed_manifest_is_not_proven(sample_package, public_key, client):
    """Whoever holds the signing key can sign any manifest: the entries must still lead to the signed root."""
    _, data = sample_package
    files = _members(data)
    entries = files["entries.jsonl"].splitlines()
    forged = orjson.loads(entries[0])
    forged["body"] = forged["body"].replace('"create"', '"delete"', 1)
    files["entries.jsonl"] = b"\n".join([orjson.dumps(forged), *entries[1:]]) + b"\n"
    files = _resigned(files, client.app.state.platform.signing_key.private)
    r = verify_package(io.BytesIO(_rezip(files)), load_public_key(public_key))
    assert not r.ok and r.problems == [f"entry {forged['seq']} is not proven in the signed tree (entry or proof "
                                       f"changed)"], r.problems


def test_a_package_for_a_period_holds_only_entries_of_the_period(client, lab, public_key):
    since = dt.datetime.now(dt.UTC)
    _sample_with_history(client, lab)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    data = _package(client, lab, {"scope": "period", "since": since.isoformat(), "until": until.isoformat()},
                    role=Role.admin)
    r = verify_package(io.BytesIO(data), load_public_key(public_key))
    assert r.ok, r.problems
    assert r.entries >= 4 and r.filters["scope"] == "period"


def test_another_organizations_package_and_sample_are_not_found(client, lab, org_b, sample_package):
    sid, _ = sample_package
    r = client.post("/api/v1/audit/packages", json={"scope": "sample", "id": sid}, headers=org_b.headers(Role.auditor))
    assert r.status_code == 404, r.text
    mine = client.post("/api/v1/audit/packages", json={"scope": "sample", "id": sid}, headers=lab.headers(Role.auditor))
    assert mine.status_code == 201
    other = client.get(mine.json()["download"], headers=org_b.headers(Role.auditor))
    assert other.status_code == 404, other.text


def test_a_technician_may_not_make_or_fetch_a_package(client, lab, sample_package, owner):
    sid, _ = sample_package
    for role in (Role.technician, Role.scientist, Role.analyst):
        r = client.post("/api/v1/audit/packages", json={"scope": "sample", "id": sid}, headers=lab.headers(role))
        assert r.status_code == 403, (role, r.text)
    made = client.post("/api/v1/audit/packages", json={"scope": "sample", "id": sid}, headers=lab.headers(Role.admin))
    assert made.status_code == 201
    assert client.get(made.json()["download"], headers=lab.headers(Role.technician)).status_code == 403
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": lab.id})
        denied = s.execute(text("SELECT count(*) FROM audit_log WHERE org_id = :o AND action = 'deny' "
                                "AND entity_id LIKE '%/audit/packages%'"), {"o": lab.id}).scalar_one()
    assert denied >= 4


@pytest.mark.parametrize("body", [
    {"scope": "sample"},
    {"scope": "sample", "id": "not-a-uuid"},
    {"scope": "period", "since": "2026-01-02T00:00:00Z"},
    {"scope": "period", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    {"scope": "entity", "id": "x"},
    {"scope": "run", "id": "00000000-0000-4000-8000-000000000000", "entity_type": "run"},
    {"scope": "galaxy", "id": "x"},
    {"scope": "sample", "id": "00000000-0000-4000-8000-000000000000", "extra": 1},
])
def test_bad_requests_are_refused_with_a_clear_422(client, lab, body):
    r = client.post("/api/v1/audit/packages", json=body, headers=lab.headers(Role.auditor))
    assert r.status_code == 422, r.text


def test_unknown_targets_are_not_found(client, lab):
    for body in ({"scope": "run", "id": "00000000-0000-4000-8000-000000000000"},
                 {"scope": "batch", "id": "00000000-0000-4000-8000-000000000000"},
                 {"scope": "entity", "entity_type": "sample", "id": "nothing-here"}):
        r = client.post("/api/v1/audit/packages", json=body, headers=lab.headers(Role.auditor))
        assert r.status_code == 404, r.text
    assert client.get("/api/v1/audit/packages/00000000-0000-4000-8000-000000000000",
                      headers=lab.headers(Role.auditor)).status_code == 404
    # a refused request signs nothing: no checkpoint file outside the database without its record inside
    store = client.app.state.platform.checkpoints
    before = len(store.list(str(lab.id)))
    for body in ({"scope": "sample", "id": "00000000-0000-4000-8000-000000000000"},
                 {"scope": "period", "since": "2020-01-01T00:00:00Z", "until": "2030-01-01T00:00:00Z",
                  "consistent_with": 10**9}):
        assert client.post("/api/v1/audit/packages", json=body, headers=lab.headers(Role.auditor)).status_code in (
            404, 422)
    assert len(store.list(str(lab.id))) == before
    v = client.get("/api/v1/audit/verify", headers=lab.headers(Role.auditor)).json()
    assert v["status"] == "ok", v["problems"]


def test_a_later_package_extends_the_checkpoint_an_auditor_kept(sample_package, public_key, client, lab, tmp_path):
    """The auditor keeps the first package's checkpoint (a witness); a later package carries the consistency proof
    from it, so the auditor sees offline that the log only grew. A tree that was rewritten does not extend it."""
    from domain.audit import merkle
    from domain.audit.checkpoints import Checkpoint, sign

    sid, first = sample_package
    witness = Checkpoint.from_json(_members(first)["checkpoint.json"])
    key = load_public_key(public_key)
    client.patch(f"/api/v1/samples/{sid}", json={"revision": 2, "reason": "later", "name": "Plate B1"},
                 headers=lab.headers(Role.technician))
    later = _package(client, lab, {"scope": "sample", "id": sid, "consistent_with": witness.size})
    assert "consistency.json" in _members(later)
    r = verify_package(io.BytesIO(later), key, witness)
    assert r.ok, r.problems
    without = _package(client, lab, {"scope": "sample", "id": sid})
    r = verify_package(io.BytesIO(without), key, witness)
    assert not r.ok and "no consistency proof" in r.problems[0]
    # a witness of another history (same size, another root, signed by the same key: the history the auditor saw)
    real = client.app.state.platform.signing_key
    other = sign(real, witness.org_id, witness.size, witness.head_hash, witness.issued_at,
                 merkle.node_hash(witness.root_hash or b"", b"rewritten"))
    r = verify_package(io.BytesIO(later), key, other)
    assert not r.ok and "does not extend the witness" in r.problems[0], r.problems
    # and the CLI
    import subprocess
    import sys

    (tmp_path / "later.zip").write_bytes(later)
    (tmp_path / "witness.json").write_bytes(witness.to_json())
    (tmp_path / "other.json").write_bytes(other.to_json())
    base = [sys.executable, "-m", "flasktrack.cli", "audit", "verify-package", str(tmp_path / "later.zip"),
            "--public-key", str(public_key), "--witness"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    ok = subprocess.run([*base, str(tmp_path / "witness.json")], capture_output=True, text=True, cwd=ROOT, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([*base, str(tmp_path / "other.json")], capture_output=True, text=True, cwd=ROOT, env=env)
    assert bad.returncode == 1 and "does not extend the witness" in bad.stderr, bad.stdout + bad.stderr
    too_big = client.post("/api/v1/audit/packages", json={"scope": "sample", "id": sid, "consistent_with": 10**9},
                          headers=lab.headers(Role.auditor))
    assert too_big.status_code == 422 and "consistent_with" in too_big.text
