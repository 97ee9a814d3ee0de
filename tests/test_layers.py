"""The package layout's one-way arrows (docs/architecture.md), checked by import-linter's contracts in pyproject.toml:
the CLI and supervisor on top, the ground floor (`core/`) at the bottom, workflows free of I/O."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["core", "flasktrack", "api", "domain", "workflows", "activities", "worker", "lake", "flight", "web"]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINT, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_every_package_imports_only_what_is_below_it():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("module", "against_the_flow"), [
    ("core/db.py", "import flasktrack.cli"),  # the ground floor reaching up to the CLI
    ("domain/audit/sealer.py", "import lake.writer"),  # rules reaching into a service
    ("workflows/run.py", "import sqlalchemy"),  # a workflow doing I/O
    ("lake/sink.py", "import api.app"),  # a service importing another service's HTTP layer
    ("domain/tasks/service.py", "import domain.runs.service"),  # one concept's rules reaching into another's
])
def test_an_import_against_the_flow_is_caught(tmp_path, module, against_the_flow):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{against_the_flow}  # noqa\n")
    r = lint(tmp_path)
    assert r.returncode == 1 and "BROKEN" in r.stdout.upper(), r.stdout + r.stderr
