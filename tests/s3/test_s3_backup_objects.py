"""Evidence files on S3 go into a backup and come back into another bucket prefix with the same bytes; one missing
from the store, or whose bytes no longer hash to its name, is left out with a warning."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

from core.storage import open_store
from domain.evidence.service import object_key
from flasktrack.backup import Manifest, Report, _copy_objects, _restore_objects
from tests.s3.s3kit import BUCKET, S3


def test_evidence_objects_on_s3_are_backed_up_and_restored(s3: S3, tmp_path: Path):
    src = s3.settings(objects_uri=f"s3://{BUCKET}/objects-{uuid.uuid4().hex[:8]}", data_dir=tmp_path / "src")
    dst = s3.settings(objects_uri=f"s3://{BUCKET}/objects-{uuid.uuid4().hex[:8]}", data_dir=tmp_path / "dst")
    store = open_store(src.resolved_objects_uri, src.resolved_objects_storage_options)
    org = str(uuid.uuid4())
    photo = b"\x89PNG plates" * 1000
    good = hashlib.sha256(photo).hexdigest()
    store.put_once(object_key(org, good), io.BytesIO(photo))
    damaged = hashlib.sha256(b"what was uploaded").hexdigest()
    store.put_once(object_key(org, damaged), io.BytesIO(b"something else"))
    missing = hashlib.sha256(b"never stored").hexdigest()

    report = Report("backup", tmp_path / "backup")
    entry = _copy_objects(src, [(org, good), (org, damaged), (org, missing)], tmp_path / "backup", report)
    assert entry["keys"] == {object_key(org, good): good} and report.objects == 1
    assert len(report.warnings) == 2 and "damaged" in report.warnings[0] and "missing" in report.warnings[1]
    assert not (tmp_path / "backup" / "objects" / object_key(org, damaged)).exists()

    manifest: Manifest = {"objects": entry}  # type: ignore[typeddict-item]
    restored = Report("restored", tmp_path / "backup")
    _restore_objects(dst, tmp_path / "backup", manifest, restored)
    assert restored.objects == 1
    back = open_store(dst.resolved_objects_uri, dst.resolved_objects_storage_options)
    with back.open(object_key(org, good)) as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == good
    assert not back.exists(object_key(org, damaged))
