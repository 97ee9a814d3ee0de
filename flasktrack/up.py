"""`flasktrack up`: the whole platform on one machine, as child processes.

Starts embedded PostgreSQL and the Temporal dev server unless external ones are
configured, migrates, seeds the demo org on first start, then runs the API, the
worker, the lake sink and the Flight SQL server, restarting any that die. Ctrl-C
stops every child cleanly; the next `up` reuses the data under FLASKTRACK_DATA_DIR.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core.config import Settings
from core.db import TenantSessions, make_engine, owner_url
from flasktrack.demo import DEMO_ORG, DEMO_PASSWORD, DEMO_USERS, seed_demo
from flasktrack.postgres import stop_embedded_postgres, upgrade_schema, with_database

console = Console(stderr=True)

# The platform's services (name → module that must exist), each runnable alone as `flasktrack <name>`.
SERVICES = {"api": "api.main", "worker": "worker.main", "sink": "lake.service", "flight": "flight.service"}


def available_services() -> list[str]:
    import importlib.util

    return [name for name, module in SERVICES.items() if importlib.util.find_spec(module) is not None]


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self, env: dict[str, str], log_dir: Path) -> None:
        log = open(log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - handed to the child
        # Own process group: Ctrl-C reaches `up`, which then stops children in order.
        self.proc = subprocess.Popen(self.argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_SA_TYPES = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "TEXT": "Text", "INT": "Int"}


def start_temporal(settings: Settings, log_dir: Path) -> Child:
    from workflows.run import SEARCH_ATTRIBUTES

    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    db = (settings.data_dir / "temporal.db").resolve()
    # Runs carry these, so an operator finds them in the web UI by organization, protocol, subject, status.
    attributes = [arg for k in SEARCH_ATTRIBUTES
                  for arg in ("--search-attribute", f"{k.name}={_SA_TYPES[k.indexed_value_type.name]}")]
    child = Child("temporal", [
        binary, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(settings.temporal_port),
        "--ui-port", str(settings.temporal_port + 1000), "--db-filename", str(db), "--log-level", "warn",
        "--ui-disable-news-fetch", *attributes,
    ])
    child.start(dict(os.environ), log_dir)
    if not wait_for_port("127.0.0.1", settings.temporal_port, 60):
        raise SystemExit(f"Temporal dev server did not start; see {log_dir / 'temporal.log'}")
    return child


def dev_tls(settings: Settings, env: dict[str, str]) -> tuple[Settings, Path]:
    """`up --tls`: the development CA and server certificate under the data dir (made on the first start,
    reused after), handed to the services like configured ones; the CA file is what clients trust."""
    from core.tls import ensure_dev_certificates, serving_names

    certs = ensure_dev_certificates((settings.data_dir / "tls").resolve(),
                                    serving_names(settings.api_host, settings.flight_host))
    env["FLASKTRACK_TLS_CERT_FILE"] = str(certs.cert_file)
    env["FLASKTRACK_TLS_KEY_FILE"] = str(certs.key_file)
    return settings.model_copy(update={"tls_cert_file": certs.cert_file, "tls_key_file": certs.key_file}), certs.ca_file


# Where the worker, the sink and Flight SQL expose /metrics under `up`, unless configured otherwise.
DEFAULT_METRICS_PORTS = {"worker_metrics_port": 9464, "sink_metrics_port": 9465, "flight_metrics_port": 9466}


def metrics_ports(settings: Settings, env: dict[str, str]) -> Settings:
    """The services' metrics ports: configured ones kept, the others the defaults, handed to the children."""
    chosen = {name: getattr(settings, name) or port for name, port in DEFAULT_METRICS_PORTS.items()}
    for name, port in chosen.items():
        env[f"FLASKTRACK_{name.upper()}"] = str(port)
    return settings.model_copy(update=chosen)


def print_banner(settings: Settings, temporal_ui: str | None, seeded: bool, ca_file: Path | None = None) -> None:
    t = Table(title="Flask Track is running", show_header=False)
    http, grpc = ("https", "grpc+tls") if settings.tls else ("http", "grpc")
    t.add_row("API", f"{http}://{settings.api_host}:{settings.api_port}  (docs: /docs, health: /healthz)")
    t.add_row("Web pages", f"{http}://{settings.api_host}:{settings.api_port}/ui/  (log in with a demo login below)")
    t.add_row("Flight SQL", f"{grpc}://{settings.flight_host}:{settings.flight_port}")
    if ca_file is not None:
        t.add_row("Trust CA", f"{ca_file}  (development only; e.g. curl --cacert, "
                              "ADBC adbc.flight.sql.client_option.tls_root_certs)")
    if temporal_ui:
        t.add_row("Temporal UI", temporal_ui)
    ports = [p for p in (settings.worker_metrics_port, settings.sink_metrics_port, settings.flight_metrics_port) if p]
    t.add_row("Metrics", f"{http}://{settings.api_host}:{settings.api_port}/metrics; worker, sink, Flight SQL: "
                         f"{settings.metrics_host} ports {', '.join(map(str, ports))} (/metrics, plain HTTP)")
    t.add_row("Data", str(settings.data_dir.resolve()))
    console.print(t)
    title = f"Demo logins (org '{DEMO_ORG}', password '{DEMO_PASSWORD}')"
    u = Table(title=title + (" — created now" if seeded else ""))
    u.add_column("role")
    u.add_column("email")
    for role, email, _ in DEMO_USERS:
        u.add_row(role.value, email)
    console.print(u)
    console.print("Ctrl-C stops everything.")


def run_up(settings: Settings, *, tls: bool = False) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    if port_in_use(settings.api_host, settings.api_port):
        raise SystemExit(f"port {settings.api_port} is in use: stop the other process or set FLASKTRACK_API_PORT")
    env = dict(os.environ)
    env["FLASKTRACK_DATA_DIR"] = str(settings.data_dir.resolve())
    settings = metrics_ports(settings, env)
    ca_file = None
    if tls and settings.tls:
        console.print("serving TLS with the configured certificate (FLASKTRACK_TLS_CERT_FILE)")
    elif tls:
        settings, ca_file = dev_tls(settings, env)
    console.print("starting PostgreSQL…" if not settings.database_url else "using external PostgreSQL")
    settings = with_database(settings)  # an embedded server lives as long as this process
    db_url = owner_url(settings)
    env["FLASKTRACK_DATABASE_URL"] = db_url
    upgrade_schema(db_url, settings.app_db_password,
                   settings.sink_db_password.get_secret_value() if settings.sink_db_password else None)
    owner = TenantSessions(make_engine(db_url, pool_size=2))
    seeded = seed_demo(owner)
    owner.engine.dispose()

    temporal: Child | None = None
    temporal_ui = None
    if not settings.temporal_address:
        console.print("starting Temporal dev server…")
        temporal = start_temporal(settings, log_dir)
        env["FLASKTRACK_TEMPORAL_ADDRESS"] = f"127.0.0.1:{settings.temporal_port}"
        temporal_ui = f"http://127.0.0.1:{settings.temporal_port + 1000}"

    children = [Child(name, [sys.executable, "-m", "flasktrack.cli", name]) for name in available_services()]
    for c in children:
        c.start(env, log_dir)
    if not wait_for_port(settings.api_host, settings.api_port, 60):
        console.print(f"[red]the API did not start; see {log_dir / 'api.log'}[/red]")
    print_banner(settings, temporal_ui, seeded, ca_file)

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stopping:
        for c in children:
            if c.proc is not None and c.proc.poll() is not None and not stopping:
                now = time.monotonic()
                c.restarts = [t for t in c.restarts if now - t < 60] + [now]
                if len(c.restarts) > 5:
                    console.print(f"[red]{c.name} keeps failing; see {log_dir / (c.name + '.log')}[/red]")
                    stopping = True
                    break
                console.print(f"[yellow]{c.name} exited ({c.proc.returncode}); restarting[/yellow]")
                c.start(env, log_dir)
        time.sleep(0.5)
    console.print("stopping…")
    for c in reversed(children):
        c.stop()
    if temporal:
        temporal.stop()
    stop_embedded_postgres()
    console.print("stopped.")
    return 0
