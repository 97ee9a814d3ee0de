"""Background sealing and periodic checkpoints.

Writers only append pending entries; this loop links them into each org's chain a
batch at a time (one short transaction per org per round), so the chain head is
never a per-write lock. Several processes may run it: the database serializes
them per org (SKIP LOCKED on the head row).
"""

from __future__ import annotations

import threading
import time

import structlog
from sqlalchemy import text

from core import metrics
from core.db import TenantSessions
from domain.audit import service
from domain.audit.checkpoints import CheckpointStore, SigningKey

log = structlog.get_logger("flasktrack.sealer")
LAG_EVERY_S = 5.0  # a scrape interval's worth: measuring the lag is a query of its own


class Sealer:
    def __init__(
        self,
        sessions: TenantSessions,
        *,
        interval_s: float = 0.05,
        signing_key: SigningKey | None = None,
        store: CheckpointStore | None = None,
        checkpoint_interval_s: float = 300.0,
    ) -> None:
        self.sessions = sessions
        self.interval_s = interval_s
        self.signing_key = signing_key
        self.store = store
        self.checkpoint_interval_s = checkpoint_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def seal_once(self) -> int:
        with self.sessions.begin(None) as s:
            return service.seal(s)

    def measure_lag(self) -> None:
        """How long the oldest entry still pending has waited (0 when every entry is sealed)."""
        with self.sessions.begin(None) as s:
            metrics.SEAL_LAG.set(s.execute(text("SELECT audit_seal_lag()")).scalar_one())

    def checkpoint_all(self) -> int:
        """Sign every org's current head (orgs come from the SECURITY DEFINER seal path's view)."""
        if self.signing_key is None or self.store is None:
            return 0
        n, failed = 0, False
        with self.sessions.begin(None) as s:
            orgs = [r[0] for r in s.execute(text("SELECT org_id FROM audit_log_orgs()")).all()]
        for org in orgs:
            try:
                with self.sessions.begin(org) as s:
                    if service.write_checkpoint(s, org, self.signing_key, self.store):
                        n += 1
            except service.ChainNotVerified as exc:
                # never sign over tampering; keep signing the other orgs
                log.error("audit chain does not verify; checkpoint refused", org_id=str(org), error=str(exc))
                failed = True
        metrics.VERIFY_OK.set(0 if failed else 1)
        metrics.VERIFY_AT.set(time.time())
        return n

    def _run(self) -> None:
        next_checkpoint = time.monotonic() + self.checkpoint_interval_s
        next_lag = time.monotonic()
        while not self._stop.is_set():
            try:
                while self.seal_once() > 0 and not self._stop.is_set():
                    pass
                if time.monotonic() >= next_lag:
                    self.measure_lag()
                    next_lag = time.monotonic() + LAG_EVERY_S
                if time.monotonic() >= next_checkpoint:
                    self.checkpoint_all()
                    next_checkpoint = time.monotonic() + self.checkpoint_interval_s
            except Exception:  # noqa: BLE001 - keep sealing after a transient database error
                log.exception("sealing failed; retrying")
                self._stop.wait(1.0)
            self._stop.wait(self.interval_s)

    def start(self) -> Sealer:
        self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            self.seal_once()  # leave nothing pending behind on a clean stop
        except Exception:  # noqa: BLE001
            log.exception("final seal failed")
