"""docker-compose.yml cannot run here (no Docker engine), so its shape is checked instead:
every Flask Track service runs a real CLI command with settings the platform understands, one-shot jobs create
the bucket and run the migrations before anything uses them, the sink runs as its own role, images are pinned
(Temporal's to the dev server's versions), two workers run and every long-running service has a health check."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from sqlalchemy.engine import make_url
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



def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _jobs(services: dict[str, Any]) -> set[str]:
    """One-shot services: they run to completion and others wait for that."""
    return {name for name, svc in services.items() if svc.get("restart") == "no"}


def test_one_shot_jobs_create_the_bucket_and_run_migrations_before_any_service():
    services = _compose()["services"]
    jobs = _jobs(services)
    assert {"migrate", "bucket"} <= jobs
    assert services["migrate"]["command"] == ["db", "upgrade"]
    bucket = urlparse(services["api"]["environment"]["FLASKTRACK_LAKE_URI"]).netloc
    assert re.search(rf"mc mb --ignore-existing \S+/{bucket}\b", " ".join(services["bucket"]["command"]))
    assert services["bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    ours = {n for n, svc in services.items() if svc.get("build") == "." and n not in jobs}
    assert ours == {"api", "worker", "sink", "flight"}
    for name in ours:
        deps = services[name]["depends_on"]
        for job in ("migrate", "bucket"):
            assert deps[job]["condition"] == "service_completed_successfully", (name, job)
        for key in ("FLASKTRACK_LAKE_URI", "FLASKTRACK_OBJECTS_URI"):
            uri = services[name]["environment"].get(key)
            assert uri is None or urlparse(uri).netloc == bucket, (name, key)


def test_every_long_running_service_has_a_health_check():
    services = _compose()["services"]
    for name, svc in services.items():
        if name in _jobs(services):
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
    from core.heartbeat import alive_file

    for name in ("worker", "sink", "flight"):  # their check reads the file their heartbeat touches (in /tmp)
        assert f"'/tmp/{alive_file(name, '/tmp').name}'" in " ".join(services[name]["healthcheck"]["test"]), name


def test_two_workers_run():
    assert _compose()["services"]["worker"]["deploy"]["replicas"] >= 2


def test_the_sink_connects_as_its_own_role_without_the_owners_credentials():
    services = _compose()["services"]
    sink = services["sink"]["environment"]
    assert "FLASKTRACK_DATABASE_URL" not in sink and "FLASKTRACK_APP_DB_PASSWORD" not in sink
    url = make_url(sink["FLASKTRACK_SINK_DATABASE_URL"])
    assert url.username == Settings().sink_db_user == "flasktrack_sink"
    # `db upgrade` sets the role's password from the same secret.
    assert services["migrate"]["environment"]["FLASKTRACK_SINK_DB_PASSWORD"] == url.password
    migration = (ROOT / "migrations" / "versions" / "0020_sink_role.py").read_text()
    assert 'SINK = "flasktrack_sink"' in migration


def test_images_are_pinned_and_temporal_matches_the_dev_server():
    services = _compose()["services"]
    images = {name: svc["image"] for name, svc in services.items() if "image" in svc}
    for name, image in images.items():
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    version = subprocess.run([temporal, "--version"], capture_output=True, text=True, timeout=30).stdout
    server = re.search(r"Server (\d+\.\d+\.\d+)", version).group(1)  # type: ignore[union-attr]
    ui = re.search(r"UI (\d+\.\d+\.\d+)", version).group(1)  # type: ignore[union-attr]
    for name, image in images.items():
        repo, _, tag = image.rpartition(":")
        if repo in ("temporalio/server", "temporalio/admin-tools"):
            assert tag == server, (name, image, version)
        if repo == "temporalio/ui":
            assert tag == ui, (name, image, version)
    assert any(i.startswith("temporalio/server:") for i in images.values())


def test_docker_compose_accepts_the_file():
    """Only where Docker's compose plugin is installed (it is not on the CI machines)."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode:
        pytest.skip("docker compose is not installed here")
    r = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
