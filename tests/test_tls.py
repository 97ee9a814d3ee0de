"""TLS in transit: the API and Flight SQL from configured certificate files (a wrong file is one configuration
line and exit 2), and `flasktrack up --tls` with its development CA, end to end over https:// and grpc+tls://."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import httpx
import pytest
from cryptography import x509
from cryptography.x509 import load_pem_x509_certificate

from core.tls import check_key_pair, ensure_dev_certificates
from flasktrack.demo import DEMO_PASSWORD
from flasktrack.postgres import scratch_database, scratch_server

ROOT = Path(__file__).resolve().parents[1]
ROOT_CERTS = "adbc.flight.sql.client_option.tls_root_certs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flasktrack.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "FLASKTRACK_LOG_LEVEL": "WARNING", **env}, timeout=120)


def test_the_development_ca_is_made_once_and_its_keys_are_private(tmp_path: Path) -> None:
    first = ensure_dev_certificates(tmp_path / "tls", ["localhost", "127.0.0.1"])
    files = {p: p.read_bytes() for p in (tmp_path / "tls").iterdir()}
    assert {p.name for p in files} == {"ca.pem", "ca-key.pem", "server.pem", "server-key.pem"}
    for key in ("ca-key.pem", "server-key.pem"):
        assert (tmp_path / "tls" / key).stat().st_mode & 0o777 == 0o600
    check_key_pair(first.cert_file, first.key_file)
    again = ensure_dev_certificates(tmp_path / "tls", ["localhost", "127.0.0.1"])
    assert again == first and {p: p.read_bytes() for p in files} == files  # reused as it is
    # A new name to serve: a new server certificate from the same CA, so clients keep trusting it.
    grown = ensure_dev_certificates(tmp_path / "tls", ["localhost", "127.0.0.1", "lab-gw.example.org"])
    assert grown.ca_file.read_bytes() == files[first.ca_file] and grown.cert_file.read_bytes() != files[first.cert_file]
    ca = load_pem_x509_certificate(grown.ca_file.read_bytes())
    served = load_pem_x509_certificate(grown.cert_file.read_bytes())
    served.verify_directly_issued_by(ca)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "lab-gw.example.org" in names.get_values_for_type(x509.DNSName)
    assert (tmp_path / "tls" / "server-key.pem").stat().st_mode & 0o777 == 0o600


def test_a_wrong_certificate_or_key_file_is_one_configuration_line_and_exit_2(tmp_path: Path) -> None:
    one = ensure_dev_certificates(tmp_path / "one", ["localhost"])
    other = ensure_dev_certificates(tmp_path / "other", ["localhost"])
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    cases: dict[tuple[tuple[str, str], ...], str] = {
        (("CERT", str(tmp_path / "missing.pem")), ("KEY", str(one.key_file))): "missing.pem: no such file",
        (("CERT", str(tmp_path)), ("KEY", str(one.key_file))): "is a directory",
        (("CERT", str(garbage)), ("KEY", str(one.key_file))): "garbage.pem: not a PEM certificate",
        (("CERT", str(one.cert_file)), ("KEY", str(other.key_file))): "not the private key of the certificate",
        (("CERT", str(one.cert_file)), ("KEY", str(one.cert_file))): "not an unencrypted PEM private key",
        (("CERT", str(one.cert_file)),): "FLASKTRACK_TLS_KEY_FILE",
        (("KEY", str(one.key_file)),): "FLASKTRACK_TLS_CERT_FILE",
    }
    if os.geteuid() != 0:  # root reads any file
        unreadable = tmp_path / "unreadable.pem"
        unreadable.write_bytes(one.cert_file.read_bytes())
        unreadable.chmod(0)
        cases[(("CERT", str(unreadable)), ("KEY", str(one.key_file)))] = "cannot read"
    for files, says in cases.items():
        r = _cli("api", **{f"FLASKTRACK_TLS_{kind}_FILE": path for kind, path in files})
        assert (r.returncode, r.stderr.count("\n"), "Traceback" in r.stderr) == (2, 1, False), (files, r.stderr)
        assert r.stderr.startswith("configuration error: set FLASKTRACK_TLS_") and says in r.stderr, (files, r.stderr)


@pytest.fixture(scope="module")
def up_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, int, Path]]:
    """`flasktrack up --tls` on free ports against a database of its own (it seeds the demo organization);
    Temporal unreachable, which the API and Flight SQL do not need to answer."""
    data_dir = tmp_path_factory.mktemp("up-tls")
    api_port, flight_port = _free_port(), _free_port()
    with scratch_database(scratch_server("test"), "ft_tls") as url:
        out = (data_dir / "up.out").open("wb")
        env = {**os.environ, "FLASKTRACK_DATABASE_URL": url, "FLASKTRACK_DATA_DIR": str(data_dir),
               "FLASKTRACK_API_PORT": str(api_port), "FLASKTRACK_FLIGHT_PORT": str(flight_port),
               "FLASKTRACK_TEMPORAL_ADDRESS": "127.0.0.1:1", "FLASKTRACK_LOG_LEVEL": "WARNING",
               "COLUMNS": "400"}  # the banner on one line per row
        for name in ("FLASKTRACK_TLS_CERT_FILE", "FLASKTRACK_TLS_KEY_FILE"):
            env.pop(name, None)
        up = subprocess.Popen([sys.executable, "-m", "flasktrack.cli", "up", "--tls"], stdout=out,
                              stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            deadline = time.monotonic() + 120
            while b"Ctrl-C stops everything" not in (data_dir / "up.out").read_bytes():
                assert up.poll() is None and time.monotonic() < deadline, (data_dir / "up.out").read_text()
                time.sleep(0.2)
            yield (data_dir / "up.out").read_text(), api_port, flight_port, data_dir / "tls" / "ca.pem"
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
            out.close()


def test_up_tls_banner_names_https_grpc_tls_and_the_ca_to_trust(up_tls: tuple[str, int, int, Path]) -> None:
    banner, api_port, flight_port, ca = up_tls
    assert f"https://127.0.0.1:{api_port}" in banner and f"grpc+tls://127.0.0.1:{flight_port}" in banner, banner
    assert str(ca.resolve()) in banner and "http://127.0.0.1" not in banner, banner
    assert (ca.parent / "server-key.pem").stat().st_mode & 0o777 == 0o600


def test_up_tls_serves_the_api_over_https_to_clients_that_trust_the_ca(up_tls: tuple[str, int, int, Path]) -> None:
    _, api_port, _, ca = up_tls
    trusting = ssl.create_default_context(cafile=str(ca))
    r = httpx.get(f"https://localhost:{api_port}/healthz", verify=trusting, timeout=30)
    assert r.status_code in (200, 503) and "checks" in r.json(), r.text  # 503: Temporal is unreachable here
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://localhost:{api_port}/healthz", timeout=30)  # the system's CAs do not know ours
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://localhost:{api_port}/healthz", timeout=30)  # plaintext to the TLS port


def test_up_tls_serves_flight_sql_over_grpc_tls(up_tls: tuple[str, int, int, Path]) -> None:
    _, _, flight_port, ca = up_tls
    login = {"username": "auditor@demo.example.org", "password": DEMO_PASSWORD}
    deadline = time.monotonic() + 60
    while True:  # the banner waits for the API only; Flight SQL may still be starting
        try:
            with flight_sql.connect(f"grpc+tls://localhost:{flight_port}",
                                    db_kwargs={**login, ROOT_CERTS: ca.read_text()}, autocommit=True) as conn:
                with conn.cursor() as cur:
                    cur.execute("SELECT 41 + 1 AS answer")
                    assert cur.fetchall() == [(42,)]
            break
        except adbc_driver_manager.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with pytest.raises(adbc_driver_manager.OperationalError, match="certificate signed by unknown authority"):
        with flight_sql.connect(f"grpc+tls://localhost:{flight_port}", db_kwargs=login, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
