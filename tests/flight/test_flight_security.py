"""Who may ask, what they see, and what the sandbox refuses — through the real ADBC client."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from adbc_driver_manager import Error as AdbcError

from flight import protocol as P
from flight.server import FlightSqlServer, serve
from lake.sandbox import SandboxSettings, open_connection
from tests.flight.flightkit import ORG_A, ORG_B, PASSWORD, Lake, RecordingAuthenticator, connect, query


def _raw_client(uri: str, username: str, password: str = PASSWORD) -> tuple[Any, Any]:
    client = pa_flight.connect(uri)
    token = client.authenticate_basic_token(username, password)
    return client, pa_flight.FlightCallOptions(headers=[token])


def _statement(sql: str) -> Any:
    return pa_flight.FlightDescriptor.for_command(P.pack(P.CommandStatementQuery(query=sql)))


# --- authentication and roles --------------------------------------------------------------


def test_wrong_credentials_are_unauthenticated(uri: str, auth: RecordingAuthenticator) -> None:
    # Credentials are checked on the first call after Handshake, where the client's address is known.
    with connect(uri, "ana@a.example", "wrong password") as conn:
        with pytest.raises(AdbcError, match="UNAUTHENTICATED"):
            query(conn, "SELECT 1")
        with pytest.raises(AdbcError, match="UNAUTHENTICATED"):  # the refused token stays refused
            query(conn, "SELECT 1")
    failed = [e for p, e in auth.events if p is None and e.username == "ana@a.example"]
    assert failed and failed[-1].outcome == "unauthenticated"
    assert failed[-1].client_address == "127.0.0.1"


def test_calls_without_a_valid_bearer_are_refused(uri: str) -> None:
    client = pa_flight.connect(uri)
    with pytest.raises(pa_flight.FlightUnauthenticatedError):
        client.get_flight_info(_statement("SELECT 1"))
    forged = pa_flight.FlightCallOptions(headers=[(b"authorization", b"Bearer not-a-token")])
    with pytest.raises(pa_flight.FlightUnauthenticatedError):
        client.get_flight_info(_statement("SELECT 1"), forged)
    client.close()


def test_api_key_login(uri: str) -> None:
    conn = connect(uri, "apikey", "ftak_b_owner_key")
    try:
        assert query(conn, "SELECT DISTINCT org_id FROM runs").to_pylist() == [{"org_id": ORG_B}]
    finally:
        conn.close()


def test_technician_is_permission_denied(uri: str, auth: RecordingAuthenticator) -> None:
    conn = connect(uri, "tec@a.example")  # may log in (connecting reads GetSqlInfo) …
    try:
        sql = "SELECT * FROM runs -- technician"
        with pytest.raises(AdbcError, match="UNAUTHORIZED|PERMISSION") as err:
            query(conn, sql)
        assert "may not run queries" in str(err.value)
        with pytest.raises(AdbcError, match="may not browse"):
            conn.adbc_get_objects().read_all()
    finally:
        conn.close()
    [(principal, event)] = auth.events_for(sql)
    assert principal is not None and principal.role == "technician" and event.outcome == "denied"


def test_auditor_may_query(uri: str) -> None:
    conn = connect(uri, "aud@a.example")
    try:
        assert query(conn, "SELECT count(*) AS n FROM audit_log").to_pylist() == [{"n": 1}]
        assert query(conn, "SELECT DISTINCT org_id FROM audit_log").to_pylist() == [{"org_id": ORG_A}]
    finally:
        conn.close()


def test_analyst_does_not_see_the_audit_log(ana: Any) -> None:
    # Analysts may not read the audit log over the API: the lake's copy follows the same rule.
    tables = ana.adbc_get_objects().read_all().to_pylist()[0]["catalog_db_schemas"][0]["db_schema_tables"]
    assert "audit_log" not in {t["table_name"] for t in tables}
    for sql in ("SELECT * FROM audit_log", "SELECT count(*) FROM audit_log", 'SELECT * FROM "audit_log@v0"',
                "SELECT r.run_id FROM runs r JOIN flasktrack.main.audit_log a ON true"):
        with pytest.raises(AdbcError, match="does not exist"):
            query(ana, sql)


# --- tenant isolation ---------------------------------------------------------------------


def test_queries_see_only_the_callers_org(ana: Any, bob: Any) -> None:
    for table in ("runs", "step_events", "form_x"):
        assert set(query(ana, f"SELECT org_id FROM {table}").column("org_id").to_pylist()) == {ORG_A}
        assert set(query(bob, f"SELECT org_id FROM {table}").column("org_id").to_pylist()) == {ORG_B}
    sneaky = f"SELECT * FROM runs WHERE org_id = '{ORG_B}' OR status = 'B-CONFIDENTIAL'"
    assert query(ana, sneaky).num_rows == 0
    assert query(ana, "SELECT count(*) AS n FROM form_x").to_pylist() == [{"n": 2}]


def test_other_orgs_tables_do_not_exist_for_you(ana: Any, bob: Any) -> None:
    assert query(bob, "SELECT b_only_secret_column FROM form_bsecret").num_rows == 1
    for sql in ("SELECT * FROM form_bsecret", "SELECT b_only_secret_column FROM form_bsecret"):
        with pytest.raises(AdbcError, match="does not exist") as err:
            query(ana, sql)
        assert "b_only_secret_column" not in str(err.value)
    with pytest.raises(AdbcError, match="does not exist"):
        query(ana, "SELECT * FROM internal_state")  # not partitioned by org: nobody's
    with pytest.raises(AdbcError):
        ana.adbc_get_table_schema("form_bsecret")
    names = [
        t["table_name"]
        for t in ana.adbc_get_objects().read_all().to_pylist()[0]["catalog_db_schemas"][0]["db_schema_tables"]
    ]
    assert "form_bsecret" not in names and "internal_state" not in names
    bob_names = [
        t["table_name"]
        for t in bob.adbc_get_objects().read_all().to_pylist()[0]["catalog_db_schemas"][0]["db_schema_tables"]
    ]
    assert "form_bsecret" in bob_names and "form_big" not in bob_names


def test_replayed_ticket_of_another_org_returns_nothing(uri: str, auth: RecordingAuthenticator) -> None:
    bob_client, bob_opts = _raw_client(uri, "bob@b.example")
    ana_client, ana_opts = _raw_client(uri, "ana@a.example")
    ticket = bob_client.get_flight_info(_statement("SELECT * FROM runs"), bob_opts).endpoints[0].ticket
    with pytest.raises(pa_flight.FlightUnauthorizedError, match="another session"):
        ana_client.do_get(ticket, ana_opts).read_all()
    assert any(p is not None and p.org_id == ORG_A and e.outcome == "denied" for p, e in auth.events)
    # The owner can still use it once; afterwards it is gone for everybody.
    assert set(bob_client.do_get(ticket, bob_opts).read_all().column("org_id").to_pylist()) == {ORG_B}
    for client, opts in ((ana_client, ana_opts), (bob_client, bob_opts)):
        with pytest.raises(pa_flight.FlightServerError, match="not found"):
            client.do_get(ticket, opts).read_all()
    # Metadata tickets carry only the command: replayed, they answer for the caller's org.
    command = P.pack(P.CommandGetTables())
    info = bob_client.get_flight_info(pa_flight.FlightDescriptor.for_command(command), bob_opts)
    tables = ana_client.do_get(info.endpoints[0].ticket, ana_opts).read_all().column("table_name").to_pylist()
    assert "form_bsecret" not in tables
    bob_client.close()
    ana_client.close()


def test_prepared_statement_handles_are_bound_to_their_session(uri: str) -> None:
    bob_client, bob_opts = _raw_client(uri, "bob@b.example")
    ana_client, ana_opts = _raw_client(uri, "ana@a.example")
    request = P.pack(P.ActionCreatePreparedStatementRequest(query="SELECT * FROM runs"))
    [result] = list(bob_client.do_action(pa_flight.Action("CreatePreparedStatement", request), bob_opts))
    _, created = P.unpack(result.body.to_pybytes())
    handle = created.prepared_statement_handle
    schema = pa.ipc.read_schema(pa.py_buffer(created.dataset_schema))
    assert schema.names == ["org_id", "run_id", "status", "updated_at"]
    command = P.CommandPreparedStatementQuery(prepared_statement_handle=handle)
    execute = pa_flight.FlightDescriptor.for_command(P.pack(command))
    with pytest.raises(pa_flight.FlightUnauthorizedError):
        ana_client.get_flight_info(execute, ana_opts)
    close = P.pack(P.ActionClosePreparedStatementRequest(prepared_statement_handle=handle))
    with pytest.raises(pa_flight.FlightUnauthorizedError):
        list(ana_client.do_action(pa_flight.Action("ClosePreparedStatement", close), ana_opts))
    # Same person, new login (new token): still refused.
    bob_again, bob_again_opts = _raw_client(uri, "bob@b.example")
    with pytest.raises(pa_flight.FlightUnauthorizedError):
        bob_again.get_flight_info(execute, bob_again_opts)
    info = bob_client.get_flight_info(execute, bob_opts)
    assert bob_client.do_get(info.endpoints[0].ticket, bob_opts).read_all().num_rows == 2
    list(bob_client.do_action(pa_flight.Action("ClosePreparedStatement", close), bob_opts))
    for client in (bob_client, ana_client, bob_again):
        client.close()


# --- the sandbox --------------------------------------------------------------------------

ESCAPES = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('/tmp/x.parquet')",
    "COPY (SELECT * FROM runs) TO '/tmp/flasktrack-leak.csv'",
    "ATTACH '/tmp/flasktrack-leak.duckdb' AS leak",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "PRAGMA threads = 64",
    "CREATE SECRET leak (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "EXPORT DATABASE '/tmp/flasktrack-leak'",
    "CREATE TABLE t AS SELECT 1",
    "INSERT INTO runs VALUES ('x')",
    "SELECT 1; SELECT 2",
]


@pytest.mark.parametrize("sql", ESCAPES)
def test_sandbox_escapes_are_refused(ana: Any, auth: RecordingAuthenticator, sql: str) -> None:
    with pytest.raises(AdbcError, match="refused"):
        query(ana, sql)
    assert [e.outcome for _, e in auth.events_for(sql)] == ["refused"]


SYSTEM_CATALOG = [
    "SELECT * FROM pg_attribute",
    "SELECT * FROM pg_catalog.pg_class",
    "SELECT table_name FROM information_schema.tables",
    "SELECT * FROM information_schema.columns",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_tables",
    "SELECT * FROM system.main.duckdb_settings()",
    "SELECT * FROM duckdb_views() v JOIN runs r ON true",
    "SELECT * FROM sqlite_master",
    "SELECT (SELECT count(*) FROM pg_namespace) AS n",
    "SELECT * FROM runs WHERE run_id IN (SELECT column_name FROM duckdb_columns())",
    "DESCRIBE pg_class",
    "SUMMARIZE SELECT * FROM pg_type",
    "SHOW TABLES",
    "SHOW ALL TABLES",
    "SELECT * FROM query('SELECT * FROM pg_attribute')",
    "SELECT * FROM pragma_database_size()",
    "SELECT * FROM temp.main.runs",
]


@pytest.mark.parametrize("sql", SYSTEM_CATALOG)
def test_system_catalog_is_not_queryable(ana: Any, sql: str) -> None:
    with pytest.raises(AdbcError, match="does not exist|not available here"):
        query(ana, sql)


def test_only_the_platforms_tables_are_queryable(ana: Any) -> None:
    assert query(ana, "WITH pg_class AS (SELECT 1 AS n) SELECT n FROM pg_class").to_pylist() == [{"n": 1}]
    assert query(ana, "SELECT count(*) AS n FROM flasktrack.main.runs").to_pylist() == [{"n": 3}]
    assert query(ana, "SELECT count(*) AS n FROM main.runs r, range(2)").to_pylist() == [{"n": 6}]
    assert query(ana, "SELECT sum(x) AS s FROM unnest([1, 2]) t(x)").to_pylist() == [{"s": 3}]
    assert query(ana, "DESCRIBE runs").num_rows == 4


def test_getenv_and_python_variables_are_unreachable(ana: Any) -> None:
    with pytest.raises(AdbcError, match="getenv"):
        query(ana, "SELECT getenv('HOME')")
    # Replacement scans would let SQL read Python variables of the server's frames.
    for name in ("self", "sandbox", "dataset", "datasets", "principal", "registered", "'/etc/passwd'"):
        with pytest.raises(AdbcError, match="does not exist"):
            query(ana, f"SELECT * FROM {name}")


def test_sandbox_settings_are_locked() -> None:
    con = open_connection(SandboxSettings(memory_limit="256MB", threads=1))
    secret = pa.table({"leak": ["B-CONFIDENTIAL"]})  # noqa: F841 - a replacement-scan target
    try:
        settings = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
                "'autoload_known_extensions', 'autoinstall_known_extensions', 'python_enable_replacements', "
                "'lock_configuration', 'threads', 'memory_limit', 'TimeZone')"
            ).fetchall()
        )
        assert settings["enable_external_access"] == "false"
        assert settings["autoload_known_extensions"] == "false"
        assert settings["autoinstall_known_extensions"] == "false"
        assert settings["python_enable_replacements"] == "false"
        assert settings["lock_configuration"] == "true"
        assert settings["threads"] == "1" and settings["TimeZone"] == "UTC"
        assert settings["memory_limit"].startswith("244")  # 256 MB in MiB
        with pytest.raises(duckdb.CatalogException):
            con.sql("SELECT * FROM secret").fetchall()
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute("SET memory_limit = '64GB'")
    finally:
        con.close()


@pytest.fixture(scope="module")
def impatient_server(lake: Lake, auth: RecordingAuthenticator) -> Iterator[str]:
    srv = FlightSqlServer("grpc://127.0.0.1:0", lake.uri, auth, query_timeout_s=1.0, warm_connections=0)
    yield f"grpc://127.0.0.1:{srv.port}"
    srv.shutdown()


def test_runaway_query_is_interrupted_and_server_stays_healthy(
    impatient_server: str, auth: RecordingAuthenticator
) -> None:
    conn = connect(impatient_server, "ana@a.example")
    try:
        runaway = "SELECT count(*) FROM range(1000000000000) a"
        started = time.monotonic()
        with pytest.raises(AdbcError, match="timeout|interrupted"):
            query(conn, runaway)
        assert time.monotonic() - started < 10
        assert query(conn, "SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 3}]
    finally:
        conn.close()
    [(_, event)] = auth.wait_for(runaway)
    assert event.outcome == "error" and "timeout" in (event.reason or "")


def test_a_value_that_takes_long_to_build_stops_at_the_time_limit(
    impatient_server: str, auth: RecordingAuthenticator
) -> None:
    # DuckDB folds the constant while binding and cannot be interrupted inside one value:
    # the answer must still come at the limit (1 s here), not when DuckDB is done (~5 s).
    conn = connect(impatient_server, "ana@a.example")
    try:
        huge = "SELECT repeat('x', 1000000000) AS r"
        started = time.monotonic()
        with pytest.raises(AdbcError, match="TIMEOUT|timeout"):
            query(conn, huge)
        assert time.monotonic() - started < 3.0
        assert query(conn, "SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 3}]
    finally:
        conn.close()
    [(_, event)] = auth.wait_for(huge)
    assert event.outcome == "error" and "timeout" in (event.reason or "")


@pytest.fixture
def one_slot_server(lake: Lake, auth: RecordingAuthenticator) -> Iterator[str]:
    """A 2 s time limit and room for one query at a time (its own, so no other test holds the slot)."""
    srv = FlightSqlServer(
        "grpc://127.0.0.1:0", lake.uri, auth, query_timeout_s=2.0, max_concurrent_queries=1, warm_connections=0
    )
    yield f"grpc://127.0.0.1:{srv.port}"
    srv.shutdown()


RUNAWAY = "SELECT count(*) FROM range(1000000000000) a"


def test_waiting_for_a_query_slot_spends_the_same_time_limit(one_slot_server: str) -> None:
    # Two runaway queries, one slot: whichever waits must still be answered within ITS 2 s
    # (counted from its statement), not after the other's 2 s plus 2 s of its own.
    outcomes: dict[str, tuple[float, str]] = {}

    def run(name: str) -> None:
        conn = connect(one_slot_server, "ana@a.example")
        try:
            started = time.monotonic()
            try:
                query(conn, f"{RUNAWAY} -- {name}")
                message = "answered"
            except AdbcError as exc:
                message = str(exc)
            outcomes[name] = (time.monotonic() - started, message)
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert set(outcomes) == {"first", "second"}, outcomes
    for elapsed, message in outcomes.values():
        assert "timeout" in message and "TIMEOUT" in message, message  # DEADLINE_EXCEEDED, not "server busy"
        # Limit 2 s; a fresh limit after the wait would make it >= 4 s. The margin below 4 s is for a busy machine.
        assert elapsed < 3.9, outcomes


def test_a_ticket_has_what_is_left_of_its_statements_time_limit(one_slot_server: str) -> None:
    client, options = _raw_client(one_slot_server, "ana@a.example")
    try:
        started = time.monotonic()
        info = client.get_flight_info(_statement(RUNAWAY), options)
        time.sleep(1.0)  # the client takes half the limit before fetching
        with pytest.raises(pa_flight.FlightTimedOutError, match="query timeout"):
            client.do_get(info.endpoints[0].ticket, options).read_all()
        assert time.monotonic() - started < 2.8  # 2 s from GetFlightInfo; a fresh limit at DoGet ends >= 3 s
    finally:
        client.close()


def test_a_ticket_fetched_after_the_time_limit_is_refused(
    one_slot_server: str, auth: RecordingAuthenticator
) -> None:
    sql = "SELECT 42 AS answer -- fetched late"
    client, options = _raw_client(one_slot_server, "ana@a.example")
    try:
        info = client.get_flight_info(_statement(sql), options)
        time.sleep(2.2)  # the 2 s limit passes before the client fetches
        late = "after the query.s 2 s time limit.*run the query again"
        with pytest.raises(pa_flight.FlightTimedOutError, match=late):
            client.do_get(info.endpoints[0].ticket, options).read_all()
        # A fresh statement runs as usual.
        again = client.get_flight_info(_statement(sql), options)
        assert client.do_get(again.endpoints[0].ticket, options).read_all().to_pylist() == [{"answer": 42}]
    finally:
        client.close()
    deadline = time.monotonic() + 5  # the second event is recorded just after the client has its batch
    while len(auth.events_for(sql)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [(e.outcome, "time limit" in (e.reason or "")) for _, e in auth.events_for(sql)] == [
        ("error", True),
        ("ok", False),
    ]


def test_a_row_larger_than_a_message_is_refused_clearly(ana: Any, auth: RecordingAuthenticator) -> None:
    big = "SELECT repeat('x', 20000000) AS r -- one 20 MB row"
    with pytest.raises(AdbcError, match="message may carry"):
        query(ana, big)
    [(_, event)] = auth.wait_for(big)
    assert event.outcome == "error" and "select less per row" in (event.reason or "")
    assert query(ana, "SELECT length(repeat('x', 20000000)) AS n").to_pylist() == [{"n": 20000000}]


# --- read-only ----------------------------------------------------------------------------


def test_updates_and_ingestion_are_refused(ana: Any, auth: RecordingAuthenticator) -> None:
    with ana.cursor() as cur:
        cur.adbc_statement.set_sql_query("DELETE FROM runs")
        with pytest.raises(AdbcError, match="read-only"):
            cur.adbc_statement.execute_update()  # DoPut CommandStatementUpdate
        with pytest.raises(AdbcError, match="read-only"):
            cur.adbc_ingest("runs", pa.table({"org_id": [ORG_A]}), mode="append")
    assert [e.outcome for _, e in auth.events_for("DELETE FROM runs")] == ["refused"]
    assert query(ana, "SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 3}]


def test_audit_hook_sees_every_outcome(uri: str, ana: Any, auth: RecordingAuthenticator) -> None:
    sql = "SELECT run_id FROM runs WHERE status = 'completed'"
    assert query(ana, sql).num_rows == 1
    [(principal, event)] = auth.wait_for(sql)
    assert principal is not None and principal.actor_id == "user-ana"
    assert event.outcome == "ok" and event.rows == 1 and event.duration_ms > 0
    assert event.tables == ("runs",) and event.client_address and "127.0.0.1" in event.client_address

    refused, failed = "COPY runs TO '/tmp/x.csv' -- audit", "SELECT nope FROM runs -- audit"
    denied = "SELECT 1 -- audit"
    for statement in (refused, failed):
        with pytest.raises(AdbcError):
            query(ana, statement)
    technician = connect(uri, "tec@a.example")
    with pytest.raises(AdbcError):
        query(technician, denied)
    technician.close()
    with pytest.raises(AdbcError), connect(uri, "nobody@a.example", "guess") as nobody:
        query(nobody, "SELECT 1")
    assert [e.outcome for _, e in auth.events_for(refused)] == ["refused"]
    assert [e.outcome for _, e in auth.events_for(failed)] == ["error"]
    assert [e.outcome for _, e in auth.events_for(denied)] == ["denied"]
    logins = [e.outcome for p, e in auth.events if p is None and e.username == "nobody@a.example"]
    assert logins == ["unauthenticated"]


def test_connecting_without_a_password_fails_cleanly(uri: str) -> None:
    with flight_sql.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        with pytest.raises(AdbcError, match="UNAUTHENTICATED"):
            cur.execute("SELECT 1")


def test_concurrent_queries_stay_isolated(uri: str) -> None:
    expected = {"ana@a.example": ORG_A, "bob@b.example": ORG_B}
    errors: list[BaseException] = []

    def worker(username: str) -> None:
        try:
            conn = connect(uri, username)
            try:
                for sql in ("SELECT * FROM runs", "SELECT org_id, count(*) FROM step_events GROUP BY ALL"):
                    orgs = set(query(conn, sql).column("org_id").to_pylist())
                    assert orgs == {expected[username]}, (username, orgs)
            finally:
                conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(u,)) for u in list(expected) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors


def test_serve_returns_once_the_server_is_shut_down(lake: Lake, auth: RecordingAuthenticator) -> None:
    srv = FlightSqlServer("grpc://127.0.0.1:0", lake.uri, auth, warm_connections=0)
    runner = threading.Thread(target=serve, args=(srv,))
    runner.start()
    conn = connect(f"grpc://127.0.0.1:{srv.port}", "ana@a.example")
    assert query(conn, "SELECT 1 AS one").to_pylist() == [{"one": 1}]
    conn.close()
    srv.shutdown()
    runner.join(10)
    assert not runner.is_alive()
    srv.shutdown()  # idempotent


def test_a_client_that_stops_reading_frees_the_query(uri: str, ana: Any, auth: RecordingAuthenticator) -> None:
    client, options = _raw_client(uri, "ana@a.example")
    sql = "SELECT i, label, r.range AS copy FROM form_big, range(40) r"  # 2M rows through DuckDB
    info = client.get_flight_info(_statement(sql), options)
    reader = client.do_get(info.endpoints[0].ticket, options)
    assert reader.read_chunk().data.num_rows > 0
    reader.cancel()
    client.close()
    [(_, event)] = auth.wait_for(sql, timeout=20)
    assert event.outcome == "ok" and event.rows < 2_000_000
    assert "client closed the stream" in (event.reason or "")
    assert query(ana, "SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 3}]


def test_run_server_stops_gracefully_on_sigterm(lake: Lake) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = (
        "from flight.server import run_server\n"
        "from tests.flight.flightkit import RecordingAuthenticator\n"
        f"run_server('127.0.0.1', {port}, {lake.uri!r}, RecordingAuthenticator(), warm_connections=0)\n"
        "print('stopped cleanly', flush=True)\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        conn = connect(f"grpc://127.0.0.1:{port}", "ana@a.example")
        assert query(conn, "SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 3}]
        conn.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped cleanly" in out


def test_close_session_logs_out(uri: str) -> None:
    client, options = _raw_client(uri, "ana@a.example")
    assert client.get_flight_info(_statement("SELECT 1"), options).schema.names == ["1"]
    [result] = list(client.do_action(pa_flight.Action("CloseSession", b""), options))
    assert result.body.to_pybytes() == b"\x08\x01"  # CloseSessionResult{status: CLOSED}
    with pytest.raises(pa_flight.FlightUnauthenticatedError):
        client.get_flight_info(_statement("SELECT 1"), options)
    client.close()


def test_an_org_without_data_sees_empty_shared_tables(uri: str) -> None:
    conn = connect(uri, "cy@c.example")
    try:
        for sql in ("SELECT * FROM runs", "SELECT * FROM runs WHERE true", 'SELECT * FROM "runs@v0"'):
            table = query(conn, sql)
            assert table.num_rows == 0 and table.schema.names == ["org_id", "run_id", "status", "updated_at"]
        tables = conn.adbc_get_objects().read_all().to_pylist()[0]["catalog_db_schemas"][0]["db_schema_tables"]
        assert sorted(t["table_name"] for t in tables) == ["audit_log", "runs", "runs_current", "step_events"]
        with pytest.raises(AdbcError, match="does not exist"):
            query(conn, "SELECT * FROM form_x")
    finally:
        conn.close()
