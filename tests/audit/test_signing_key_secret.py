"""The checkpoint signing key from an environment secret (FLASKTRACK_SIGNING_KEY: PEM or base64): it signs
what the API and the CLI sign, verifiers find its public half, and none of its bytes is ever in a log line,
an error message or a repr."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from pydantic import SecretStr

from core.config import Settings
from domain.audit.checkpoints import key_id_of, load_signing_key
from domain.roles import Role
from tests.support import make_org

ROOT = Path(__file__).resolve().parents[2]


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def _secret_forms(key: Ed25519PrivateKey) -> dict[str, str]:
    """Every way the key could leak as text: PEM, its base64 body, the secret as given, raw bytes."""
    pem = _pem(key)
    body = "".join(pem.strip().splitlines()[1:-1])
    return {"pem": pem, "body": body, "body-middle": body[8:40], "b64-pem": base64.b64encode(pem.encode()).decode(),
            "raw-b64": base64.b64encode(_raw(key)).decode(), "raw-hex": _raw(key).hex()}


def _assert_nowhere(text: str, key: Ed25519PrivateKey) -> None:
    for form, value in _secret_forms(key).items():
        assert value not in text, f"the signing key ({form}) appears in: {text[:500]}"


def test_every_form_of_the_secret_gives_the_same_key_and_none_shows(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = _pem(key)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    for given in (pem, base64.b64encode(pem.encode()).decode(), base64.b64encode(_raw(key)).decode(),
                  base64.b64encode(der).decode()):
        s = Settings(signing_key=SecretStr(given), data_dir=tmp_path)
        loaded = load_signing_key(s.resolved_signing_key_path, s.signing_key)
        assert loaded.key_id == key_id_of(key.public_key())
        _assert_nowhere(repr(s) + str(s) + s.model_dump_json() + repr(loaded), key)
    # Its public half is where `audit verify` looks; the private key is written nowhere.
    assert [p.name for p in (tmp_path / "keys").iterdir()] == [f"{loaded.key_id}.pub.pem"]


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flasktrack.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, timeout=120)


def test_a_wrong_secret_is_one_line_that_repeats_none_of_it(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    rsa_pem = generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    pem = _pem(key)
    wrong = {"truncated PEM": pem[:-40], "base64 of 31 bytes": base64.b64encode(_raw(key)[:31]).decode(),
             "an RSA key": rsa_pem, "not base64": _raw(key).hex() + "!"}
    for what, secret in wrong.items():
        r = _cli("org", "create", "never", "Never", FLASKTRACK_SIGNING_KEY=secret, FLASKTRACK_DATA_DIR=str(tmp_path))
        assert (r.returncode, r.stderr.count("\n")) == (2, 1), (what, r.stderr)
        assert r.stderr.startswith("configuration error: set FLASKTRACK_SIGNING_KEY correctly"), (what, r.stderr)
        _assert_nowhere(r.stdout + r.stderr, key)
        for line in secret.splitlines()[1:-1]:
            assert line not in r.stderr, what


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("form", ["pem", "b64-pem"])
def test_the_api_and_the_cli_sign_with_the_secret_and_log_none_of_it(database_url, owner, client, tmp_path,
                                                                     form) -> None:
    org_a = make_org(owner, client)  # its own: its checkpoints live in this test's data dir only
    key = Ed25519PrivateKey.generate()
    key_id = key_id_of(key.public_key())
    env = {"FLASKTRACK_DATABASE_URL": database_url, "FLASKTRACK_DATA_DIR": str(tmp_path),
           "FLASKTRACK_SIGNING_KEY": _secret_forms(key)[form], "FLASKTRACK_LOG_LEVEL": "DEBUG",
           "FLASKTRACK_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    checkpoint = _cli("audit", "checkpoint", "--org", org_a.slug, **env)
    assert checkpoint.returncode == 0, checkpoint.stderr
    assert f"(key {key_id})" in checkpoint.stdout, checkpoint.stdout
    verify = _cli("audit", "verify", "--org", org_a.slug, **env)  # trusts the public half left in keys/
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert not (tmp_path / "keys" / "audit-ed25519.pem").exists()  # no key file made beside the secret

    port = _free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen([sys.executable, "-m", "flasktrack.cli", "api", "--port", str(port)], cwd=ROOT,
                               env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/healthz", timeout=5)
                    break
                except httpx.TransportError:
                    assert api.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
            public = httpx.get(f"{base}/api/v1/audit/public-key", headers=org_a.headers(Role.technician))
            assert public.headers["X-Key-Id"] == key_id, public.text
            signed = httpx.post(f"{base}/api/v1/audit/checkpoints", headers=org_a.headers(Role.auditor), timeout=30)
            assert signed.status_code == 200 and signed.json()["key_id"] == key_id, signed.text
            verified = httpx.get(f"{base}/api/v1/audit/verify", headers=org_a.headers(Role.auditor), timeout=60)
            assert verified.status_code == 200, verified.text
        finally:
            api.terminate()
            api.wait(30)
    logged = log.read_text() + checkpoint.stdout + checkpoint.stderr + verify.stdout + verify.stderr
    assert '"event": "request"' in logged  # the API logged (at DEBUG, as talkative as it gets)
    _assert_nowhere(logged, key)
