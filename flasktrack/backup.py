"""`flasktrack backup create|restore`: the database, the signed audit checkpoints, the keys to check them and the
lake, taken at one point in time, and brought back into an empty database and an empty lake.

One point in time: the sink moves outbox rows to Delta and then deletes them, so a dump and a lake copied at
different moments disagree (rows in both would be written twice after a restore, rows in neither lost). The
backup therefore holds the outbox still for a moment (`LOCK TABLE outbox IN SHARE MODE`: no claim, no
acknowledgement, no new row), takes the database snapshot that pg_dump will dump and notes every lake table's
version, then lets go (milliseconds: writers of outbox rows wait that long). A table's noted version holds
every batch the snapshot has acknowledged and none it has not claimed; a batch claimed but not acknowledged
is finished by the restored sink's recovery either way. The audit export is not held by that lock, so the
`audit_log` table is taken at its newest version that exported nothing past the snapshot's sealed heads.
Checkpoint files are those the snapshot's `audit_checkpoints` records, so the two stores agree.

Evidence files live in the object store (a folder, or S3: core/storage.py), not in the database: the backup copies
the object of every evidence file the snapshot has a row for (`objects/evidence/<org>/<sha256>`; an upload stores its
object before its row commits, and objects are never deleted, so each is there), checking that its bytes still hash
to their name. Restore puts them back into the store `settings` name, write-once (an object already there with the
same key is the same bytes, and left as it is).

The backup is a folder (or a .tar / .tar.gz of one) with a manifest of every file's SHA-256: restore checks
all of them before it changes anything, and refuses a damaged or incomplete backup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NotRequired, TypedDict

import orjson
import psycopg
from psycopg.rows import TupleRow
from sqlalchemy.engine import make_url

from core.config import Settings
from core.db import libpq_url, owner_url
from core.storage import ObjectMissing, ObjectStore, check_key, open_store
from domain.audit.checkpoints import CheckpointStore, load_public_keys
from domain.errors import DomainError
from domain.evidence.service import object_key
from flasktrack.postgres import pg_tool
from lake import snapshot
from lake.tables import AUDIT_LOG, audit_app_id
from lake.writer import Lake

FORMAT = 1
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
DUMP = "database.dump"
SIGNING_KEY = "keys/signing-key.pem"
TEMPORAL_DB = "temporal.db"  # as `flasktrack up` names the dev server's file under the data folder
ARCHIVES = (".tar", ".tar.gz", ".tgz")
_CHUNK = 1 << 20

# Roles the database grants privileges to (the application role), with what they may do: pg_dump carries the
# grants but not the roles, which belong to the server.
_GRANTEES = """
SELECT DISTINCT r.rolname, r.rolcanlogin, r.rolbypassrls, r.rolcreatedb, r.rolcreaterole
FROM (SELECT (aclexplode(c.relacl)).grantee FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relacl IS NOT NULL AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      UNION SELECT (aclexplode(p.proacl)).grantee FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE p.proacl IS NOT NULL AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      UNION SELECT (aclexplode(nspacl)).grantee FROM pg_namespace
      WHERE nspacl IS NOT NULL AND nspname NOT IN ('pg_catalog', 'information_schema')) g
JOIN pg_roles r ON r.oid = g.grantee
WHERE r.rolname <> current_user AND NOT r.rolsuper AND r.rolname NOT LIKE 'pg\\_%'
ORDER BY 1"""
_USER_RELATIONS = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp%' ORDER BY 1 LIMIT 4"""


class FileEntry(TypedDict):
    sha256: str
    bytes: int


class TableEntry(TypedDict):
    uri: str  # where it was backed up from
    version: int
    files: int


class RoleEntry(TypedDict):
    name: str
    login: bool
    bypassrls: bool
    createdb: bool
    createrole: bool


class DatabaseEntry(TypedDict):
    dump: str
    server_version_num: int
    roles: list[RoleEntry]


class AuditEntry(TypedDict):
    heads: dict[str, int]  # org id → sealed entries in the snapshot
    checkpoints: int


class LakeEntry(TypedDict):
    root: str
    tables: dict[str, TableEntry]


class ObjectsEntry(TypedDict):
    uri: str  # the object store it was backed up from
    keys: dict[str, str]  # object key → its SHA-256 (an evidence file's key ends with it: content-addressed)


class Manifest(TypedDict):
    format: int
    created_at: str
    database: DatabaseEntry
    audit: AuditEntry
    lake: LakeEntry
    objects: NotRequired[ObjectsEntry]  # absent in backups taken before evidence files were backed up
    signing_key: str | None  # path in the backup, only when asked for
    temporal: str | None  # the Temporal dev server's database file, only when asked for
    files: dict[str, FileEntry]


class BackupRefused(DomainError):
    """A backup or restore that would be wrong: nothing was changed."""


@dataclass
class Report:
    what: str
    where: Path
    seconds: float = 0.0
    files: int = 0
    bytes: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)
    checkpoints: int = 0
    signing_key: bool = False
    temporal: bool = False
    objects: int = 0  # evidence files (object store)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        lake = ", ".join(f"{t} v{v}" for t, v in sorted(self.tables.items())) or "none"
        key = "; includes the PRIVATE signing key: store it as a secret" if self.signing_key else ""
        key += "; with the Temporal dev server's database" if self.temporal else ""
        return (f"{self.what} {self.where}: {self.files} files, {self.bytes / 1e6:.1f} MB in {self.seconds:.2f} s; "
                f"audit entries {sum(self.heads.values())} in {len(self.heads)} orgs, {self.checkpoints} signed "
                f"checkpoints; {self.objects} evidence files; lake tables: {lake}{key}")


# ---------------------------------------------------------------- helpers


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def client_url(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without its password (which goes to PGPASSWORD: never on a command line) and the env."""
    u = make_url(libpq_url(url))
    env = {**os.environ}
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    return u.set(password=None).render_as_string(hide_password=False), env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
        raise BackupRefused(f"{what} failed: {lines[0] if lines else f'exit {r.returncode}'}",
                            reasons=lines[1:4])


def _one(conn: psycopg.Connection[TupleRow], query: str) -> str:
    row = conn.execute(query).fetchone()
    assert row is not None
    return str(row[0])


def server_version(url: str) -> int:
    """The server's version number (180001 for 18.1)."""
    with psycopg.connect(libpq_url(url)) as c:
        return int(_one(c, "SHOW server_version_num"))


def _is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVES)


def _signing_key_public(path: Path) -> tuple[str, bytes] | None:
    """(key id, public PEM) of the private signing key at `path`, if there is one (never created here)."""
    if not path.is_file():
        return None
    from domain.audit.checkpoints import load_or_create_signing_key

    key = load_or_create_signing_key(path)
    return key.key_id, key.public_pem


# ---------------------------------------------------------------- create


def create_backup(settings: Settings, dest: Path, *, include_signing_key: bool = False,
                  with_temporal: bool = False) -> Report:
    """Write a backup of the platform `settings` names to `dest` (a new or empty folder, or a .tar/.tar.gz).
    `with_temporal`: also the Temporal dev server's database file (see `_copy_temporal`)."""
    started = time.perf_counter()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupRefused(f"{dest} exists and is not an empty folder: a backup never overwrites")
    report = Report("backup", dest, signing_key=include_signing_key, temporal=with_temporal)
    if _is_archive(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="flasktrack-backup-", dir=dest.parent) as tmp:
            _write_backup(settings, Path(tmp), include_signing_key, with_temporal, report)
            t = time.perf_counter()
            with (tarfile.open(dest, "w") if dest.name.endswith(".tar") else tarfile.open(dest, "w:gz")) as tar:
                for p in sorted(Path(tmp).iterdir()):
                    tar.add(p, arcname=p.name)
            report.timings["archive"] = time.perf_counter() - t
    else:
        created = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
        try:
            _write_backup(settings, dest, include_signing_key, with_temporal, report)
        except BaseException:
            # No half backup left looking like one (it has no manifest, so restore would refuse it anyway).
            for p in list(dest.iterdir()):
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            if created:
                dest.rmdir()
            raise
    report.seconds = time.perf_counter() - started
    return report


def _write_backup(settings: Settings, folder: Path, include_signing_key: bool, with_temporal: bool,
                  report: Report) -> None:
    url = owner_url(settings)
    lake = Lake.from_settings(settings)
    if with_temporal:
        t = time.perf_counter()
        report.warnings.extend(_copy_temporal(settings, url, folder / TEMPORAL_DB))
        report.timings["temporal"] = time.perf_counter() - t
    t = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as hold, psycopg.connect(libpq_url(url)) as snap:
        # The outbox held still while the snapshot is taken and the lake's versions are read (module doc).
        hold.execute("SET LOCAL lock_timeout = '30s'")
        hold.execute("LOCK TABLE outbox IN SHARE MODE")
        snap.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        snap.read_only = True
        snapshot_id = str(_one(snap, "SELECT pg_export_snapshot()"))
        version_num = int(_one(snap, "SHOW server_version_num"))
        heads = {str(o): int(s) for o, s in snap.execute("SELECT org_id::text, seq FROM audit_heads").fetchall()}
        recorded = {(str(o), int(size), bytes(sig)) for o, size, sig in snap.execute(
            "SELECT org_id::text, size, signature FROM audit_checkpoints").fetchall()}
        key_ids = {str(k) for (k,) in snap.execute("SELECT DISTINCT key_id FROM audit_checkpoints").fetchall()}
        roles = [RoleEntry(name=str(n), login=bool(lg), bypassrls=bool(b), createdb=bool(cd), createrole=bool(cr))
                 for n, lg, b, cd, cr in snap.execute(_GRANTEES).fetchall()]
        versions = snapshot.current_versions(lake)
        hold.rollback()  # writers go on
        evidence = [(str(o), str(h)) for o, h in snap.execute(
            "SELECT DISTINCT org_id::text, sha256 FROM evidence_files ORDER BY 1, 2").fetchall()]
        every_org = [str(o) for (o,) in hold.execute("SELECT id::text FROM organizations").fetchall()]
        hold.rollback()
        report.timings["hold"] = time.perf_counter() - t

        t = time.perf_counter()
        dbname, env = client_url(url)
        _run([str(pg_tool("pg_dump", version_num)), "--format=custom", f"--snapshot={snapshot_id}",
              f"--file={folder / DUMP}", f"--dbname={dbname}"], env, "pg_dump")
        snap.rollback()
        report.timings["database"] = time.perf_counter() - t

    t = time.perf_counter()
    tables: dict[str, TableEntry] = {}
    for name, newest in sorted(versions.items()):
        version: int | None = newest
        if name == AUDIT_LOG.name:
            limits = {audit_app_id(o): heads.get(o, 0) for o in set(every_org) | set(heads)}
            version = snapshot.newest_version_within(lake, name, newest, limits)
        if version is None:
            continue
        tv = snapshot.table_files(lake, name, version)
        for path in tv.files:
            target = folder / "lake" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as fh:
                for chunk in snapshot.read_chunks(lake, path):
                    fh.write(chunk)
        tables[name] = TableEntry(uri=lake.uri(name), version=version, files=len(tv.files))
        report.tables[name] = version
    report.timings["lake"] = time.perf_counter() - t

    t = time.perf_counter()
    objects = _copy_objects(settings, evidence, folder, report)
    report.timings["objects"] = time.perf_counter() - t

    t = time.perf_counter()
    store = CheckpointStore(settings.resolved_checkpoint_dir)
    found: set[tuple[str, int, bytes]] = set()
    for org in sorted(heads):
        for cp_file, cp in store.list(org):
            if cp is not None and (org, cp.size, cp.signature) in recorded:
                (folder / "checkpoints" / org).mkdir(parents=True, exist_ok=True)
                shutil.copy2(cp_file, folder / "checkpoints" / org / cp_file.name)
                found.add((org, cp.size, cp.signature))
    report.checkpoints = len(found)
    for org, size, _ in sorted(recorded - found):
        report.warnings.append(f"org {org}: the checkpoint of size {size} the database records has no file in "
                               f"{store.root}; `audit verify` after a restore will say so")

    keys_dir = settings.resolved_signing_key_path.parent
    (folder / "keys").mkdir()
    public: dict[str, bytes] = {}
    if keys_dir.is_dir():
        for p in sorted(keys_dir.glob("*.pub.pem")):
            public[p.name.removesuffix(".pub.pem")] = p.read_bytes()
    own = _signing_key_public(settings.resolved_signing_key_path)
    if own is not None:
        public.setdefault(own[0], own[1])
    for key_id, pem in public.items():
        (folder / "keys" / f"{key_id}.pub.pem").write_bytes(pem)
    for key_id in sorted(key_ids - set(load_public_keys([folder / "keys"]))):
        report.warnings.append(f"no public key {key_id} (it signed checkpoints): add its .pub.pem to the backup's "
                               "keys/ folder, or those checkpoints cannot be verified")
    if include_signing_key:
        if own is None:
            raise BackupRefused(f"no signing key at {settings.resolved_signing_key_path} to include")
        shutil.copy2(settings.resolved_signing_key_path, folder / SIGNING_KEY)
        os.chmod(folder / SIGNING_KEY, 0o600)
    report.timings["files"] = time.perf_counter() - t

    files: dict[str, FileEntry] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            files[p.relative_to(folder).as_posix()] = FileEntry(sha256=_sha256_file(p), bytes=p.stat().st_size)
    manifest = Manifest(
        format=FORMAT,
        created_at=dt.datetime.now(dt.UTC).isoformat(),
        database=DatabaseEntry(dump=DUMP, server_version_num=version_num, roles=roles),
        audit=AuditEntry(heads=heads, checkpoints=report.checkpoints),
        lake=LakeEntry(root=lake.root, tables=tables),
        objects=objects,
        signing_key=SIGNING_KEY if include_signing_key else None,
        temporal=TEMPORAL_DB if with_temporal else None,
        files=files,
    )
    body = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    (folder / MANIFEST).write_bytes(body)
    (folder / MANIFEST_SUM).write_text(hashlib.sha256(body).hexdigest() + "\n")
    report.heads = heads
    report.files = len(files) + 2
    report.bytes = sum(f["bytes"] for f in files.values()) + len(body)


OBJECTS = "objects"  # the backup's folder of object-store files, under their keys


def _objects_store(settings: Settings) -> ObjectStore:
    return open_store(settings.resolved_objects_uri, settings.resolved_objects_storage_options)


def _copy_objects(settings: Settings, evidence: list[tuple[str, str]], folder: Path, report: Report
                  ) -> ObjectsEntry:
    """Copy the object of each evidence file (org, sha256) into `folder/objects/<key>`, hashing as it goes: a
    missing object, or one whose bytes no longer hash to its name, is left out with a warning (the backup of the
    rest is still worth having; `restore` then says which files it could not bring back)."""
    store = _objects_store(settings)
    keys: dict[str, str] = {}
    for org, sha in evidence:
        key = object_key(org, sha)
        target = folder / OBJECTS / key
        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        try:
            with closing(store.open(key)) as src, target.open("wb") as out:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
        except ObjectMissing:
            target.unlink(missing_ok=True)
            report.warnings.append(f"evidence file {key} is missing from the object store: not in the backup")
            continue
        if h.hexdigest() != sha:
            target.unlink()
            report.warnings.append(f"evidence file {key} is damaged in the object store (its bytes hash to "
                                   f"{h.hexdigest()}): not in the backup")
            continue
        keys[key] = sha
    report.objects = len(keys)
    return ObjectsEntry(uri=settings.resolved_objects_uri, keys=keys)  # credentials are options, never in it


def _restore_objects(settings: Settings, folder: Path, manifest: Manifest, report: Report) -> None:
    """Put the backup's evidence files into the object store `settings` name (write-once), then read each back
    and check its SHA-256: a store that did not keep the bytes fails the restore, naming the file."""
    entry = manifest.get("objects")
    if not entry:
        return
    store = _objects_store(settings)
    bad: list[str] = []
    for key, sha in sorted(entry["keys"].items()):
        check_key(key)
        with (folder / OBJECTS / key).open("rb") as src:
            store.put_once(key, src)
        h = hashlib.sha256()
        with closing(store.open(key)) as back:
            while chunk := back.read(_CHUNK):
                h.update(chunk)
        if h.hexdigest() != sha:
            bad.append(f"{key}: the store holds other bytes under this key (SHA-256 {h.hexdigest()})")
        report.objects += 1
    if bad:
        raise BackupRefused(f"{len(bad)} evidence file(s) did not come back as they were backed up",
                            reasons=bad[:5])


def _copy_temporal(settings: Settings, url: str, target: Path) -> list[str]:
    """Copy the Temporal dev server's database (SQLite's online backup: a consistent file even while the server
    runs). Workflow histories and our tables are two stores: they are at one point in time only when no worker
    moved a run between this copy and the database snapshot, so take it with the workers stopped; a worker
    heard from in the last 15 s is named in a warning."""
    import sqlite3

    source = settings.data_dir / TEMPORAL_DB
    if not source.is_file():
        raise BackupRefused(f"no Temporal dev server database at {source} (`flasktrack up` keeps it there); a "
                            "Temporal cluster of your own is backed up with Temporal's persistence store's tools")
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    with psycopg.connect(libpq_url(url), autocommit=True) as c:
        recent = [str(r[0]) for r in c.execute(
            "SELECT instance FROM service_heartbeats WHERE service = 'worker' AND at > now() - interval '15 seconds'"
        ).fetchall()]
    return [f"worker {w} is running: runs it moves after this copy are ahead in the database of the Temporal copy"
            for w in recent if _alive(w)]


def _alive(instance: str) -> bool:
    """A heartbeat's instance (host:pid) still running: asked of this machine's processes, else believed."""
    import socket

    host, _, pid = instance.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- restore


@contextmanager
def _opened(src: Path) -> Iterator[Path]:
    if src.is_dir():
        yield src
        return
    if not src.is_file():
        raise BackupRefused(f"{src}: no such backup")
    with tempfile.TemporaryDirectory(prefix="flasktrack-restore-") as tmp:
        with tarfile.open(src) as tar:
            tar.extractall(tmp, filter="data")  # refuses absolute paths, links out of the folder
        yield Path(tmp)


def check_backup(folder: Path) -> Manifest:
    """The manifest, once every file it lists is present with its size and SHA-256; else BackupRefused."""
    try:
        body = (folder / MANIFEST).read_bytes()
        expected = (folder / MANIFEST_SUM).read_text().strip()
    except FileNotFoundError as exc:
        raise BackupRefused(f"{folder} is not a backup: {Path(str(exc.filename)).name} is missing") from None
    if hashlib.sha256(body).hexdigest() != expected:
        raise BackupRefused(f"{folder}: the manifest is damaged (its SHA-256 differs from {MANIFEST_SUM})")
    manifest: Manifest = orjson.loads(body)
    if manifest.get("format") != FORMAT:
        raise BackupRefused(f"{folder}: backup format {manifest.get('format')!r}, this version reads {FORMAT}")
    bad: list[str] = []
    for rel, meta in manifest["files"].items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise BackupRefused(f"{folder}: the manifest names {rel!r}, outside the backup")
        p = folder / rel
        if not p.is_file():
            bad.append(f"{rel} is missing")
        elif p.stat().st_size != meta["bytes"] or _sha256_file(p) != meta["sha256"]:
            bad.append(f"{rel} is damaged (size or SHA-256 differs)")
    if bad:
        raise BackupRefused(f"{folder}: {len(bad)} file(s) of the backup are missing or damaged; nothing restored",
                            reasons=bad[:5])
    return manifest


def restore_backup(settings: Settings, src: Path) -> Report:
    """Restore the backup at `src` into the empty database, lake and checkpoint folder `settings` name."""
    started = time.perf_counter()
    report = Report("restored", src)
    with _opened(src) as folder:
        t = time.perf_counter()
        manifest = check_backup(folder)
        report.timings["check"] = time.perf_counter() - t
        url = owner_url(settings)
        lake = Lake.from_settings(settings)
        store_root = settings.resolved_checkpoint_dir
        key_path = settings.resolved_signing_key_path
        _refuse_unless_empty(url, lake, store_root, key_path, settings.data_dir, folder, manifest)

        t = time.perf_counter()
        _create_roles(url, manifest["database"]["roles"], settings)
        dbname, env = client_url(url)
        # One transaction: a restore that fails leaves the database as empty as it was.
        _run([str(pg_tool("pg_restore", server_version(url))), "--no-owner", "--exit-on-error", "--single-transaction",
              f"--dbname={dbname}", str(folder / DUMP)], env, "pg_restore")
        report.timings["database"] = time.perf_counter() - t

        t = time.perf_counter()
        for name, meta in sorted(manifest["lake"]["tables"].items()):
            prefix = f"lake/{name}/"
            for rel in sorted(r for r in manifest["files"] if r.startswith(prefix)):
                snapshot.write_file(lake, rel.removeprefix("lake/"), _chunks(folder / rel))
            lake.forget(name)
            dt_ = lake.open(name)
            if dt_ is None or dt_.version() != meta["version"]:
                raise BackupRefused(f"lake table {name} did not come back at version {meta['version']}")
            report.tables[name] = meta["version"]
        report.timings["lake"] = time.perf_counter() - t

        t = time.perf_counter()
        _restore_objects(settings, folder, manifest, report)
        report.timings["objects"] = time.perf_counter() - t

        t = time.perf_counter()
        for rel in manifest["files"]:
            if rel.startswith("checkpoints/"):
                target = store_root / rel.removeprefix("checkpoints/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / rel, target)
                report.checkpoints += 1
            elif rel.startswith("keys/") and rel.endswith(".pub.pem"):
                key_path.parent.mkdir(parents=True, exist_ok=True)
                target = key_path.parent / Path(rel).name
                if not target.exists():
                    shutil.copy2(folder / rel, target)
        if manifest["temporal"]:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / manifest["temporal"], settings.data_dir / TEMPORAL_DB)
            report.temporal = True
        if manifest["signing_key"] and not key_path.exists():
            key_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / manifest["signing_key"], key_path)
            os.chmod(key_path, 0o600)
            report.signing_key = True
        report.timings["files"] = time.perf_counter() - t
        report.heads = dict(manifest["audit"]["heads"])
        report.files = len(manifest["files"])
        report.bytes = sum(f["bytes"] for f in manifest["files"].values())
    report.seconds = time.perf_counter() - started
    return report


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _refuse_unless_empty(url: str, lake: Lake, store_root: Path, key_path: Path, data_dir: Path, folder: Path,
                         manifest: Manifest) -> None:
    """Everything a restore would write to must be empty: a restore never merges into, or overwrites, a live
    platform. Checked before anything is changed."""
    with psycopg.connect(libpq_url(url)) as c:
        found = [str(r[0]) for r in c.execute(_USER_RELATIONS).fetchall()]
    if found:
        raise BackupRefused(f"the database {make_url(url).database} is not empty (it has {', '.join(found)}"
                            f"{', …' if len(found) == 4 else ''}): restore into a new, empty database")
    if not snapshot.is_empty(lake):
        raise BackupRefused(f"the lake {lake.root} is not empty: restore into a new, empty lake folder or prefix")
    if manifest["temporal"] and (data_dir / TEMPORAL_DB).exists():
        raise BackupRefused(f"{data_dir / TEMPORAL_DB} exists: restore the Temporal dev server's file into a new "
                            "data folder")
    if store_root.is_dir() and any(store_root.iterdir()):
        raise BackupRefused(f"the checkpoint folder {store_root} is not empty: restore into a new one")
    signing_key = manifest["signing_key"]
    if signing_key and key_path.exists() and key_path.read_bytes() != (folder / signing_key).read_bytes():
        raise BackupRefused(f"a different signing key is already at {key_path}: remove it, or restore without it")


def _create_roles(url: str, roles: list[RoleEntry], settings: Settings) -> None:
    """The roles the dump grants privileges to, where the server lacks them (no passwords: those are the
    server's secrets; the application's and the sink's come from FLASKTRACK_APP_DB_PASSWORD and
    FLASKTRACK_SINK_DB_PASSWORD, as `db upgrade` sets them)."""
    from psycopg import sql

    with psycopg.connect(libpq_url(url), autocommit=True) as c:
        for role in roles:
            name = sql.Identifier(role["name"])
            if c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role["name"],)).fetchone() is None:
                attrs = " ".join(("LOGIN" if role["login"] else "NOLOGIN",
                                  "BYPASSRLS" if role["bypassrls"] else "NOBYPASSRLS",
                                  "CREATEDB" if role["createdb"] else "NOCREATEDB",
                                  "CREATEROLE" if role["createrole"] else "NOCREATEROLE"))
                c.execute(sql.SQL("CREATE ROLE {} NOSUPERUSER " + attrs).format(name))
            if role["name"] == settings.app_db_user and settings.app_db_password:
                c.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(name, sql.Literal(settings.app_db_password)))
            if role["name"] == settings.sink_db_user and settings.sink_db_password is not None:
                c.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    name, sql.Literal(settings.sink_db_password.get_secret_value())))
