"""A backup carries the evidence files' bytes (from the object store) with their hashes in its manifest; restored
into an empty database and an empty object store, a file downloads with the same SHA-256 as before."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import build_platform, create_app
from core.config import Settings
from core.db import TenantSessions, make_engine
from domain.roles import Role
from flasktrack.backup import BackupRefused, check_backup, create_backup, restore_backup
from flasktrack.postgres import scratch_database, upgrade_schema
from tests.evidence.support import PDF, png, uploaded
from tests.support import make_org


def _platform(url: str, data_dir: Path) -> Settings:
    return Settings(database_url=url, data_dir=data_dir, log_json=True, checkpoint_interval_s=3600,
                    login_max_failures_per_address=1000)


def test_evidence_files_come_back_from_a_backup_with_their_hashes(database_url: str, tmp_path: Path) -> None:
    with scratch_database(database_url, "ft_bke_src") as src_url, \
            scratch_database(database_url, "ft_bke_dst") as dst_url:
        upgrade_schema(src_url)
        src = _platform(src_url, tmp_path / "src")
        owner = TenantSessions(make_engine(src_url, pool_size=2))
        with TestClient(create_app(build_platform(src))) as client:
            org = make_org(owner, client)
            photo, record = png(4242), PDF
            first = uploaded(client, org, photo, filename="plates.png")
            second = uploaded(client, org, record, filename="batch record.pdf", content_type="application/pdf")
            again = uploaded(client, org, photo, filename="plates again.png")  # stored once, linked twice
        owner.engine.dispose()
        assert first["sha256"] == again["sha256"] == hashlib.sha256(photo).hexdigest()

        report = create_backup(src, tmp_path / "backup.tar.gz")
        assert report.objects == 2 and not report.warnings, report.warnings
        assert "2 evidence files" in report.summary()

        restored = _platform(dst_url, tmp_path / "dst")
        assert not Path(restored.resolved_objects_uri).exists()
        back = restore_backup(restored, tmp_path / "backup.tar.gz")
        assert back.objects == 2
        with TestClient(create_app(replace(build_platform(restored)))) as client:
            login = client.post("/api/v1/auth/login", json={"email": org.users[Role.auditor][1],
                                                            "password": "correct horse battery staple"})
            assert login.status_code == 200, login.text
            h = {"Authorization": f"Bearer {login.json()['token']}"}
            for made, data in ((first, photo), (second, record), (again, photo)):
                r = client.get(f"/api/v1/evidence/{made['id']}/content", headers=h)
                assert r.status_code == 200, r.text
                assert hashlib.sha256(r.content).hexdigest() == made["sha256"] == hashlib.sha256(data).hexdigest()
                assert r.headers["etag"].strip('"') == made["sha256"]


def test_a_backup_whose_evidence_file_was_tampered_with_is_refused(database_url: str, tmp_path: Path) -> None:
    with scratch_database(database_url, "ft_bke_bad") as src_url:
        upgrade_schema(src_url)
        src = _platform(src_url, tmp_path / "src")
        owner = TenantSessions(make_engine(src_url, pool_size=2))
        with TestClient(create_app(build_platform(src))) as client:
            org = make_org(owner, client)
            made = uploaded(client, org, png(7), filename="gel.png")
        owner.engine.dispose()
        create_backup(src, tmp_path / "backup")
        manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
        key = f"evidence/{org.id}/{made['sha256']}"
        assert manifest["objects"]["keys"] == {key: made["sha256"]}
        assert manifest["files"][f"objects/{key}"]["sha256"] == made["sha256"]
        path = tmp_path / "backup" / "objects" / key
        path.write_bytes(b"not the photo")
        with pytest.raises(BackupRefused, match="missing or damaged"):
            check_backup(tmp_path / "backup")
