"""The auditor's package: a slice of the audit log that verifies offline with nothing but the public key.

One zip archive:

    manifest.json          what the package is: org, filters applied, checkpoint, key fingerprint, every other
                           file with its SHA-256 (signed: manifest.sig)
    manifest.sig           Ed25519 signature of manifest.json's bytes (base64), by the checkpoint key
    checkpoint.json        the signed checkpoint (/2: chain head and Merkle tree head) the proofs lead to
    entries.jsonl          the matching entries: seq and the body bytes exactly as hashed
    proofs.jsonl           each entry's RFC 9162 inclusion proof in the tree the checkpoint signed
    evidence/manifest.json the evidence files the entries name: id, SHA-256, size, type, name, included or not
    evidence/<sha256>      the files' bytes (only with include_files)
    public-key.pem         the key, for convenience only: the verifier uses the key it is given, and checks the
                           fingerprint in the manifest against it
    run-record.pdf         the run record (domain/reports/run_record.py), for a run's package

domain/audit/package_verify.py checks it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import orjson
from cryptography.hazmat.primitives import serialization
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.orm import Session

from core.storage import ObjectMissing, ObjectStore
from domain.audit import tree
from domain.audit.checkpoints import Checkpoint, CheckpointStore, SigningKey
from domain.audit.models import PackageCreate, PackageRead
from domain.audit.recorder import record
from domain.errors import Conflict, Invalid, NotFound, Unavailable
from domain.roles import Caller

PACKAGE_TYPE = "flasktrack-audit-package/1"
MAX_ENTRIES = 100_000  # a package is a slice: a larger one is asked for by period, in parts
MAX_FILE_BYTES = 256 * 1024 * 1024  # evidence bytes in one archive
EVIDENCE_TARGETS_OF_TASKS = ("task", "checklist_item")



def key_fingerprint(key: SigningKey) -> dict[str, str]:
    raw = key.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"key_id": key.key_id, "sha256": hashlib.sha256(raw).hexdigest(), "algorithm": "Ed25519"}


def package_key(org_id: uuid.UUID | str, sha256: str) -> str:
    return f"audit-packages/{org_id}/{sha256}"


def _filters(req: PackageCreate) -> dict[str, Any]:
    out: dict[str, Any] = {"scope": req.scope}
    for k in ("id", "entity_type", "consistent_with"):
        if getattr(req, k) is not None:
            out[k] = getattr(req, k)
    for k in ("since", "until"):
        v = getattr(req, k)
        if v is not None:
            out[k] = v.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out["include_files"] = req.include_files
    return out


def _entities(session: Session, req: PackageCreate) -> list[tuple[str, str]] | None:
    """The (entity_type, entity_id) pairs whose entries the package holds; None for a period. NotFound for a
    run, sample or batch this organization does not have (row-level security hides the others')."""
    if req.scope == "period":
        return None
    assert req.id is not None
    if req.scope == "entity":
        assert req.entity_type is not None
        known = session.execute(text("SELECT 1 FROM audit_log WHERE org_id = current_org() AND entity_type = :t "
                                     "AND entity_id = :i LIMIT 1"), {"t": req.entity_type, "i": req.id}).first()
        if known is None:
            raise NotFound(f"no {req.entity_type} with this id in this organization's audit log")
        return [(req.entity_type, req.id)]
    table = {"run": "runs", "sample": "samples", "batch": "batches"}[req.scope]
    ident = uuid.UUID(req.id)
    if session.execute(text(f"SELECT 1 FROM {table} WHERE id = :i"), {"i": ident}).first() is None:
        raise NotFound(f"no {req.scope} {req.id} in this organization")
    pairs: list[tuple[str, str]] = [(req.scope, str(ident))]
    if req.scope == "run":
        tasks = [str(r[0]) for r in session.execute(text("SELECT id FROM tasks WHERE run_id = :i"), {"i": ident})]
        pairs += [("task", t) for t in tasks]
        targets = [(tt, t) for t in tasks for tt in EVIDENCE_TARGETS_OF_TASKS]
    else:
        targets = [(req.scope, str(ident))]
    if targets:
        ev = session.execute(text(
            "SELECT DISTINCT evidence_id::text FROM evidence_links l JOIN unnest(:tt, :ti) AS x(tt, ti) "
            "ON l.target_type = x.tt AND l.target_id = x.ti WHERE l.org_id = current_org()").bindparams(
            bindparam("tt", type_=ARRAY(TEXT)), bindparam("ti", type_=ARRAY(TEXT))),
            {"tt": [t[0] for t in targets], "ti": [t[1] for t in targets]}).all()
        pairs += [("evidence", r[0]) for r in ev]
    return pairs


def _entries(session: Session, org: str, req: PackageCreate, size: int, pairs: list[tuple[str, str]] | None
             ) -> list[tuple[int, bytes]]:
    where = "org_id = :o AND seq <= :size"
    params: dict[str, Any] = {"o": org, "size": size, "lim": MAX_ENTRIES + 1}
    binds = []
    if pairs is not None:
        where += " AND (entity_type, entity_id) IN (SELECT * FROM unnest(:et, :ei))"
        params |= {"et": [p[0] for p in pairs], "ei": [p[1] for p in pairs]}
        binds = [bindparam("et", type_=ARRAY(TEXT)), bindparam("ei", type_=ARRAY(TEXT))]
    if req.since is not None:
        where += " AND occurred_at >= :since"
        params["since"] = req.since
    if req.until is not None:
        where += " AND occurred_at < :until"
        params["until"] = req.until
    rows = session.execute(text(f"SELECT seq, body FROM audit_log WHERE {where} ORDER BY seq LIMIT :lim")
                           .bindparams(*binds), params).all()
    if len(rows) > MAX_ENTRIES:
        raise Invalid(f"more than {MAX_ENTRIES} entries match: ask for a shorter period",
                      reasons=[f"since/until: more than {MAX_ENTRIES} entries match"])
    return [(int(r[0]), bytes(r[1])) for r in rows]


def _evidence(session: Session, entries: list[tuple[int, bytes]], pairs: list[tuple[str, str]] | None
              ) -> list[dict[str, Any]]:
    """The evidence files the entries are about or name (task completions carry the files' ids)."""
    ids: set[str] = {i for t, i in (pairs or []) if t == "evidence"}
    for _, body in entries:
        b = orjson.loads(body)
        if b["entity"]["type"] == "evidence":
            ids.add(b["entity"]["id"])
        after = b.get("after")
        if isinstance(after, dict) and isinstance(after.get("evidence"), list):
            ids.update(str(x) for x in after["evidence"] if isinstance(x, str))
    valid = []
    for i in ids:
        try:
            valid.append(uuid.UUID(i))
        except ValueError:
            continue
    if not valid:
        return []
    rows = session.execute(text("SELECT id::text, sha256, size_bytes, content_type, filename FROM evidence_files "
                                "WHERE id = ANY(:i) ORDER BY id"), {"i": valid}).all()
    return [{"id": r[0], "sha256": r[1], "size_bytes": int(r[2]), "content_type": r[3], "filename": r[4]}
            for r in rows]


@dataclass(frozen=True)
class Built:
    archive: BinaryIO
    sha256: str
    size_bytes: int
    entries: int
    checkpoint: Checkpoint
    filters: dict[str, Any]


def _latest_tree_checkpoint(session: Session, caller: Caller, key: SigningKey, store: CheckpointStore) -> Checkpoint:
    from domain.audit import service

    cp = service.checkpoint_now(session, caller, key, store)  # seals what is pending, signs the head if it moved
    if cp is None or cp.root_hash is None:
        raise Conflict("the audit log has no signed tree head to prove entries against yet")
    return cp


def build(session: Session, caller: Caller, req: PackageCreate, *, key: SigningKey, store: CheckpointStore,
          objects: ObjectStore | None = None, now: dt.datetime | None = None) -> Built:
    """The archive for `req` (a temporary file, positioned at 0).

    Everything that can refuse the request (an unknown target, too many entries or file bytes, a missing file, a
    `consistent_with` past the log) is checked before the checkpoint is signed: a signed checkpoint file is written
    outside the database, and one whose database record a failed request rolled back would read as tampering.
    The org's chain head stays locked from the first seal on, so the entries are every match up to `through`."""
    from domain.audit import service

    org = str(caller.org_id)
    service.seal(session, org, wait=True)  # and hold the head until the transaction ends
    through, _ = service.head(session, org)
    pairs = _entities(session, req)
    entries = _entries(session, org, req, through, pairs)
    evidence = _evidence(session, entries, pairs)
    blobs: dict[str, bytes] = {}
    included = 0
    for e in evidence:
        e["included"] = False
        if req.include_files:
            if objects is None:
                raise Unavailable("no object store to read evidence files from")
            included += e["size_bytes"]
            if included > MAX_FILE_BYTES:
                raise Invalid("the evidence files together are too large for one package: ask without files",
                              reasons=["include_files: the files exceed 256 MiB"])
            from domain.evidence.service import object_key

            try:
                with objects.open(object_key(org, e["sha256"])) as fh:
                    blobs[f"evidence/{e['sha256']}"] = fh.read()
            except ObjectMissing:
                raise Unavailable(f"the bytes of evidence file {e['id']} are missing from the object store") from None
            e["included"] = True
    if req.consistent_with is not None and req.consistent_with > through:
        raise Invalid(f"consistent_with: the log holds {through} entries, fewer than {req.consistent_with}",
                      reasons=[f"consistent_with: larger than the log ({through} entries)"])
    pdf = None
    if req.scope == "run":
        from domain.reports.run_record import run_record_pdf  # the reports' renderer; imported where it is used

        pdf = run_record_pdf(session, uuid.UUID(str(req.id)), context=(("audit package", "run record at packing"),))

    cp = _latest_tree_checkpoint(session, caller, key, store)  # signs `through` (or more, sealed meanwhile)
    assert cp.root_hash is not None and cp.size >= through
    proofs = tree.inclusion_proofs(session, org, [seq - 1 for seq, _ in entries], cp.size)
    now = now or dt.datetime.now(dt.UTC)
    files: dict[str, bytes] = {
        "checkpoint.json": cp.to_json(),
        "entries.jsonl": b"".join(orjson.dumps({"seq": seq, "body": body.decode("utf-8")}) + b"\n"
                                  for seq, body in entries),
        "proofs.jsonl": b"".join(orjson.dumps({"seq": seq, "leaf_index": seq - 1, "tree_size": cp.size,
                                               "proof": [h.hex() for h in proofs[seq - 1]]}) + b"\n"
                                 for seq, _ in entries),
        "public-key.pem": key.public_pem,
        **blobs,
    }
    if pdf is not None:
        files["run-record.pdf"] = pdf
    if req.consistent_with is not None:
        files["consistency.json"] = orjson.dumps({
            "first_size": req.consistent_with, "second_size": cp.size,
            "proof": [h.hex() for h in tree.consistency_proof(session, org, req.consistent_with, cp.size)]})
    files["evidence/manifest.json"] = orjson.dumps({"files": evidence}, option=orjson.OPT_INDENT_2)
    filters = _filters(req)
    manifest = {
        "type": PACKAGE_TYPE,
        "org_id": org,
        "org_slug": caller.org_slug,
        "created_at": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "created_by": {"type": caller.actor.type, "id": caller.actor.id, "display": caller.actor.display},
        "filters": filters,
        "entries": len(entries),
        "through_seq": through,
        "checkpoint": {"size": cp.size, "root_hash": cp.root_hash.hex(), "head_hash": cp.head_hash.hex(),
                       "key_id": cp.key_id},
        "public_key": key_fingerprint(key),
        "leaf": "SHA-256(0x00 || int8_be(seq) || org_uuid_bytes || SHA-256(body)); RFC 9162 tree over seq order",
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    files["manifest.json"] = manifest_bytes
    files["manifest.sig"] = base64.b64encode(key.private.sign(manifest_bytes)) + b"\n"
    out = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115 - handed to the caller
    stamp = now.astimezone(dt.UTC).timetuple()[:6]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in ("manifest.json", "manifest.sig", *sorted(n for n in files if not n.startswith("manifest."))):
            info = zipfile.ZipInfo(name, date_time=stamp)  # type: ignore[arg-type]
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, files[name])
    size = out.tell()
    out.seek(0)
    h = hashlib.sha256()
    while chunk := out.read(1 << 20):
        h.update(chunk)
    out.seek(0)
    return Built(archive=cast(BinaryIO, out), sha256=h.hexdigest(), size_bytes=size, entries=len(entries),
                 checkpoint=cp, filters=filters)


def create(session: Session, caller: Caller, req: PackageCreate, *, key: SigningKey, store: CheckpointStore,
           objects: ObjectStore) -> PackageRead:
    """Build the package, keep the archive write-once in the object store, its record in the database, and the
    creation on record in the audit log."""
    now = dt.datetime.now(dt.UTC)
    built = build(session, caller, req, key=key, store=store, objects=objects, now=now)
    assert built.checkpoint.root_hash is not None
    pid = uuid.uuid4()
    okey = package_key(caller.org_id, built.sha256)
    with built.archive:
        objects.put_once(okey, built.archive)
    session.execute(text(
        "INSERT INTO audit_packages (id, org_id, scope, entries, checkpoint_size, root_hash, sha256, size_bytes, "
        "object_key, created_at, created_by, created_by_display) VALUES (:id, :o, CAST(:scope AS jsonb), :n, :cs, "
        ":root, :sha, :size, :key, :at, :by, :byd)"),
        {"id": pid, "o": caller.org_id, "scope": orjson.dumps(built.filters).decode(), "n": built.entries,
         "cs": built.checkpoint.size, "root": built.checkpoint.root_hash, "sha": built.sha256,
         "size": built.size_bytes, "key": okey, "at": now, "by": caller.actor.id, "byd": caller.actor.display})
    record(session, org_id=caller.org_id, actor=caller.actor, action="create", entity_type="audit_package",
           entity_id=str(pid), after={**built.filters, "entries": built.entries,
                                      "checkpoint_size": built.checkpoint.size,
                                      "root_hash": built.checkpoint.root_hash.hex(), "sha256": built.sha256,
                                      "size_bytes": built.size_bytes}, context=caller.context)
    return _read(pid, built.filters, built.entries, built.checkpoint.size, built.checkpoint.root_hash, built.sha256,
                 built.size_bytes, now, caller.actor.id)


def _read(pid: uuid.UUID, scope: dict[str, Any], entries: int, cs: int, root: bytes, sha: str, size: int,
          at: dt.datetime, by: str) -> PackageRead:
    return PackageRead(id=pid, scope=scope, entries=entries, checkpoint_size=cs, root_hash=root.hex(), sha256=sha,
                       size_bytes=size, created_at=at, created_by=by, download=f"/api/v1/audit/packages/{pid}")


def open_archive(session: Session, caller: Caller, objects: ObjectStore, package_id: uuid.UUID
                 ) -> tuple[PackageRead, BinaryIO]:
    """The archive for download, the download on record first (in the caller's transaction). NotFound for another
    organization's package (row-level security) or none."""
    r = session.execute(text(
        "SELECT id, scope, entries, checkpoint_size, root_hash, sha256, size_bytes, object_key, created_at, "
        "created_by FROM audit_packages WHERE id = :i"), {"i": package_id}).first()
    if r is None:
        raise NotFound("no audit package with this id in this organization")
    try:
        content = objects.open(r.object_key)
    except ObjectMissing:
        raise Unavailable(f"the archive of audit package {package_id} is missing from the object store") from None
    try:
        record(session, org_id=caller.org_id, actor=caller.actor, action="download", entity_type="audit_package",
               entity_id=str(package_id), after={"sha256": r.sha256, "size_bytes": int(r.size_bytes)},
               context=caller.context)
    except BaseException:
        content.close()
        raise
    return _read(r.id, dict(r.scope), int(r.entries), int(r.checkpoint_size), bytes(r.root_hash), r.sha256,
                 int(r.size_bytes), r.created_at, r.created_by), content


def archive_bytes(built: Built) -> bytes:
    """The whole archive in memory (tests, the bench)."""
    data = built.archive.read()
    built.archive.seek(0)
    return data



