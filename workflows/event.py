"""A compliance event as a durable workflow: open → investigating → capa → effectiveness_check → closed.

People act through one Update, `transition` (investigate, root cause with its actions, add an action, complete an
action, judge effectiveness, close with a signature); its validator (pure) refuses a transition the event's state
does not allow, without writing anything; the handler runs one local activity (rules + records in one
transaction, activities/events.py → domain/events/service.py) and answers the event's state after it.

Each open CAPA action is watched by a timer: at its due time (level 0, its owner is alerted) and
SECOND_LEVEL_AFTER later (level 1, the lab managers too) the escalation activity fires, unless the action is done.

The compliance watch is a second, small workflow: a timer loop the worker starts once, each round one activity
(expiry and overdue alerts, alert emails, starting the workflows of events the system raised).
No I/O here: every record is an activity of workflows/event_records.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.events.messages import (
        EVENT_WORKFLOW,
        SECOND_LEVEL_AFTER,
        WATCH_WORKFLOW,
        ActionState,
        CapaEscalation,
        EventInput,
        EventState,
        EventStep,
        WatchInput,
    )
    from workflows.event_records import EventRecords

RECORD_TIMEOUT = dt.timedelta(seconds=30)
RECORD_RETRY = RetryPolicy(initial_interval=dt.timedelta(milliseconds=200), maximum_interval=dt.timedelta(seconds=10))
REQUEST_ATTEMPTS = 4
REQUEST_RETRY = RetryPolicy(initial_interval=dt.timedelta(milliseconds=200), backoff_coefficient=2,
                            maximum_interval=dt.timedelta(seconds=2), maximum_attempts=REQUEST_ATTEMPTS)
# The state each transition needs (the activity checks it again against the database).
NEEDS: dict[str, tuple[str, ...]] = {
    "investigate": ("open",), "root_cause": ("investigating",), "add_action": ("capa",),
    "complete_action": ("capa",), "effectiveness": ("effectiveness_check",), "close": ("effectiveness_check",),
}
WATCH_ROUNDS = 200  # rounds before the watch continues as new (its history stays small)


@workflow.defn(name=EVENT_WORKFLOW)
class ComplianceEvent:
    @workflow.init
    def __init__(self, inp: EventInput) -> None:
        self.inp = inp
        self.state: EventState | None = None
        self.watched: set[str] = set()
        self.watchers: list[asyncio.Task[None]] = []  # kept referenced while they run
        self.lock = asyncio.Lock()

    @workflow.run
    async def run(self, inp: EventInput) -> str:
        self.state = await workflow.execute_local_activity_method(
            EventRecords.load, inp.event, start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY)
        self._watch_actions()
        await workflow.wait_condition(lambda: self.state is not None and self.state.status == "closed")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return "closed"

    @workflow.update
    async def transition(self, step: EventStep) -> EventState:
        await workflow.wait_condition(lambda: self.state is not None)
        info = workflow.current_update_info()
        step = step.model_copy(update={"key": info.id if info else ""})
        async with self.lock:
            self.state = await self._request(step)
        self._watch_actions()
        return self.state

    @transition.validator
    def _validate(self, step: EventStep) -> None:
        if self.state is None:
            return  # still loading: the activity checks
        if self.state.status not in NEEDS[step.action]:
            raise ApplicationError(f"{self.state.code} is {self.state.status}: '{step.action}' needs it "
                                   f"{' or '.join(NEEDS[step.action])}", type="WrongState", non_retryable=True)

    @workflow.query
    def current(self) -> EventState | None:
        return self.state

    def _action(self, action_id: str) -> ActionState | None:
        assert self.state is not None
        return next((a for a in self.state.actions if a.id == action_id), None)

    def _watch_actions(self) -> None:
        assert self.state is not None
        for a in self.state.actions:
            if not a.done and a.id not in self.watched:
                self.watched.add(a.id)
                self.watchers.append(asyncio.create_task(self._watch(a.id)))

    async def _watch(self, action_id: str) -> None:
        """Escalate the action at its due time, then SECOND_LEVEL_AFTER later, unless it is done by then."""
        first = self._action(action_id)
        assert first is not None
        for level, at in ((0, first.due_at), (1, first.due_at + SECOND_LEVEL_AFTER)):
            current = self._action(action_id)
            if current is None or current.done:
                return
            if current.level >= level:
                continue
            if at > workflow.now():
                try:
                    await workflow.wait_condition(lambda: bool((a := self._action(action_id)) and a.done),
                                                  timeout=at - workflow.now())
                except TimeoutError:
                    pass
            current = self._action(action_id)
            if current is None or current.done:
                return
            assert self.inp is not None
            await workflow.execute_local_activity_method(
                EventRecords.escalate, CapaEscalation(event=self.inp.event, action_id=action_id, level=level,
                                                      due_at=first.due_at, fired_at=workflow.now()),
                start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY)
            current.level = level

    async def _request(self, step: EventStep) -> EventState:
        """A person's transition recorded by its activity; its refusal fails the update, not the event."""
        try:
            return await workflow.execute_local_activity_method(
                EventRecords.transition, step, start_to_close_timeout=RECORD_TIMEOUT, retry_policy=REQUEST_RETRY)
        except (ActivityError, ApplicationError) as exc:
            cause = exc.cause if isinstance(exc, ActivityError) else exc
            refusal = cause.details[0] if isinstance(cause, ApplicationError) and cause.details else None
            if isinstance(refusal, dict) and "status" in refusal:  # activities/runs.py `refusal`: the API's 4xx
                assert isinstance(cause, ApplicationError)
                raise ApplicationError(cause.message, refusal, type=cause.type, non_retryable=True) from None
            why = cause.type if isinstance(cause, ApplicationError) and cause.type else type(cause).__name__
            raise ApplicationError(f"the {step.action} could not be recorded ({why}, {REQUEST_ATTEMPTS} attempts);"
                                   " nothing changed: send it again with a new X-Request-ID", type="NotRecorded",
                                   non_retryable=True) from None


@workflow.defn(name=WATCH_WORKFLOW)
class ComplianceWatch:
    """Every `every_seconds`: one scan round; continues as new every WATCH_ROUNDS rounds."""

    @workflow.run
    async def run(self, inp: WatchInput) -> None:
        for _ in range(WATCH_ROUNDS):
            try:
                await workflow.execute_activity_method(
                    EventRecords.scan, inp, start_to_close_timeout=dt.timedelta(minutes=5),
                    retry_policy=RetryPolicy(maximum_attempts=3))
            except ActivityError:
                workflow.logger.warning("compliance scan failed; next round as usual")
            await workflow.sleep(dt.timedelta(seconds=inp.every_seconds))
        workflow.continue_as_new(inp.model_copy(update={"rounds": inp.rounds + WATCH_ROUNDS}))
