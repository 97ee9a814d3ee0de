"""Flight SQL over TLS: ADBC connects with grpc+tls:// trusting the development CA; a client that trusts
another CA, or speaks plaintext, gets nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pytest
from pyarrow import flight

from core.tls import DevCertificates, ServerCertificate, ensure_dev_certificates
from flight.server import FlightSqlServer
from tests.flight.flightkit import PASSWORD, Lake, RecordingAuthenticator, connect, query

ROOT_CERTS = "adbc.flight.sql.client_option.tls_root_certs"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    return ensure_dev_certificates(tmp_path_factory.mktemp("tls"), ["localhost", "127.0.0.1"])


@pytest.fixture(scope="module")
def tls_port(lake: Lake, auth: RecordingAuthenticator, certs: DevCertificates) -> Iterator[int]:
    pair = ServerCertificate.from_files(certs.cert_file, certs.key_file)
    srv = FlightSqlServer("grpc+tls://127.0.0.1:0", lake.uri, auth, warm_connections=0,
                          tls_certificates=[flight.CertKeyPair(pair.cert_pem, pair.key_pem)])
    yield srv.port
    srv.shutdown()


def _connect(uri: str, **options: str) -> Any:
    return flight_sql.connect(uri, db_kwargs={"username": "ana@a.example", "password": PASSWORD, **options},
                              autocommit=True)


def test_adbc_queries_over_tls_trusting_the_ca(tls_port: int, certs: DevCertificates) -> None:
    for host in ("localhost", "127.0.0.1"):  # both names are in the certificate
        with _connect(f"grpc+tls://{host}:{tls_port}", **{ROOT_CERTS: certs.ca_file.read_text()}) as conn:
            runs = query(conn, "SELECT run_id FROM runs ORDER BY run_id")
            assert runs.column("run_id").to_pylist() == ["a-run-1", "a-run-2", "a-run-3"]  # still only org A


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_port: int, tmp_path: Path) -> None:
    stranger = ensure_dev_certificates(tmp_path / "other-ca", ["localhost"])  # another CA, same names
    for options in ({}, {ROOT_CERTS: stranger.ca_file.read_text()}):
        with pytest.raises(adbc_driver_manager.OperationalError, match="certificate signed by unknown authority"):
            with _connect(f"grpc+tls://localhost:{tls_port}", **options) as conn:
                query(conn, "SELECT 1")


def test_plaintext_to_the_tls_port_fails(tls_port: int) -> None:
    with pytest.raises(adbc_driver_manager.OperationalError, match="Unavailable"):
        with connect(f"grpc://127.0.0.1:{tls_port}", "ana@a.example") as conn:
            query(conn, "SELECT 1")
