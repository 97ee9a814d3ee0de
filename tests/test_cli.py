"""The flasktrack CLI as an operator runs it: administration and audit verification exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from domain.roles import Role

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(database_url, data_dir):
    env = {**os.environ, "FLASKTRACK_DATABASE_URL": database_url, "FLASKTRACK_DATA_DIR": str(data_dir),
           "FLASKTRACK_LOG_LEVEL": "WARNING"}

    def _run(*args: str, input: str | None = None, **overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flasktrack.cli", *args], capture_output=True, text=True,
                              env={**env, **overrides}, cwd=ROOT, timeout=120, input=input)

    return _run


def test_admin_commands_create_what_they_say(run, client):
    r = run("org", "create", "cli-lab", "CLI Lab")
    assert r.returncode == 0, r.stderr
    assert run("org", "create", "cli-lab", "Again").returncode == 2
    r = run("user", "create", "--org", "cli-lab", "--email", "ana@cli.example.org", "--name", "Ana",
            "--role", "auditor", "--password", "a long enough password")
    assert r.returncode == 0, r.stderr
    bad = run("user", "create", "--org", "cli-lab", "--email", "x@cli.example.org", "--name", "X", "--role",
              "wizard", "--password", "a long enough password")
    assert bad.returncode == 2 and "role" in bad.stderr
    login = client.post("/api/v1/auth/login", json={"email": "ana@cli.example.org",
                                                    "password": "a long enough password"})
    assert login.status_code == 200 and login.json()["role"] == "auditor"
    r = run("apikey", "create", "--org", "cli-lab", "--name", "lims", "--role", "analyst")
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("ftak_")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).json()["role"] == "analyst"


def test_verify_export_and_tamper_exit_codes(run, client, org_a, owner, tmp_path):
    client.post("/api/v1/apikeys", json={"name": "k", "role": "analyst"}, headers=org_a.headers(Role.admin))
    assert run("audit", "checkpoint", "--org", org_a.slug).returncode == 0
    by_cli = client.get("/api/v1/audit", params={"action": "checkpoint"}, headers=org_a.headers(Role.auditor))
    assert by_cli.json()["items"][0]["actor"]["id"] == "cli"  # newest first: the one just signed
    ok = run("audit", "verify", "--org", org_a.slug)
    assert ok.returncode == 0 and "ok" in ok.stdout and org_a.slug in ok.stdout, ok.stderr
    export = tmp_path / "a.jsonl"
    r = run("audit", "export", "--org", org_a.slug, "--out", str(export))
    assert r.returncode == 0, r.stderr
    cp = Path(str(export) + ".checkpoint.json")
    assert run("audit", "verify", "--file", str(export), "--checkpoint", str(cp)).returncode == 0
    lines = export.read_bytes().splitlines(keepends=True)
    dropped = tmp_path / "dropped.jsonl"
    dropped.write_bytes(b"".join(lines[:2] + lines[3:]))
    r = run("audit", "verify", "--file", str(dropped), "--checkpoint", str(cp))
    assert r.returncode == 1 and "seq 3" in r.stderr
    # A superuser edits a sealed entry behind the triggers' back: verify names the org and the seq.
    with owner.begin(None) as s:
        s.execute(text("ALTER TABLE audit_log DISABLE TRIGGER ALL"))
        s.execute(text("UPDATE audit_log SET reason = 'nothing happened' WHERE org_id = :o AND seq = 2"),
                  {"o": org_a.id})
        s.execute(text("ALTER TABLE audit_log ENABLE TRIGGER ALL"))
        s.execute(text("ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_append_only"))
        s.execute(text("ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_no_truncate"))
    bad = run("audit", "verify", "--org", org_a.slug)
    assert bad.returncode == 1
    assert f"org {org_a.slug}" in bad.stderr and "seq 2" in bad.stderr and "reason" in bad.stderr
    # Put it back so other tests see an honest chain.
    with owner.begin(None) as s:
        s.execute(text("ALTER TABLE audit_log DISABLE TRIGGER ALL"))
        s.execute(text("UPDATE audit_log SET reason = convert_from(body, 'UTF8')::jsonb->>'reason' "
                       "WHERE org_id = :o AND seq = 2"), {"o": org_a.id})
        s.execute(text("ALTER TABLE audit_log ENABLE TRIGGER ALL"))
        s.execute(text("ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_append_only"))
        s.execute(text("ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_no_truncate"))
    assert run("audit", "verify", "--org", org_a.slug).returncode == 0


def test_http_export_with_checkpoint_verifies_offline(client, org_a, run, tmp_path):
    h = org_a.headers(Role.auditor)
    cp = client.post("/api/v1/audit/checkpoints", headers=h)
    assert cp.status_code == 200, cp.text
    size = cp.json()["size"]
    signed = client.get("/api/v1/audit", params={"action": "checkpoint", "entity_id": str(size)}, headers=h)
    assert [(e["actor"]["id"], e["after"]["size"]) for e in signed.json()["items"]] == [
        (str(org_a.users[Role.auditor][0]), size)]  # signing is a mutation: on record, by who asked
    body = client.get("/api/v1/audit/export", params={"format": "jsonl", "to_seq": size}, headers=h).content
    assert len(body.splitlines()) == size
    (tmp_path / "e.jsonl").write_bytes(body)
    (tmp_path / "cp.json").write_bytes(cp.content)
    r = run("audit", "verify", "--file", str(tmp_path / "e.jsonl"), "--checkpoint", str(tmp_path / "cp.json"))
    assert r.returncode == 0, r.stderr
    edited = body.replace(b'"action\\":\\"create', b'"action\\":\\"delete', 1)
    assert edited != body
    (tmp_path / "e2.jsonl").write_bytes(edited)
    r = run("audit", "verify", "--file", str(tmp_path / "e2.jsonl"), "--checkpoint", str(tmp_path / "cp.json"))
    assert r.returncode == 1
    csv_text = client.get("/api/v1/audit/export", params={"format": "csv"}, headers=h).text
    assert csv_text.startswith("seq,occurred_at") and len(csv_text.splitlines()) > size


def test_every_cli_error_is_one_line_and_exit_2(run, tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    assert run("org", "create", "cli-twice", "Once").returncode == 0
    cases = {
        ("audit", "verify", "--public-key", "/missing/key.pem"): "/missing/key.pem",
        ("audit", "verify", "--public-key", str(garbage)): "not a PEM public key",
        ("audit", "verify", "--file", str(tmp_path / "none.jsonl")): "none.jsonl",
        ("audit", "verify", "--org", "no-such-lab"): "no organization 'no-such-lab'",
        ("audit", "export", "--org", "cli-twice", "--out", str(tmp_path / "x"), "--format", "xml"): "--format",
        ("audit", "verify", "--nope"): "--nope",
        ("org", "create", "cli-twice", "Twice"): "cli-twice",
        ("user", "create", "--org", "cli-twice", "--email", "x@cli.example.org", "--name", "X", "--role", "wizard",
         "--password", "a long enough password"): "role",
    }
    for args, says in cases.items():
        r = run(*args)
        assert (r.returncode, r.stderr.count("\n"), "Traceback" in r.stderr) == (2, 1, False), (args, r.stderr)
        assert r.stderr.startswith("error: ") and says in r.stderr, (args, r.stderr)
    with socket.socket() as busy:  # `up` refuses a port in use, in one line too
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = run("up", FLASKTRACK_API_PORT=str(busy.getsockname()[1]), FLASKTRACK_TEMPORAL_ADDRESS="127.0.0.1:1")
    assert (r.returncode, r.stderr.count("\n")) == (2, 1) and "is in use" in r.stderr, r.stderr
    down = run("org", "create", "x-lab", "X", FLASKTRACK_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert (down.returncode, down.stderr.count("\n")) == (2, 1) and "database" in down.stderr, down.stderr


def test_audit_public_key_over_the_api_verifies_an_export_offline(client, org_a, run, tmp_path):
    """Any member fetches the checkpoint key; with only that key an export verifies on another machine."""
    r = client.get("/api/v1/audit/public-key", headers=org_a.headers(Role.technician))
    assert r.status_code == 200 and r.content.startswith(b"-----BEGIN PUBLIC KEY-----"), r.text
    assert client.get("/api/v1/audit/public-key").status_code == 401
    key = tmp_path / "audit.pub.pem"
    key.write_bytes(r.content)
    h = org_a.headers(Role.auditor)
    cp = client.post("/api/v1/audit/checkpoints", headers=h)
    assert cp.json()["key_id"] == r.headers["X-Key-Id"]
    body = client.get("/api/v1/audit/export", params={"to_seq": cp.json()["size"]}, headers=h).content
    (tmp_path / "e.jsonl").write_bytes(body)
    (tmp_path / "cp.json").write_bytes(cp.content)
    elsewhere = tmp_path / "another-machine"  # no keys of the platform's there
    ok = run("audit", "verify", "--file", str(tmp_path / "e.jsonl"), "--checkpoint", str(tmp_path / "cp.json"),
             "--public-key", str(key), FLASKTRACK_DATA_DIR=str(elsewhere))
    assert ok.returncode == 0, ok.stderr
    untrusted = run("audit", "verify", "--file", str(tmp_path / "e.jsonl"), "--checkpoint", str(tmp_path / "cp.json"),
                    FLASKTRACK_DATA_DIR=str(elsewhere))
    assert untrusted.returncode == 1, untrusted.stdout


def test_the_embedded_server_adds_no_warning_where_xdg_runtime_dir_is_unset(tmp_path):
    """On a server or in a container XDG_RUNTIME_DIR is often unset: starting the embedded PostgreSQL then printed a
    two-line RuntimeDirWarning before `make run`'s banner and before every CLI error's one line."""
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    script = ("import sys; from pathlib import Path; from flasktrack import postgres as db\n"
              "try:\n    db.start_embedded_postgres(Path(sys.argv[1]))\nfinally:\n    db.stop_embedded_postgres()")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=120)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
