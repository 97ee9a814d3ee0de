"""The outbox → Delta sink: batches closed by size or time, each committed exactly once.

A batch goes through three durable steps, and a crash between any two loses and repeats nothing:

1. claim: one PostgreSQL transaction records a batch as one `outbox_batches` row: a new batch id (drawn from the
   outbox's own id sequence: durable and increasing), the id range `[first_id, last_id]` holding up to
   `batch_rows` unclaimed rows of the sink's topics, those topics, when and by whom. The rows themselves are not
   touched (migration 0027); the range is read after the claim commits;
2. commit: for each target table, append the batch's rows with the Delta app transaction
   (`flasktrack-sink`, batch id), unless the table's recorded version already covers the batch
   (checked on the same DeltaTable object the commit goes through, see lake/writer.py);
3. acknowledge: delete the batch's range of outbox rows and its record, in one transaction.

A range must never pass over a row that is still being written: ids are drawn when a row is inserted, not when
it commits, so a transaction holding id 10 may commit after one holding id 11. The claim goes no further than
`_fence` (the highest id every writer of which has finished); see `OutboxFence`.

On start, and after any error, batches that were claimed but not acknowledged are finished first, in
batch order, before a new one is claimed. One sink is active at a time (a PostgreSQL advisory lock):
batches must reach each table in increasing order, or a lower batch would be skipped as already done.
Claims are serialized by a table lock on `outbox_batches` besides, and an exclusion constraint keeps any two
claimed ranges apart.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import pyarrow as pa
import structlog
from deltalake import DeltaTable
from psycopg import Cursor
from psycopg.rows import TupleRow
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Connection, Engine, text

from core import metrics
from lake import maintain
from lake.audit import export_audit
from lake.tables import (
    AUDIT_LOG,
    FIXED_TOPICS,
    FORM_PREFIX,
    IDENTIFIER,
    PARTITION,
    SINK_APP_ID,
    SINK_REJECTS,
    FormGroup,
    RowError,
    TableSpec,
    assemble_form,
    form_description,
    form_table_name,
    published_app_id,
    published_form,
    type_form_rows,
    type_rows,
)
from lake.writer import Append, Lake

log = structlog.get_logger("flasktrack.sink")

TOPICS = (*FIXED_TOPICS, "form_submission", "form_published")
LEADER_LOCK = 0x666C61736B  # pg advisory lock key held by the active sink ("flask")

# The sink's one test seam: the crash tests (tests/lake/crashing_sink.py) pass a hook that kills the process at
# one of these points of a batch's or an audit export's life; in production no hook is passed.
FaultPoint = Literal["before_commit", "between_tables", "after_commit", "audit_after_commit"]
FaultHook = Callable[[FaultPoint], None]


class SinkSettings(BaseSettings):
    """Tuning, from FLASKTRACK_SINK_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="FLASKTRACK_SINK_", extra="ignore")

    batch_rows: int = Field(default=50_000, ge=1)  # a batch closes at this many rows...
    batch_max_age_s: float = Field(default=1.0, gt=0)  # ...or when its oldest row is this old
    poll_interval_s: float = Field(default=0.1, gt=0)
    audit_batch_rows: int = Field(default=50_000, ge=1)
    maintain_interval_s: float = Field(default=86_400.0, gt=0)  # compaction, checkpoint, vacuum
    maintain_first_after_s: float = Field(default=600.0, ge=0)
    maintain_retry_s: float = Field(default=60.0, gt=0)  # a table whose round failed is tried again this soon
    maintain_scan_s: float = Field(default=10.0, gt=0)  # how often the lake is listed for tables that are due
    vacuum_retention_hours: int = Field(default=720, ge=0)  # 30 days of time travel


@dataclass(slots=True)
class OutboxRow:
    id: int
    org_id: str
    topic: str
    payload_text: str
    # A form submission's field definitions, split off by PostgreSQL: identical for every submission of
    # a form version, so the sink parses each distinct text once instead of once per row.
    fields_text: str | None = None

    def full_payload(self) -> str:
        """The payload as stored (fields put back), for sink_rejects."""
        if self.fields_text is None:
            return self.payload_text
        rest = self.payload_text.rstrip()[:-1].rstrip()
        return f'{rest}{", " if rest != "{" else ""}"fields": {self.fields_text}}}'


@dataclass
class Part:
    """What one batch appends to one table."""

    fixed: pa.Table | None = None  # tables with a fixed schema
    form_key: str | None = None
    groups: list[FormGroup] | None = None
    published_by: frozenset[str] = frozenset()  # orgs whose approved protocol versions use this form

    def data(self, existing: pa.Schema | None) -> tuple[pa.Table, dict[str, dict[str, str]]]:
        if self.fixed is not None:
            return self.fixed, {}
        w = assemble_form(self.groups or [], existing)
        return w.table, w.column_meta


def prepare(batch_id: int, rows: list[OutboxRow]) -> dict[str, Part]:
    """Route and type a batch's rows: table name → Part. Rows that cannot be typed go to sink_rejects,
    so every outbox row lands in exactly one table."""
    rejects: list[tuple[OutboxRow, str]] = []
    routed: dict[str, list[tuple[OutboxRow, dict[str, Any]]]] = {t.name: [] for t in FIXED_TOPICS.values()}
    fixed_table = {topic: routed[t.name] for topic, t in FIXED_TOPICS.items()}
    loads = orjson.loads
    fields: dict[str, Any] = {}
    for r in rows:
        try:
            payload = loads(r.payload_text)
        except orjson.JSONDecodeError as exc:
            rejects.append((r, f"payload is not JSON: {exc}"))
            continue
        if type(payload) is not dict:
            rejects.append((r, "payload is not an object"))
            continue
        if r.fields_text is not None:
            defs = fields.get(r.fields_text)
            payload["fields"] = defs if defs is not None else fields.setdefault(r.fields_text, loads(r.fields_text))
        org = r.org_id  # the outbox row's org (a foreign key) is the partition; the payload must agree
        if payload.setdefault(PARTITION, org) != org:
            rejects.append((r, "payload org_id differs from the outbox row's org_id"))
            continue
        target = fixed_table.get(r.topic)
        if target is None:  # form_submission, form_published
            key = payload.get("form_key")
            if type(key) is not str or not IDENTIFIER.fullmatch(key):
                rejects.append((r, f"form_key {key!r} is not an identifier like sample_intake"))
                continue
            target = routed.setdefault(form_table_name(key), [])
        target.append((r, payload))
    return _typed_parts(batch_id, routed, rejects)


def _typed_parts(batch_id: int, routed: dict[str, list[tuple[OutboxRow, dict[str, Any]]]],
                 rejects: list[tuple[OutboxRow, str]]) -> dict[str, Part]:

    parts: dict[str, Part] = {}
    for name, items in routed.items():
        if not items:
            continue
        payloads = [p for _, p in items]
        spec = _FIXED.get(name)
        if spec is not None:
            typed = type_rows(spec.columns, payloads)
            rejected = typed.rejected
            if typed.accepted:
                parts[name] = Part(fixed=typed.table)
        else:
            submitted = [i for i, (r, _) in enumerate(items) if r.topic == "form_submission"]
            groups, accepted, by_position = type_form_rows([payloads[i] for i in submitted])
            rejected = {submitted[j]: reason for j, reason in by_position.items()}
            published: set[str] = set()
            for i, (r, payload) in enumerate(items):
                if r.topic == "form_published":
                    try:
                        groups.append(published_form(payload))
                        published.add(r.org_id)
                    except RowError as exc:
                        rejected[i] = str(exc)
            if accepted or published:
                parts[name] = Part(form_key=name.removeprefix(FORM_PREFIX), groups=groups,
                                   published_by=frozenset(published))
        rejects.extend((items[i][0], reason) for i, reason in sorted(rejected.items()))
    if rejects:
        log.warning("outbox rows rejected", batch_id=batch_id, count=len(rejects), first=rejects[0][1])
        parts[SINK_REJECTS.name] = Part(fixed=type_rows(SINK_REJECTS.columns, [
            {PARTITION: r.org_id, "outbox_id": r.id, "batch_id": batch_id, "topic": r.topic,
             "payload": r.full_payload(), "error": reason} for r, reason in rejects]).table)
    return parts


# Rows not yet claimed: past every pending batch's range (claims are contiguous and in id order; once no batch is
# pending, from the start again, so rows of a topic an older sink did not know are taken by a newer one).
# `batch_id IS NULL`: rows stamped by a sink before migration 0027 belong to their own (legacy) batch.
_UNCLAIMED = """FROM outbox_rows WHERE id > (SELECT coalesce(max(last_id), 0) FROM outbox_batches)
                  AND batch_id IS NULL AND topic = ANY(%(topics)s)"""
_DUE = f"""SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8
           FROM (SELECT created_at {_UNCLAIMED} ORDER BY id LIMIT %(n)s) s"""
# The claim and the batch read go through the psycopg cursor: tens of thousands of rows per batch.
_NEXT_BATCH = "SELECT nextval(pg_get_serial_sequence('outbox_rows', 'id'))"
_SPLIT = "topic = 'form_submission' AND jsonb_typeof(payload->'fields') = 'array'"
_ROW = (f"id, org_id::text, topic, CASE WHEN {_SPLIT} THEN (payload - 'fields')::text ELSE payload::text END, "
        f"CASE WHEN {_SPLIT} THEN (payload->'fields')::text END")
# Claims wait for each other (and for a backup's hold on the outbox, flasktrack/backup.py), not for readers.
_SERIALIZE = "LOCK TABLE outbox_batches IN SHARE ROW EXCLUSIVE MODE"
_RANGE = (f"SELECT min(id), max(id), count(*)"
          f" FROM (SELECT id {_UNCLAIMED} AND id <= %(fence)s ORDER BY id LIMIT %(n)s) s")
_RECORD = """INSERT INTO outbox_batches (id, first_id, last_id, topics, row_count, claimed_by)
             VALUES (%(b)s, %(first)s, %(last)s, %(topics)s, %(rows)s, %(by)s)"""
_PENDING = text("SELECT id FROM outbox_batches UNION SELECT DISTINCT batch_id FROM outbox_rows"
                " WHERE batch_id IS NOT NULL ORDER BY 1")
_RANGE_OF = "SELECT first_id, last_id, topics FROM outbox_batches WHERE id = %(b)s"
_IN_RANGE = "id BETWEEN %(first)s AND %(last)s AND topic = ANY(%(topics)s) AND batch_id IS NULL"
_RANGE_ROWS = f"SELECT {_ROW} FROM outbox_rows WHERE {_IN_RANGE} ORDER BY id"
_ACK_RANGE = f"DELETE FROM outbox_rows WHERE {_IN_RANGE}"
_ACK_RECORD = "DELETE FROM outbox_batches WHERE id = %(b)s"
_LEGACY_ROWS = f"SELECT {_ROW} FROM outbox_rows WHERE batch_id = %(b)s ORDER BY id"
_ACK_LEGACY = "DELETE FROM outbox_rows WHERE batch_id = %(b)s"
OUTBOX_FENCE_KEY = 0x6F7574626F78  # the shared advisory lock outbox writers hold (migration 0027's trigger)


def _cursor(conn: Connection) -> Cursor[TupleRow]:
    """A psycopg cursor on the connection's own driver connection (same transaction)."""
    raw = conn.connection.driver_connection
    assert raw is not None  # a checked-out connection always has one
    return raw.cursor()


class OutboxFence:
    """How far a claim may go: the highest outbox id every writer of which has finished (committed or rolled back).

    Ids are drawn from a sequence as rows are inserted, and transactions commit in any order: claiming a range up to
    the highest visible id could pass over id 10 still being written when 11 has committed, and 10 would never be
    claimed. Of the two ways out (a commit-ordered sequence, or claim only up to what every in-flight writer has
    settled) the first puts every writer behind one lock at commit; this takes the second, without making writers
    wait for anyone: migration 0027's statement trigger makes each statement that inserts outbox rows take a
    *shared* advisory lock (OUTBOX_FENCE_KEY) before its ids are drawn, held to the end of its transaction.
    Then, reading the sequence's last value H and then the lock's holders: every id <= H was drawn by one of those
    holders or by a transaction already finished. Once all of those holders are gone (the lock is released after
    the commit is visible), every row with an id <= H is either visible or never will be: H is settled.

    A candidate (H, holders) is noted at every claim; the newest one whose holders are all gone is the fence. With
    no writer in flight the fresh one settles at once; otherwise the claim waits for it up to `quick_wait_s` when
    an older candidate has settled meanwhile, up to `wait_s` when none has (then it claims what is settled).
    The sequence must keep CACHE 1 (serial's default): a backend's cached ids would be handed out unseen.
    """

    def __init__(self, wait_s: float = 0.5, quick_wait_s: float = 0.05) -> None:
        self.wait_s = wait_s
        self.quick_wait_s = quick_wait_s
        self._candidates: list[tuple[int, frozenset[str]]] = []
        self._settled = 0
        self._lock = threading.Lock()

    _LAST_ID = "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM outbox_id_seq"
    _HOLDERS = ("SELECT coalesce(array_agg(virtualtransaction), '{}') FROM pg_locks WHERE locktype = 'advisory'"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                f" AND classid = {OUTBOX_FENCE_KEY >> 32} AND objid = {OUTBOX_FENCE_KEY & 0xFFFFFFFF} AND objsubid = 1")

    def settled(self, cur: Cursor[TupleRow]) -> int:
        with self._lock:
            last = cur.execute(self._LAST_ID).fetchone()
            holders = self._holders(cur)  # read after the sequence: anyone who drew an id <= last is here or done
            assert last is not None  # one row, always
            fresh = int(last[0])
            self._candidates = [*self._candidates[-255:], (fresh, holders)]  # older ones settle no sooner
            before, started = self._settled, time.monotonic()
            while True:
                self._advance(holders)
                waited = time.monotonic() - started
                # The fresh candidate usually settles within milliseconds (writers' transactions are short):
                # worth a short wait even when an older one has; a long one only when nothing moved at all.
                if (self._settled >= fresh or waited >= self.wait_s
                        or (self._settled > before and waited >= self.quick_wait_s)):
                    return self._settled
                time.sleep(0.005)
                holders = self._holders(cur)

    def _advance(self, live: frozenset[str]) -> None:
        newest = max((h for h, held in self._candidates if not held & live), default=None)
        if newest is not None:
            self._candidates = [(h, held) for h, held in self._candidates if h > newest]
            self._settled = max(self._settled, newest)

    def _holders(self, cur: Cursor[TupleRow]) -> frozenset[str]:
        row = cur.execute(self._HOLDERS).fetchone()
        return frozenset(row[0]) if row else frozenset()


class AnotherSinkActive(RuntimeError):
    pass


class Sink:
    def __init__(self, engine: Engine, lake: Lake, config: SinkSettings | None = None, *,
                 fault_hook: FaultHook | None = None) -> None:
        self.engine = engine
        self.lake = lake
        self.config = config or SinkSettings()
        self._fault_hook = fault_hook
        self._described: set[str] = set()
        # While a backlog drains, the next batch is claimed (PostgreSQL's work) while this one is typed
        # and committed (ours). Claims are ordered, so batches still reach the lake in batch order.
        self._claims = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-claim")
        self._ahead: Future[tuple[int, list[OutboxRow]]] | None = None
        self._next_audit = 0.0
        # Maintenance is scheduled per table: a table created after a round, or whose round failed, is
        # not left waiting for the next daily round.
        self._maintenance_due: dict[str, float] = {}
        self._fence = OutboxFence()
        self._claimer = f"{socket.gethostname()}:{os.getpid()}"
        self.batches = 0
        self.rows = 0

    # ------------------------------------------------------------ one batch

    def commit_batch(self, batch_id: int, rows: list[OutboxRow]) -> None:
        """Steps 2 and 3 for a claimed batch (also the recovery path: already-committed tables are skipped)."""
        started = time.perf_counter()
        self._fault_point("before_commit")
        parts = prepare(batch_id, rows)
        for i, (name, part) in enumerate(sorted(parts.items())):
            if i == 1:
                self._fault_point("between_tables")
            self._commit_part(batch_id, name, part)
        self._fault_point("after_commit")
        with self.engine.begin() as conn:
            cur = _cursor(conn)
            claimed = cur.execute(_RANGE_OF, {"b": batch_id}).fetchone()
            if claimed is None:  # stamped on the rows by a sink before migration 0027
                cur.execute(_ACK_LEGACY, {"b": batch_id})
            else:
                cur.execute(_ACK_RANGE, {"first": claimed[0], "last": claimed[1], "topics": claimed[2]})
                cur.execute(_ACK_RECORD, {"b": batch_id})
        self.batches += 1
        self.rows += len(rows)
        metrics.DELTA_COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.LAKE_ROWS.inc(len(rows))
        log.info("batch committed", batch_id=batch_id, rows=len(rows), tables=len(parts),
                 ms=round((time.perf_counter() - started) * 1000, 1))

    def _commit_part(self, batch_id: int, name: str, part: Part) -> None:
        column_meta: dict[str, dict[str, str]] = {}

        def plan(dt: DeltaTable | None) -> Append | None:
            nonlocal column_meta
            if dt is not None and (dt.transaction_version(SINK_APP_ID) or 0) >= batch_id:
                return None  # committed before a crash: skip, never twice
            existing = pa.schema(dt.schema().to_arrow()) if dt is not None else None
            data, column_meta = part.data(existing)
            published = {published_app_id(org): 1 for org in part.published_by}
            return Append(data, {SINK_APP_ID: batch_id, **published}, empty_ok=bool(published))

        spec = _FIXED.get(name)
        self.lake.append_once(name, plan, description=spec.description if spec else None)
        if part.form_key is not None:
            key = part.form_key
            self.lake.describe(name, columns=column_meta, description=lambda s: form_description(key, s))
        elif spec is not None and name not in self._described:
            self.lake.describe(name, description=spec.description)
            self._described.add(name)

    def _fault_point(self, point: FaultPoint) -> None:
        if self._fault_hook is not None:
            self._fault_hook(point)

    # ------------------------------------------------------------ the loop

    def due(self) -> tuple[bool, float]:
        """Whether a batch should close now (full, or its oldest row is old enough); else how long to wait."""
        c = self.config
        with self.engine.connect() as conn:
            row = _cursor(conn).execute(_DUE, {"topics": list(TOPICS), "n": c.batch_rows}).fetchone()
        assert row is not None  # an aggregate: one row
        count, age = row
        metrics.OUTBOX_DEPTH.set(count)  # counted up to one batch: beyond that, the age tells the lag
        metrics.OUTBOX_AGE.set(age)
        if count >= c.batch_rows or (count and age >= c.batch_max_age_s):
            return True, 0.0
        return False, min(c.poll_interval_s, c.batch_max_age_s - age) if count else c.poll_interval_s

    def claim(self) -> tuple[int, list[OutboxRow]]:
        """Step 1: record the next batch, the range of up to batch_rows unclaimed rows, committed; then read it."""
        topics = list(TOPICS)
        with self.engine.begin() as conn:
            cur = _cursor(conn)
            fence = self._fence.settled(cur)
            cur.execute(_SERIALIZE)
            found = cur.execute(_RANGE, {"topics": topics, "fence": fence, "n": self.config.batch_rows}).fetchone()
            assert found is not None  # an aggregate: one row
            first, last, count = found
            if not count:
                return 0, []
            next_id = cur.execute(_NEXT_BATCH).fetchone()
            assert next_id is not None  # nextval always answers one row
            batch_id = int(next_id[0])
            cur.execute(_RECORD, {"b": batch_id, "first": first, "last": last, "topics": topics, "rows": count,
                                  "by": self._claimer})
        # The range is settled (no row can appear in it) and claimed: read it outside the claim's lock.
        return batch_id, self._read_range(first, last, topics)

    def _read_range(self, first: int, last: int, topics: list[str]) -> list[OutboxRow]:
        with self.engine.connect() as conn:
            cur = _cursor(conn)
            cur.execute(_RANGE_ROWS, {"first": first, "last": last, "topics": topics})
            return [OutboxRow(*r) for r in cur.fetchall()]

    def batch_rows(self, batch_id: int) -> list[OutboxRow]:
        """The rows of a claimed, unacknowledged batch."""
        with self.engine.connect() as conn:
            cur = _cursor(conn)
            claimed = cur.execute(_RANGE_OF, {"b": batch_id}).fetchone()
            if claimed is None:  # stamped on the rows by a sink before migration 0027
                cur.execute(_LEGACY_ROWS, {"b": batch_id})
                return [OutboxRow(*r) for r in cur.fetchall()]
        return self._read_range(*claimed)

    def _next_claim(self) -> tuple[int, list[OutboxRow]]:
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            return ahead.result()
        return self.claim()

    def _settle_claim_ahead(self) -> None:
        """Let a claim running ahead finish: its batch is then pending in the outbox, for recover()."""
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            try:
                ahead.result()
            except Exception:  # noqa: BLE001 - nothing was claimed; the rows stay unbatched
                log.warning("claim ahead failed", exc_info=True)

    def recover(self) -> int:
        """Finish every claimed, unacknowledged batch, oldest first. Returns how many."""
        self._settle_claim_ahead()
        with self.engine.connect() as conn:
            pending = [b for (b,) in conn.execute(_PENDING).all()]
        for b in pending:
            rows = self.batch_rows(b)
            log.info("finishing an unacknowledged batch", batch_id=b, rows=len(rows))
            self.commit_batch(b, rows)
        return len(pending)

    def raise_batch_floor(self) -> None:
        """Batch ids must stay above every version already in the lake (e.g. a database restored from an
        older backup, or recreated, under a kept lake): move the sequence past the highest one."""
        floor = max((self.lake.txn_version(n, SINK_APP_ID) for n in self.lake.tables()), default=0)
        with self.engine.begin() as conn:
            seq = conn.execute(text("SELECT pg_get_serial_sequence('outbox_rows', 'id')")).scalar_one()
            last = conn.execute(text(f"SELECT last_value FROM {seq}")).scalar_one()
            if floor >= last:
                conn.execute(text("SELECT setval(CAST(:s AS regclass), :v)"), {"s": seq, "v": floor + 1})
                log.warning("batch sequence moved past the lake's last batch", floor=floor)

    def create_tables(self) -> None:
        """The tables every organization sees exist, empty and typed, from the first start: an analyst's query
        names them before anything happened (form tables come with the protocol versions that use them)."""
        for spec in (*FIXED_TOPICS.values(), AUDIT_LOG):
            self.lake.create(spec.name, spec.schema, spec.description)

    def step(self, *, force: bool = False) -> tuple[int, float]:
        """One round: close and commit a batch if due (or any rows, when forced), export new audit entries.
        Returns rows moved and how long to wait before the next round."""
        moved = 0
        due, wait = self.due() if not force else (True, 0.0)
        if due:
            batch_id, rows = self._next_claim()
            if rows:
                if len(rows) >= self.config.batch_rows:  # a backlog: claim the next batch meanwhile
                    self._ahead = self._claims.submit(self.claim)
                self.commit_batch(batch_id, rows)
                moved += len(rows)
        audited = 0
        if force or time.monotonic() >= self._next_audit:  # sealed entries, at the batches' cadence
            audited = export_audit(self.engine, self.lake, max_rows=self.config.audit_batch_rows)
            self._next_audit = time.monotonic() + (0.0 if audited else self.config.batch_max_age_s)
        if audited:
            self._fault_point("audit_after_commit")
        if moved or audited:
            return moved + audited, 0.0
        return 0, wait or self.config.poll_interval_s

    def drain(self) -> int:
        """Move everything there is now, ignoring batch age (tests, benchmarks, a final flush)."""
        with self.leadership(wait=False):
            self.raise_batch_floor()
            self.create_tables()
            total = self.recover()
            while True:
                moved, _ = self.step(force=True)
                total += moved
                if not moved:
                    return total

    @contextmanager
    def leadership(self, *, wait: bool = True, stop: threading.Event | None = None) -> Iterator[Connection | None]:
        """Hold the sink's advisory lock on a dedicated connection; yields None if stopped while waiting."""
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            announced = False
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK}).scalar_one():
                if not wait:
                    raise AnotherSinkActive("another sink holds the lake lock")
                if not announced:
                    log.info("another sink is active; standing by")
                    announced = True
                if stop is not None and stop.wait(2.0):
                    yield None
                    return
            try:
                yield conn
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK})
        except Exception:
            conn.invalidate()  # a broken connection must not return to the pool (it may still hold the lock)
            raise
        finally:
            conn.close()

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set: lead, recover, then loop; after an error, start over from recovery."""
        while not stop.is_set():
            try:
                with self.leadership(stop=stop) as lock:
                    if lock is None:
                        return
                    log.info("sink active", lake=self.lake.root)
                    self.raise_batch_floor()
                    self.create_tables()
                    self.recover()
                    self._loop(stop, lock)
            except Exception:  # noqa: BLE001 - a database or storage outage: wait and start over
                log.exception("sink round failed; retrying from recovery")
                stop.wait(2.0)

    def _loop(self, stop: threading.Event, lock: Connection) -> None:
        c = self.config
        first_due = time.monotonic() + c.maintain_first_after_s
        next_scan = first_due
        next_lock_check = time.monotonic() + 5.0
        while not stop.is_set():
            _, wait = self.step()
            now = time.monotonic()
            if now >= next_scan:
                self.maintain_due(first_due)
                next_scan = time.monotonic() + c.maintain_scan_s
            if now >= next_lock_check:
                lock.execute(text("SELECT 1"))  # the lock lives as long as this connection: fail if it is gone
                next_lock_check = now + 5.0
            if wait > 0:
                stop.wait(wait)
        self.recover()  # a clean stop leaves no claimed batch behind

    def pinned_versions(self) -> dict[str, int]:
        """table → the oldest Delta version a finalized report read (vacuum keeps it); none on a schema without
        reports."""
        try:
            with self.engine.connect() as conn:
                if conn.execute(text("SELECT to_regclass('report_pinned_versions')")).scalar() is None:
                    return {}
                rows = conn.execute(text("SELECT table_name, version FROM report_pinned_versions")).all()
        except Exception:  # noqa: BLE001 - without the list, maintenance keeps everything rather than guess
            log.exception("reading the versions reports pin failed")
            return {name: 0 for name in self.lake.tables()}
        return {r.table_name: int(r.version) for r in rows}

    def maintain_due(self, first_due: float) -> list[str]:
        """Maintain each table whose turn has come, independently: one table's failure neither stops the
        others nor waits a whole interval (it is retried after `maintain_retry_s`). Returns the names of
        the tables maintained."""
        c = self.config
        done: list[str] = []
        try:
            names = self.lake.tables()
        except Exception:  # noqa: BLE001 - storage outage: the next scan tries again
            log.exception("listing the lake for maintenance failed")
            return done
        pinned = self.pinned_versions()
        for name in names:
            if time.monotonic() < self._maintenance_due.get(name, first_due):
                continue
            try:
                r = maintain.maintain_table(self.lake, name, retention_hours=c.vacuum_retention_hours,
                                            pinned=pinned.get(name))
            except Exception:  # noqa: BLE001 - maintenance is retried soon; data flow goes on
                log.exception("table maintenance failed; retrying soon", table=name, retry_in_s=c.maintain_retry_s)
                self._maintenance_due[name] = time.monotonic() + c.maintain_retry_s
                continue
            log.info("table maintained", table=name, files_removed=r.files_removed, files_added=r.files_added,
                     vacuumed=r.vacuumed, version=r.version)
            self._maintenance_due[name] = time.monotonic() + c.maintain_interval_s
            done.append(name)
        return done


_FIXED: dict[str, TableSpec] = {t.name: t for t in (*FIXED_TOPICS.values(), SINK_REJECTS)}
