"""Every piece of I/O the run workflow needs, one activity per record it makes.

Each runs as a local activity (a short database transaction next to the workflow) and is idempotent:
rows carry keys derived from the run and step, so an activity retried after a worker crash writes
nothing twice. Thin by design: the rules live in domain/tasks/, domain/approvals/ and domain/runs/.
What each record takes and answers, and its name on the wire, is workflows/records.py (the workflow calls
its methods by reference); each method here keeps that name (tests/run_workflow/test_records.py checks).

Every activity goes through `_guarded`, which decides what a retry can fix:
- a domain error (NotFound, Forbidden, Conflict, Invalid) and a value PostgreSQL refuses (DataError) are
  final: a non-retryable ApplicationError of the same type, carrying the HTTP status and reasons, which
  the workflow hands back to the caller as the 4xx the API would give;
- anything else (the database unreachable, a lock timeout, a bug) is retried with backoff, and each failed
  attempt is counted in `activity_failures` (a later success clears it), which /healthz reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core import metrics
from core.db import TenantSessions
from domain.approvals import service as approvals
from domain.compliance import authorizations
from domain.errors import DomainError, Invalid
from domain.events.hooks import on_escalation
from domain.notifications import DatabaseNotifier, Notifier
from domain.roles import SYSTEM_ACTOR
from domain.runs import records
from domain.runs import service as runs
from domain.runs.messages import (
    AuthorizationCheck,
    CheckAuthorizations,
    CompleteTask,
    ControlRun,
    DecideApproval,
    Escalate,
    FinishRun,
    OpenStep,
    Outcome,
    RunRef,
    StepEvent,
    TaskBrief,
)
from domain.tasks import lifecycle
from domain.tasks import service as tasks
from workflows.records import RunRecords

log = structlog.get_logger("flasktrack.activities")
T = TypeVar("T")

def refusal(exc: DomainError) -> ApplicationError:
    """A domain error as Temporal carries it: its class, message, HTTP status and reasons; never retried."""
    return ApplicationError(exc.message, {"status": exc.status, "reasons": exc.reasons}, type=type(exc).__name__,
                            non_retryable=True)


_INSERT_FAILURE = text(
    "INSERT INTO activity_failures (org_id, run_id, activity, failures, error_type, error) VALUES"
    " (:o, :r, :a, 1, :t, :e) ON CONFLICT (run_id, activity) DO UPDATE SET"
    " failures = activity_failures.failures + 1, error_type = excluded.error_type, error = excluded.error,"
    " last_failed_at = now()")


class RunActivities(RunRecords):
    """The run's records, each a short transaction in the run's organization."""

    def __init__(self, sessions: TenantSessions, notifier: Notifier | None = None) -> None:
        self.sessions = sessions
        self.notifier = notifier or DatabaseNotifier()
        self._failing: set[tuple[str, str]] = set()  # (run id, activity) with a failure on record, this process

    def all(self) -> list[Callable[..., object]]:
        return [self.open_step, self.complete_task, self.decide_approval, self.escalate, self.record_event,
                self.control_run, self.finish_run, self.check_authorizations]

    def _guarded(self, run: RunRef, work: Callable[[], T]) -> T:
        name = activity.info().activity_type
        try:
            result = work()
        except DomainError as exc:
            if exc.status >= 500:  # e.g. Unavailable: a retry may well succeed
                self._count_failure(run, name, exc)
                raise
            raise refusal(exc) from exc
        except sa_exc.DataError as exc:  # a value the database cannot hold: the same answer every time
            why = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
            raise refusal(Invalid(f"a value cannot be stored: {why}", reasons=[why])) from exc
        except Exception as exc:
            self._count_failure(run, name, exc)
            raise
        if (run.run_id, name) in self._failing:
            self._clear_failures(run, name)
        return result

    def _count_failure(self, run: RunRef, name: str, exc: Exception) -> None:
        log.warning("activity failed; it will be retried", activity=name, run_id=run.run_id,
                    attempt=activity.info().attempt, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        try:
            with self.sessions.begin(run.org_id) as s:
                s.execute(_INSERT_FAILURE, {"o": run.org_id, "r": run.run_id, "a": name, "t": type(exc).__name__,
                                            "e": str(exc)[:2000].replace("\x00", "\\0")})
            self._failing.add((run.run_id, name))
        except Exception as again:  # noqa: BLE001 - the database may be what fails; the log line above stays
            log.warning("could not count the activity failure", activity=name, error=str(again)[:200])

    def _clear_failures(self, run: RunRef, name: str) -> None:
        try:
            with self.sessions.begin(run.org_id) as s:
                s.execute(text("DELETE FROM activity_failures WHERE run_id = :r AND activity = :a"),
                          {"r": run.run_id, "a": name})
            self._failing.discard((run.run_id, name))
        except Exception as exc:  # noqa: BLE001 - the record is done; the count expires on its own
            log.warning("could not clear the activity failures", activity=name, error=str(exc)[:200])

    @activity.defn(name="open_step")
    def open_step(self, msg: OpenStep) -> TaskBrief:
        def work() -> TaskBrief:
            with self.sessions.begin(msg.run.org_id) as s:
                return lifecycle.open_task(s, msg)
        return self._guarded(msg.run, work)

    @activity.defn(name="complete_task")
    def complete_task(self, msg: CompleteTask) -> Outcome:
        def work() -> Outcome:
            try:
                with self.sessions.begin(msg.run.org_id) as s:
                    return tasks.complete(s, msg)
            except tasks.RequestReused:
                with self.sessions.begin(msg.run.org_id) as s:
                    return tasks.refuse_reused(s, msg)
        return self._guarded(msg.run, work)

    @activity.defn(name="decide_approval")
    def decide_approval(self, msg: DecideApproval) -> Outcome:
        def work() -> Outcome:
            with self.sessions.begin(msg.run.org_id) as s:
                return approvals.decide(s, msg)
        return self._guarded(msg.run, work)

    @activity.defn(name="escalate")
    def escalate(self, msg: Escalate) -> bool:
        def work() -> bool:
            with self.sessions.begin(msg.run.org_id) as s:
                fired = tasks.escalate(s, msg, self.notifier)
                if fired:  # an alert per level; at the last level, a deviation (domain/events/hooks.py)
                    on_escalation(s, msg)
            if fired:  # False when a retried activity finds the level fired already: counted once
                metrics.ESCALATIONS.labels(str(msg.level)).inc()
            return fired
        return self._guarded(msg.run, work)

    @activity.defn(name="record_event")
    def record_event(self, msg: StepEvent) -> bool:
        def work() -> bool:
            with self.sessions.begin(msg.run.org_id) as s:
                return records.step_event(s, msg.run, key=msg.key, event=msg.event, step_key=msg.step_key,
                                          step_kind=msg.step_kind, iteration=msg.iteration, actor=SYSTEM_ACTOR,
                                          detail={**msg.detail, "workflow_time": msg.at})
        return self._guarded(msg.run, work)

    @activity.defn(name="control_run")
    def control_run(self, msg: ControlRun) -> str:
        def work() -> str:
            with self.sessions.begin(msg.run.org_id) as s:
                return runs.control(s, msg)
        return self._guarded(msg.run, work)

    @activity.defn(name="finish_run")
    def finish_run(self, msg: FinishRun) -> str:
        def work() -> str:
            with self.sessions.begin(msg.run.org_id) as s:
                return runs.finish(s, msg)
        return self._guarded(msg.run, work)

    @activity.defn(name="check_authorizations")
    def check_authorizations(self, msg: CheckAuthorizations) -> AuthorizationCheck:
        def work() -> AuthorizationCheck:
            with self.sessions.begin(msg.run.org_id) as s:
                return authorizations.check_run(s, msg.run, msg.at)
        return self._guarded(msg.run, work)
