"""docker-compose.yml cannot run here (no Docker engine), so its shape is checked instead:
every Flask Track service runs a real CLI command with settings the platform understands."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.main import get_command

from core.config import Settings
from flasktrack.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_compose_services_use_real_commands_and_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    cli = get_command(app)
    known_fields = {f"FLASKTRACK_{name.upper()}" for name in Settings.model_fields}
    ours = {name: svc for name, svc in compose["services"].items() if svc.get("build") == "."}
    assert {"migrate", "api", "worker", "sink", "flight"} <= set(ours)
    for name, svc in ours.items():
        cmd = svc["command"]
        group = cli.commands[cmd[0]]  # type: ignore[attr-defined]
        if len(cmd) > 1:
            assert cmd[1] in group.commands, (name, cmd)  # type: ignore[attr-defined]
        env = svc["environment"]
        unknown = {k for k in env if k.startswith("FLASKTRACK_")} - known_fields
        assert not unknown, (name, unknown)
        # The settings parse as the services would parse them.
        Settings(**{k.removeprefix("FLASKTRACK_").lower(): v for k, v in env.items()
                    if k != "FLASKTRACK_LAKE_STORAGE_OPTIONS"})
    for dep in ("postgres", "temporal", "minio"):
        assert dep in compose["services"]


def test_dockerfile_copies_every_package():
    """Every package the project installs (pyproject's list, so a new one cannot be forgotten) and the migrations."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    installed = setuptools["packages"]["find"]["include"]
    text = (ROOT / "Dockerfile").read_text()
    for pkg in [p.rstrip("*") for p in installed] + ["migrations"]:
        assert f"COPY {pkg} {pkg}" in text, f"the image lacks {pkg}/"


def test_bad_configuration_fails_with_one_clear_line(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "flasktrack.cli", "db", "upgrade"], capture_output=True, text=True,
                       env={"FLASKTRACK_DATABASE_URL": "mysql://nope", "PATH": "/usr/bin:/bin"}, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "FLASKTRACK_DATABASE_URL" in lines[0], r.stderr
