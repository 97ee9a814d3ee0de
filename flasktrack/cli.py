"""The `flasktrack` command: run the platform or one service, and administer it."""

from __future__ import annotations

import getpass
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import text
from typer import _click as click

from core.config import Settings, get_settings
from core.logging import configure_logging
from domain.errors import NotFound
from domain.roles import Actor

app = typer.Typer(help="Flask Track: laboratory operations and compliance platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
org_app = typer.Typer(help="Organizations.", no_args_is_help=True)
user_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for integrations.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log: verify, export, checkpoint.", no_args_is_help=True)
lake_app = typer.Typer(help="The Delta lake: maintenance.", no_args_is_help=True)
backup_app = typer.Typer(help="Backups: the database, signed checkpoints, public keys and the lake, at one point "
                         "in time.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.add_typer(audit_app, name="audit")
app.add_typer(lake_app, name="lake")
app.add_typer(backup_app, name="backup")
out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    s = get_settings()
    configure_logging(s.log_level, s.log_json)
    return s


def _cli_actor() -> Actor:
    """Who acts when an operator runs an administration command (recorded in the audit log)."""
    return Actor("system", "cli", f"CLI ({getpass.getuser()})")


def _with_database() -> Settings:
    """Settings with a database URL: the configured one, else the embedded server (started when none runs)."""
    from flasktrack.postgres import with_database

    return with_database(_settings())


def _owner() -> tuple[Settings, object]:
    from core.db import TenantSessions, make_engine, owner_url
    from domain.identity.secrets import configure_hashing

    s = _with_database()
    configure_hashing(s.password_hash_time_cost, s.password_hash_memory_kib, s.password_hash_parallelism)
    return s, TenantSessions(make_engine(owner_url(s), pool_size=2))


def _org_id(sessions: object, slug: str) -> uuid.UUID:
    from core.db import TenantSessions

    assert isinstance(sessions, TenantSessions)
    with sessions.begin(None) as s:
        row = s.execute(text("SELECT id FROM organizations WHERE slug = :s"), {"s": slug}).first()
    if row is None:
        raise NotFound(f"no organization '{slug}'")
    return uuid.UUID(str(row[0]))


# ---------------------------------------------------------------- services


@app.command()
def up(
    tls: Annotated[bool, typer.Option("--tls", help="Serve the API and Flight SQL over TLS with a local development "
                                      "CA and certificate under the data dir (made once, reused).")] = False,
) -> None:
    """Run the whole platform (embedded PostgreSQL and Temporal unless configured) until Ctrl-C."""
    from flasktrack.up import run_up

    raise typer.Exit(run_up(_settings(), tls=tls))


@app.command()
def api(host: str | None = None, port: int | None = None) -> None:
    """Serve the HTTP API."""
    import uvicorn

    s = _with_database()  # api.main reads the settings anew, the URL included
    uvicorn.run("api.main:app", host=host or s.api_host, port=port or s.api_port, log_config=None,
                access_log=False, proxy_headers=False,  # core/net.py decides whose X-Forwarded-For counts
                ssl_certfile=s.tls_cert_file, ssl_keyfile=s.tls_key_file)  # both or neither (core/config.py)


@app.command()
def worker() -> None:
    """Serve the protocol-run workflows and their activities on the task queue."""
    from worker.main import run_worker

    run_worker(_with_database())


@app.command()
def sink() -> None:
    """Move outbox rows and audit entries into the Delta lake, exactly once."""
    from lake.service import run_sink

    run_sink(_with_database())


@app.command()
def flight() -> None:
    """Serve the lake to analysts over Flight SQL."""
    from flight.service import run_flight

    run_flight(_with_database())


# ---------------------------------------------------------------- administration


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations (as the owner role)."""
    from core.db import owner_url
    from flasktrack.postgres import upgrade_schema

    s = _settings()
    sink_password = s.sink_db_password.get_secret_value() if s.sink_db_password else None
    upgrade_schema(owner_url(s), s.app_db_password, sink_password)
    out.print("database schema is up to date")


@org_app.command("create")
def org_create(slug: str, name: str) -> None:
    """Create an organization."""
    from core.db import TenantSessions
    from domain.identity import service as identity

    _, sessions = _owner()
    assert isinstance(sessions, TenantSessions)
    with sessions.begin(None) as s:
        org = identity.create_org(s, slug=slug, name=name)
    out.print(f"created organization {org.slug} ({org.id})")


@user_app.command("create")
def user_create(
    org: Annotated[str, typer.Option(help="organization slug")],
    email: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option(help="display name")],
    role: Annotated[str, typer.Option(help="owner|admin|lab_manager|scientist|technician|auditor|analyst")],
    password: Annotated[str | None, typer.Option(help="prompted when omitted")] = None,
) -> None:
    """Add a user to an organization with a role."""
    from core.db import TenantSessions
    from domain.identity import service as identity
    from domain.identity.models import MemberCreate
    from domain.roles import RequestContext

    _, sessions = _owner()
    assert isinstance(sessions, TenantSessions)
    org_id = _org_id(sessions, org)
    pw = password or getpass.getpass("password: ")
    data = MemberCreate(email=email, display_name=name, password=pw, role=role)  # type: ignore[arg-type]
    with sessions.begin(org_id) as s:
        m = identity.add_member(s, org_id=org_id, actor=_cli_actor(), context=RequestContext(), data=data)
    out.print(f"{m.email} is {m.role} of {org} (user {m.user_id})")


@apikey_app.command("create")
def apikey_create(
    org: Annotated[str, typer.Option(help="organization slug")],
    name: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option()],
) -> None:
    """Create an API key bound to one organization and role; printed once."""
    from core.db import TenantSessions
    from domain.identity import service as identity
    from domain.identity.models import ApiKeyCreate
    from domain.roles import Caller, Role

    _, sessions = _owner()
    assert isinstance(sessions, TenantSessions)
    org_id = _org_id(sessions, org)
    caller = Caller(org_id=org_id, org_slug=org, role=Role.owner,
                    actor=_cli_actor())
    with sessions.begin(org_id) as s:
        created = identity.create_api_key(s, caller, ApiKeyCreate(name=name, role=Role(role)))
    out.print(f"API key {created.id} ({created.role}); store it now, it is not shown again:")
    out.print(created.key, soft_wrap=True)


# ---------------------------------------------------------------- audit


def _keys(s: Settings, public_key: list[Path] | None) -> dict[str, object]:
    from domain.audit.checkpoints import load_public_keys

    if public_key:
        return dict(load_public_keys(public_key))
    default = s.resolved_signing_key_path.parent  # this machine's keys, when it has any
    return dict(load_public_keys([default])) if default.is_dir() else {}


@audit_app.command("verify")
def audit_verify(
    org: Annotated[str | None, typer.Option(help="organization slug; all when omitted")] = None,
    file: Annotated[Path | None, typer.Option(help="a JSONL export to verify offline")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="the signed checkpoint for --file")] = None,
    public_key: Annotated[list[Path] | None, typer.Option(help="trusted public key file or folder")] = None,
    witness: Annotated[Path | None, typer.Option(
        help="a signed checkpoint kept outside the database (an earlier checkpoint file, or a package's "
             "checkpoint.json): the log must still extend it")] = None,
) -> None:
    """Recompute the hash chain and the Merkle tree and check the signed checkpoints. Exit 0 when intact, 1 when
    tampered."""
    from core.db import TenantSessions
    from domain.audit import service
    from domain.audit.checkpoints import Checkpoint, CheckpointStore
    from domain.audit.offline import verify_export

    if file is not None:
        s = get_settings()
        cp = Checkpoint.from_json(checkpoint.read_bytes()) if checkpoint else None
        with file.open("rb") as fh:
            r = verify_export(fh, cp, _keys(s, public_key))  # type: ignore[arg-type]
        if cp is None:
            err.print("warning: no --checkpoint: a rewritten export cannot be told from the original")
        (out if r.ok else err).print(r.summary())
        raise typer.Exit(0 if r.ok else 1)
    keys = _keys(get_settings(), public_key)  # a key file that cannot be read is told before the database
    seen = None
    if witness is not None:
        try:
            seen = Checkpoint.from_json(witness.read_bytes())
        except (ValueError, KeyError, TypeError) as exc:
            raise typer.BadParameter(f"{witness}: not a signed audit checkpoint ({exc})",
                                     param_hint="--witness") from None
    s, sessions = _owner()
    assert isinstance(sessions, TenantSessions)
    with sessions.begin(None) as db:
        orgs = db.execute(text("SELECT id, slug FROM organizations ORDER BY slug")).all()
    if org:
        orgs = [o for o in orgs if o.slug == org]
        if not orgs:
            raise NotFound(f"no organization '{org}'")
    if seen is not None:
        orgs = [o for o in orgs if str(o.id) == seen.org_id]
        if not orgs:
            raise NotFound(f"the witness checkpoint is for organization {seen.org_id}, which is not here")
    store = CheckpointStore(s.resolved_checkpoint_dir)
    bad = 0
    for o in orgs:
        with sessions.begin(o.id) as db:
            r = service.verify_org(db, o.id, store=store, keys=keys,  # type: ignore[arg-type]
                                   merkle_tree=True, witness=seen)
        line = r.summary().replace(f"org {r.org_id}", f"org {o.slug}")
        if r.ok:
            out.print(line)
        else:
            bad += 1
            err.print(line)
            for p in r.problems[1:6]:
                err.print(f"  also: seq {p.seq}: {p.what}")
    raise typer.Exit(1 if bad else 0)


@audit_app.command("verify-package")
def audit_verify_package(
    file: Annotated[Path, typer.Argument(help="the package archive (zip) to verify")],
    public_key: Annotated[Path, typer.Option(help="the checkpoint key you trust (PEM), e.g. from "
                                                  "GET /api/v1/audit/public-key")],
    witness: Annotated[Path | None, typer.Option(
        help="an earlier signed checkpoint you kept: the package's checkpoint must extend it (the package then "
             "needs its consistency proof: ask with consistent_with)")] = None,
) -> None:
    """Verify an auditor's package offline, with nothing but the archive and the key: the manifest's and the
    checkpoint's signatures, every file's hash, and each entry's inclusion proof from its own bytes to the signed
    Merkle root. Exit 0 when it holds, 1 when it is rejected (the first reason, then the others)."""
    from domain.audit.checkpoints import Checkpoint
    from domain.audit.package_verify import load_public_key, verify_package

    key = load_public_key(public_key)
    seen = None
    if witness is not None:
        try:
            seen = Checkpoint.from_json(witness.read_bytes())
        except (ValueError, KeyError, TypeError) as exc:
            raise typer.BadParameter(f"{witness}: not a signed audit checkpoint ({exc})",
                                     param_hint="--witness") from None
    if not file.is_file():
        raise FileNotFoundError(2, "no such file", str(file))
    r = verify_package(file, key, seen)
    (out if r.ok else err).print(r.summary(), markup=False, highlight=False, soft_wrap=True)
    for p in r.problems[1:10]:
        err.print(f"  also: {p}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(0 if r.ok else 1)


@audit_app.command("checkpoint")
def audit_checkpoint(
    org: Annotated[str | None, typer.Option(help="organization slug; all when omitted")] = None,
) -> None:
    """Seal pending entries and sign each org's current head into the checkpoint store."""
    from core.db import TenantSessions
    from domain.audit import service
    from domain.audit.checkpoints import CheckpointStore, load_signing_key

    s, sessions = _owner()
    assert isinstance(sessions, TenantSessions)
    key = load_signing_key(s.resolved_signing_key_path, s.signing_key)
    store = CheckpointStore(s.resolved_checkpoint_dir)
    with sessions.begin(None) as db:
        orgs = db.execute(text("SELECT id, slug FROM organizations ORDER BY slug")).all()
    refused = 0
    for o in orgs:
        if org and o.slug != org:
            continue
        try:  # write_checkpoint seals what is pending first
            with sessions.begin(o.id) as db:
                cp = service.write_checkpoint(db, o.id, key, store, requested_by=_cli_actor())
                size, _ = service.head(db, o.id)
        except service.ChainNotVerified as exc:
            err.print(f"{o.slug}: {exc.message}")
            refused += 1
            continue
        out.print(f"{o.slug}: " + (f"signed checkpoint at {cp.size} entries (key {cp.key_id})" if cp
                                   else f"head unchanged at {size} entries"))
    raise typer.Exit(1 if refused else 0)


@audit_app.command("export")
def audit_export(
    org: Annotated[str, typer.Option(help="organization slug")],
    output: Annotated[Path, typer.Option("--out", help="file to write")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
) -> None:
    """Stream the org's log to a file; JSONL comes with `<out>.checkpoint.json` for offline verification."""
    from core.db import TenantSessions
    from domain.audit import service
    from domain.audit.checkpoints import CheckpointStore, load_signing_key, sign
    from domain.audit.service import AuditFilter
    from domain.roles import SYSTEM_ACTOR, Caller, Role

    if fmt not in ("jsonl", "csv"):
        raise typer.BadParameter("must be jsonl or csv", param_hint="--format")
    s, sessions = _owner()
    assert isinstance(sessions, TenantSessions)
    org_id = _org_id(sessions, org)
    caller = Caller(org_id=org_id, org_slug=org, role=Role.auditor, actor=SYSTEM_ACTOR)
    key = load_signing_key(s.resolved_signing_key_path, s.signing_key)
    verified = True
    try:
        with sessions.begin(org_id) as db:
            service.write_checkpoint(db, org_id, key, CheckpointStore(s.resolved_checkpoint_dir),
                                     requested_by=_cli_actor())
    except service.ChainNotVerified as exc:
        # The export still goes out, for the investigation; nothing vouches for it.
        err.print(f"warning: {exc.message}; exporting WITHOUT a signed checkpoint")
        verified = False
    root = None
    with sessions.begin(org_id) as db:
        size, head_hash = service.head(db, org_id)
        if verified:
            from domain.audit import tree

            try:  # the tree head too: the checkpoint file then serves as a witness (`audit verify --witness`)
                tree.extend(db, str(org_id), size)
                root = tree.root_at(db, str(org_id), size)
            except tree.TreeGap:
                root = None
    import datetime as dt

    n = 0
    with sessions.begin(org_id) as db, output.open("wb") as fh:
        # Up to the signed head only: entries sealed meanwhile belong to the next export.
        for line in service.export_lines(db, caller, AuditFilter(), fmt, to_seq=size):
            fh.write(line)
            n += 1
    if fmt == "jsonl" and verified:
        cp = sign(key, str(org_id), size, head_hash, dt.datetime.now(dt.UTC), root)
        cp_path = output.with_name(output.name + ".checkpoint.json")
        cp_path.write_bytes(cp.to_json())
        out.print(f"wrote {size} entries to {output} and the signed checkpoint to {cp_path}")
    else:
        out.print(f"wrote {size} entries to {output}")
    raise typer.Exit(0 if verified else 1)


# ---------------------------------------------------------------- lake


@lake_app.command("maintain")
def lake_maintain(
    table: Annotated[list[str] | None, typer.Option(help="table name; all when omitted")] = None,
    retention_hours: Annotated[int, typer.Option(help="time travel kept by vacuum (720 h = 30 days)")] = 720,
    allow_short_retention: Annotated[bool, typer.Option(
        help="allow a retention below the tables' deletedFileRetentionDuration (7 days)")] = False,
) -> None:
    """Compact small files, write checkpoints and vacuum old files of the Delta tables."""
    from core.db import TenantSessions
    from domain.reports.service import pinned_versions
    from lake.maintain import maintain_lake
    from lake.writer import Lake

    lake = Lake.from_settings(_settings())
    try:
        _, sessions = _owner()
        assert isinstance(sessions, TenantSessions)
        try:
            with sessions.begin(None) as s:
                pinned = pinned_versions(s)  # what finalized reports read stays readable
        finally:
            sessions.engine.dispose()
    except Exception as exc:  # noqa: BLE001 - without the database, vacuum keeps every version rather than guess
        out.print(f"[yellow]the versions finalized reports pin could not be read ({exc}): vacuum keeps them all[/]")
        pinned = {name: 0 for name in lake.tables()}
    for r in maintain_lake(lake, tables=table, retention_hours=retention_hours,
                           enforce_retention=not allow_short_retention, pinned=pinned):
        out.print(r.summary())


# ---------------------------------------------------------------- backups


@backup_app.command("create")
def backup_create(
    dest: Annotated[Path, typer.Argument(help="a new or empty folder, or a file ending .tar or .tar.gz")],
    include_signing_key: Annotated[bool, typer.Option(
        help="also copy the PRIVATE checkpoint signing key (then keep the backup as secret as the key)")] = False,
    with_temporal: Annotated[bool, typer.Option(
        help="also copy the Temporal dev server's database (<data dir>/temporal.db, as `flasktrack up` runs it); "
             "take it with the workers stopped")] = False,
) -> None:
    """Back up the database, the signed audit checkpoints, their public keys and the lake, at one point in time."""
    from flasktrack.backup import create_backup

    report = create_backup(_with_database(), dest, include_signing_key=include_signing_key,
                           with_temporal=with_temporal)
    for w in report.warnings:
        err.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)
    out.print(report.summary(), markup=False, highlight=False, soft_wrap=True)


@backup_app.command("restore")
def backup_restore(
    src: Annotated[Path, typer.Argument(help="a backup folder or archive made by `backup create`")],
) -> None:
    """Restore a backup into an EMPTY database, lake and checkpoint folder (refused otherwise, nothing changed);
    then run `flasktrack audit verify`."""
    from flasktrack.backup import restore_backup

    report = restore_backup(_with_database(), src)
    out.print(report.summary(), markup=False, highlight=False, soft_wrap=True)


def error_line(exc: BaseException) -> str:
    """What went wrong, in one line an operator can act on (no traceback: the cause is in the message)."""
    from pydantic import ValidationError
    from sqlalchemy.exc import DBAPIError

    from domain.errors import DomainError

    if isinstance(exc, DomainError):
        why = exc.message + (f" ({'; '.join(exc.reasons)})" if exc.reasons else "")
    elif isinstance(exc, click.exceptions.ClickException):
        why = exc.format_message() + (" (see --help)" if isinstance(exc, click.exceptions.UsageError) else "")
    elif isinstance(exc, OSError) and exc.filename is not None:
        why = f"{exc.filename}: {exc.strerror or exc}"
    elif isinstance(exc, DBAPIError):
        why = "database: " + (str(exc.orig or exc).strip().splitlines() or [type(exc).__name__])[0]
    elif isinstance(exc, ValidationError):
        why = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
    else:
        why = f"{type(exc).__name__}: {exc}"
    return "error: " + " ".join(why.split())


def run_cli(args: list[str] | None = None) -> int:
    """Run one command; its exit code. Every failure is one line on stderr and exit 2 (a command's own
    verdict, like `audit verify` finding tampering, keeps its documented code)."""
    try:
        result = app(args=args, standalone_mode=False)  # click returns the exit code of typer.Exit here
        return result if isinstance(result, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err.print("aborted")
        return 130
    except click.exceptions.NoArgsIsHelpError as e:
        e.show()  # the help, as `no_args_is_help` promises
        return 2
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            return e.code or 0
        err.print("error: " + " ".join(str(e.code).split()), markup=False, highlight=False,
                  soft_wrap=True)  # e.g. `up`: "port 8000 is in use: …"
        return 2
    except Exception as exc:  # noqa: BLE001 - the one place CLI errors become a line and exit 2
        err.print(error_line(exc), markup=False, highlight=False, soft_wrap=True)
        return 2
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main() -> None:
    sys.exit(run_cli())


if __name__ == "__main__":
    from flasktrack.postgres import exit_now

    exit_now(run_cli())  # Temporal's client can abort at interpreter exit (sdk-python #300)
