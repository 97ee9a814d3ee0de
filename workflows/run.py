"""The protocol run workflow: a deterministic interpreter of the pinned execution plan.

One recursive `execute` dispatches on the node kind (the samples-python `dsl` pattern). People act through
Updates — `complete_task`, `decide`, `hold`, `resume`, `cancel` — whose validators refuse the wrong step or
state without writing anything; the handlers run one local activity each (gates + records in one
transaction) and answer once the run has moved on, so the answer names what is open next.

Every wait for people or time goes through `_wait`, which also ends the wait when the run stops (cancelled,
or rejected at an approval that ends it). Due times are watched with `wait_condition(..., timeout=...)`:
on `asyncio.TimeoutError` (the builtin TimeoutError since 3.11) the escalation activity fires that level
and the run keeps waiting.
No I/O here: every record is an activity of workflows/records.py, called by reference and written by
activities/runs.py. Which human steps a completion opens next is told by workflows/navigation.py.

Changing the interpreter. A run in flight replays its history on whatever code the worker runs now, so for
every history recorded before a change the interpreter must issue the same commands (local activities by
name, timers, search attribute upserts, continue-as-new), in the same order. tests/replay replays recorded
histories of the shipped protocols:
- green: runs in flight decide as before; ship the change, re-record nothing.
- red: guard it, `if workflow.patched(ID): <new> else: <old>`, ID a new constant in PATCHES (never reused or
  renamed). Keep the recorded histories as they are: they prove the old branch; a fast test in
  tests/run_workflow proves the new one. END_STATES is the guard in use; tests/run_workflow/test_patching.py
  shows the pattern end to end.
- once no run started before the change can still be open, `workflow.deprecate_patch(ID)` for a release,
  then drop the old branch and the id.
A new field of RunInput or of a message takes a default; RunInput ignores fields it no longer has.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.protocols.expressions import evaluate
    from domain.protocols.forms import SubmissionError, normalize_values
    from domain.protocols.plan import (
        ApprovalNode,
        ParallelNode,
        RepeatNode,
        SequenceNode,
        StepNode,
        TaskNode,
        TimerNode,
    )
    from domain.runs.messages import (
        ENDED,
        ActorRef,
        CheckAuthorizations,
        CompleteTask,
        Completion,
        Control,
        ControlRun,
        DecideApproval,
        Decision,
        Escalate,
        FinishRun,
        OpenStep,
        Outcome,
        Resume,
        RunInput,
        RunState,
        StepEvent,
        TaskBrief,
        Waiting,
    )
    from workflows.navigation import Frame, HumanStep, Lanes, Path, next_human_steps
    from workflows.records import RunRecords

WORKFLOW_NAME = "ProtocolRun"

# The interpreter's own records (a step opened, a timer fired, an escalation, the end) carry nothing a client
# sent: retried until the database takes them; /healthz names the run meanwhile (activities/runs.py).
# Search attributes the API sets at start (the workflow keeps the status current), so an operator finds a run in
# the Temporal UI: `flasktrack up` registers them on its dev server, the API on any server that lets it.
ORG_ATTR = SearchAttributeKey.for_keyword("FlasktrackOrg")
PROTOCOL_ATTR = SearchAttributeKey.for_keyword("FlasktrackProtocol")
SUBJECT_ATTR = SearchAttributeKey.for_keyword_list("FlasktrackSubject")
STATUS_ATTR = SearchAttributeKey.for_keyword("FlasktrackStatus")
SEARCH_ATTRIBUTES = (ORG_ATTR, PROTOCOL_ATTR, SUBJECT_ATTR, STATUS_ATTR)
# workflow.patched ids: each guards one change of the interpreter for runs started before it (module doc).
END_STATES = "end-states"  # runs started before end in COMPLETED as they did
AUTHORIZATION_HOLD = "authorization-hold"  # runs started before check no authorizations
PATCHES = (END_STATES, AUTHORIZATION_HOLD)
AUTHORIZATION_RECHECK = "recheck_authorizations"  # the signal: the surface or the authorizations changed
CANCEL_GRACE = dt.timedelta(minutes=1)
TEMPORAL_CANCEL = ActorRef(type="system", id="temporal", display="Temporal (cancellation request)")

RECORD_RETRY = RetryPolicy(initial_interval=dt.timedelta(milliseconds=200), maximum_interval=dt.timedelta(seconds=10))
RECORD_TIMEOUT = dt.timedelta(seconds=30)
# A person's request (completion, decision, hold, resume, cancel): a few attempts well within the API's wait
# for an answer, then the update fails with the reason and the run takes the next request. A refusal (a
# domain error, a value the database cannot hold) is never retried: the activity raises it non-retryable.
REQUEST_ATTEMPTS = 4
REQUEST_RETRY = RetryPolicy(initial_interval=dt.timedelta(milliseconds=200), backoff_coefficient=2,
                            maximum_interval=dt.timedelta(seconds=2), maximum_attempts=REQUEST_ATTEMPTS)

Msg = TypeVar("Msg")
Answer = TypeVar("Answer")
Record = Callable[[RunRecords, Msg], Answer]  # a RunRecords method: the activity and its types in one reference


class _Stopped(Exception):
    """The run stops where it stands: cancelled, or rejected at an approval that ends it."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class _Pending:
    """A human step the run waits on."""

    task_id: str
    node: HumanStep
    iteration: int
    due_at: dt.datetime | None
    path: Path = ()
    done: bool = False
    observed: bool = False  # the interpreter has seen `done` and moved on
    outcome: Outcome | None = None


@workflow.defn(name=WORKFLOW_NAME)
class ProtocolRun:
    @workflow.init
    def __init__(self, inp: RunInput) -> None:
        self.inp = inp
        # One local activity in flight at a time. Parallel branches would otherwise have several, resolved in the
        # order they finish on first execution but in scheduling order on replay: the branches would then resume
        # in another order and issue their next commands under other sequence numbers (nondeterminism; seen as a
        # query's replay decoding one record's answer as another's). Records take milliseconds: serial is cheap.
        self._one_record = asyncio.Lock()
        resume = inp.resume
        self.values: dict[str, dict[str, object]] = dict(resume.values) if resume else {}
        self.reached: dict[str, int] = dict(resume.reached) if resume else {}
        self.held = resume.held if resume else False
        self.stop: str | None = None
        self.finished = False
        self.continuing = False  # waiting for the handlers before continuing as new
        self.pending: dict[str, _Pending] = {}
        self.busy = 1  # branches doing the run's own work now (not waiting for people or time)
        self.opened_ahead: dict[str, OpenStep] = {}  # steps a completion's activity already opened (see _ahead)
        # (step, iteration) → when it fires and the step's title: for `state`
        self.timers: dict[tuple[str, int], tuple[dt.datetime, str]] = {}
        self.hold_reason: str | None = None
        # authorization hold (domain/compliance/authorizations.py): held while the surface needs an authorization
        # the run lacks; checked at start, on the recheck signal and when the authorization relied on expires
        self.auth_held = False
        self.auth_reasons: list[str] = []
        self.auth_expiry: dt.datetime | None = None
        self.recheck = False
        self.cancel_reason: str | None = None
        self.rejected_at = ""

    # ------------------------------------------------------------------ the interpreter

    @workflow.run
    async def run(self, inp: RunInput) -> str:
        try:
            status = await self._interpret(inp)
            self.finished = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            if status in ("cancelled", "rejected") and workflow.patched(END_STATES):
                await self._end_as(status)
            return status
        except asyncio.CancelledError:
            # A cancellation requested in Temporal: from its UI or CLI, or the one the API sends after a platform
            # cancel. The first becomes a platform cancel, on record; a run that has ended stays as it ended.
            if self.stop is None and not self.finished:
                why = f"cancellation requested in Temporal: {workflow.cancellation_reason() or 'no reason given'}"
                control = Control(action="cancel", actor=TEMPORAL_CANCEL, reason=why[:2000])
                await self._record(RunRecords.control_run, ControlRun(run=inp.run, control=control))
                self.stop = "cancelled"
                self._index("cancelled")
            self.finished = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self.stop == "rejected":
                self._rejected()
            if self.stop is None:
                return "completed"  # completed already: nothing left to cancel
            raise

    async def _interpret(self, inp: RunInput) -> str:
        if workflow.patched(AUTHORIZATION_HOLD):
            await self._check_authorizations()
            self._watcher = asyncio.create_task(self._watch_authorizations())
        try:
            await self._sequence(inp.plan.root, start=inp.resume.next_index if inp.resume else 0, root=True)
            await self._record(RunRecords.finish_run, FinishRun(run=inp.run, status="completed"))
            self._index("completed")
            return "completed"
        except _Stopped as stopped:
            if stopped.status == "rejected":
                await self._record(RunRecords.finish_run, FinishRun(
                    run=inp.run, status="rejected", reason="rejected at an approval that ends the run"))
                self._index("rejected")
            return stopped.status

    # ------------------------------------------------------------------ authorization hold

    def _paused(self) -> bool:
        return self.held or self.auth_held

    async def _check_authorizations(self) -> None:
        check = await self._record(RunRecords.check_authorizations,
                                   CheckAuthorizations(run=self.inp.run, at=workflow.now()))
        self.auth_held, self.auth_reasons, self.auth_expiry = check.held, list(check.reasons), check.next_expiry
        self._index(self.stop or ("on_hold" if self._paused() else "running"))

    async def _watch_authorizations(self) -> None:
        """Check again when told the surface or the authorizations changed, and when the authorization the run
        relies on ends: a durable wait, so a hold placed by expiry needs nobody awake."""
        while not self.finished and self.stop is None and not self.continuing:
            timeout = None
            if self.auth_expiry is not None:
                timeout = max(self.auth_expiry - workflow.now(), dt.timedelta(seconds=1))
            try:
                await workflow.wait_condition(
                    lambda: self.recheck or self.finished or self.stop is not None or self.continuing, timeout=timeout)
            except TimeoutError:
                pass
            if self.finished or self.stop is not None or self.continuing:
                return
            self.recheck = False
            await self._check_authorizations()

    @workflow.signal(name=AUTHORIZATION_RECHECK)
    def recheck_authorizations(self) -> None:
        """The run's surface or the organization's authorizations changed: check again (no answer)."""
        self.recheck = True

    async def _end_as(self, status: str) -> None:
        """End a stopped run in a Temporal state that says so (the UI shows COMPLETED otherwise): rejected runs
        fail with a non-retryable RunRejected; cancelled ones end CANCELED once the cancellation the API requests
        after a platform cancel arrives (this wait then raises CancelledError), or fail with RunCancelled a
        minute later if it never comes."""
        if status == "rejected":
            self._rejected()
        try:
            await workflow.wait_condition(lambda: False, timeout=CANCEL_GRACE)
        except TimeoutError:
            raise ApplicationError(f"run cancelled on the platform ({self.cancel_reason or 'no reason given'}); "
                                   "Temporal was not asked to cancel it", type="RunCancelled",
                                   non_retryable=True) from None

    def _rejected(self) -> NoReturn:
        raise ApplicationError(f"run rejected: {self.rejected_at} and the protocol ends the run there",
                               type="RunRejected", non_retryable=True)

    def _index(self, status: str) -> None:
        """The run's status as a search attribute, for operators in the Temporal UI (when the API set them)."""
        if self.inp.indexed:
            workflow.upsert_search_attributes([STATUS_ATTR.value_set(status)])

    async def execute(self, node: StepNode | SequenceNode, path: Path = ()) -> str | None:
        """Run one node; an approval rejected with `repeat` answers the step to go back to."""
        if isinstance(node, SequenceNode):
            await self._sequence(node, path)
            return None
        iteration = self.reached.get(node.key, 0)
        self.reached[node.key] = iteration + 1
        if node.when is not None and not evaluate(node.when, self.values):
            await self._event(node.key, node.kind, "skipped", iteration, {"when": node.when_source})
            return None
        if isinstance(node, TaskNode):
            await self._human(node, iteration, path)
        elif isinstance(node, ApprovalNode):
            return await self._approval(node, iteration, path)
        elif isinstance(node, TimerNode):
            await self._timer(node, iteration)
        elif isinstance(node, ParallelNode):
            await self._parallel(node, path)
        elif isinstance(node, RepeatNode):
            for i in range(node.max_iterations):
                await self._sequence(node.body, (*path, Frame(node, i)))
                if evaluate(node.until, self.values):
                    break
        return None

    async def _sequence(self, node: SequenceNode, path: Path = (), start: int = 0, root: bool = False) -> None:
        keys = [step.key for step in node.steps]
        i = start
        while i < len(node.steps):
            if root and i > start and self.continue_as_new_due(i - start):
                await self._continue_as_new(i)
            back_to = await self.execute(node.steps[i], (*path, Frame(node, i)))
            # The compiler guarantees `from_step` is an earlier step of this same sequence.
            i = keys.index(back_to) if back_to is not None else i + 1

    async def _parallel(self, node: ParallelNode, path: Path) -> None:
        # This lane's busy unit passes to its branches and comes back with the last one to end, so the
        # count never drops to zero while the run is about to move on.
        lanes = Lanes(running=len(node.branches))
        self.busy += lanes.running - 1

        async def lane(branch: SequenceNode) -> None:
            try:
                await self._sequence(branch, (*path, Frame(node, lanes=lanes)))
            finally:
                lanes.running -= 1
                if lanes.running:
                    self.busy -= 1

        # gather does not cancel siblings when one branch raises: every branch ends (a stop ends them all),
        # then the first failure is raised.
        results = await asyncio.gather(*(lane(b) for b in node.branches), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _timer(self, node: TimerNode, iteration: int) -> None:
        await self._wait(lambda: not self._paused())
        duration = self._scaled(node.duration_seconds)
        fires_at = workflow.now() + duration
        await self._event(node.key, "timer", "timer_started", iteration,
                          {"duration_seconds": duration.total_seconds(), "fires_at": fires_at, "title": node.title})
        self.timers[(node.key, iteration)] = (fires_at, node.title)
        try:
            await self._wait(lambda: False, timeout=duration)
        except TimeoutError:
            pass
        finally:
            del self.timers[(node.key, iteration)]
        await self._event(node.key, "timer", "timer_fired", iteration, {})

    async def _human(self, node: HumanStep, iteration: int, path: Path) -> _Pending:
        """Open the step for people and wait until it is done, escalating each level as its time passes."""
        await self._wait(lambda: not self._paused())
        ahead = self.opened_ahead.pop(self._task_id(node, iteration), None)
        opening = ahead or self._opening(node, iteration)
        task_id, due = opening.task_id, opening.due_at
        pending = self.pending[task_id] = _Pending(task_id, node, iteration, due, path)
        if ahead is None:
            await self._record(RunRecords.open_step, opening)
        levels: list[tuple[dt.datetime, list[str]]] = []
        if due is not None:
            levels = [(due, list(node.roles))]
            levels += [(due + self._scaled(lv.seconds_after_due), [lv.notify_role]) for lv in node.escalation]
        for level, (at, roles) in enumerate(levels):
            if at > workflow.now():
                try:
                    await self._wait(lambda: pending.done, timeout=at - workflow.now())
                except TimeoutError:
                    pass
            if not pending.done and self._paused():  # a held run escalates nothing until it resumes
                await self._wait(lambda: pending.done or not self._paused())
            if pending.done:
                break
            assert due is not None
            await self._record(RunRecords.escalate, Escalate(
                run=self.inp.run, task_id=task_id, step_key=node.key, step_kind=node.kind, title=node.title,
                iteration=iteration, level=level, notify_roles=roles, due_at=due, fired_at=workflow.now(),
                scheduled_at=at))
        await self._wait(lambda: pending.done)
        pending.observed = True
        del self.pending[task_id]
        return pending

    async def _approval(self, node: ApprovalNode, iteration: int, path: Path) -> str | None:
        pending = await self._human(node, iteration, path)
        if pending.outcome is not None and pending.outcome.result == "rejected":
            if node.on_reject.action == "repeat":
                return node.on_reject.from_step
            self.rejected_at = f"approval '{node.title}' ({node.key}) rejected"
            self.stop = "rejected"
            raise _Stopped("rejected")
        return None

    # ------------------------------------------------------------------ people: updates and their validators

    @workflow.update
    async def complete_task(self, c: Completion) -> Outcome:
        pending = self.pending[c.task_id]
        assert isinstance(pending.node, TaskNode)
        ahead = self._ahead(pending, c.values)
        outcome = await self._request(RunRecords.complete_task, CompleteTask(
            run=self.inp.run, step=pending.node, iteration=pending.iteration, completion=c, open_next=ahead),
            "the completion")
        return await self._settle(pending, outcome, ahead)

    @complete_task.validator
    def _validate_completion(self, c: Completion) -> None:
        self._check_open(c.task_id, "task")

    @workflow.update
    async def decide(self, d: Decision) -> Outcome:
        pending = self.pending[d.task_id]
        assert isinstance(pending.node, ApprovalNode)
        ahead = self._ahead(pending, None) if d.decision == "approve" else []
        outcome = await self._request(RunRecords.decide_approval, DecideApproval(
            run=self.inp.run, step=pending.node, iteration=pending.iteration, decision=d, open_next=ahead),
            "the decision")
        return await self._settle(pending, outcome, ahead)

    @decide.validator
    def _validate_decision(self, d: Decision) -> None:
        self._check_open(d.task_id, "approval")

    @workflow.update
    async def hold(self, c: Control) -> RunState:
        return await self._control(c)

    @hold.validator
    def _validate_hold(self, c: Control) -> None:
        self._check_running()
        if self.held:
            raise ApplicationError("the run is already on hold", type="WrongState", non_retryable=True)

    @workflow.update
    async def resume(self, c: Control) -> RunState:
        return await self._control(c)

    @resume.validator
    def _validate_resume(self, c: Control) -> None:
        self._check_running()
        if self.auth_held:
            raise ApplicationError(f"the run is on authorization hold ({'; '.join(self.auth_reasons)}): it resumes "
                                   "by itself once the authorization is granted", type="WrongState",
                                   non_retryable=True)
        if not self.held:
            raise ApplicationError("the run is not on hold", type="WrongState", non_retryable=True)

    @workflow.update
    async def cancel(self, c: Control) -> RunState:
        return await self._control(c)

    @cancel.validator
    def _validate_cancel(self, c: Control) -> None:
        self._check_running()

    @workflow.query
    def state(self) -> RunState:
        status = self.stop or ("completed" if self.finished else "on_hold" if self._paused() else "running")
        if status in ENDED:  # an ended run waits for nothing, whatever was open when it ended
            return RunState(run_id=self.inp.run.run_id, status=status, held=self.held, open_tasks=[],
                            reached=dict(self.reached))
        tasks = self._open_tasks()
        waiting = [Waiting(kind="hold", reason=self.hold_reason)] if self.held else []
        if self.auth_held:
            waiting.append(Waiting(kind="hold", reason="authorization hold: " + "; ".join(self.auth_reasons)))
        waiting += [Waiting(kind=t.kind, step_key=t.step_key, title=t.title, task_id=t.task_id, iteration=t.iteration,
                            until=t.due_at) for t in tasks]
        waiting += [Waiting(kind="timer", step_key=key, title=title, iteration=i, until=at)
                    for (key, i), (at, title) in self.timers.items()]
        return RunState(run_id=self.inp.run.run_id, status=status, held=self._paused(), open_tasks=tasks,
                        reached=dict(self.reached), waiting_for=waiting)

    def _check_running(self) -> None:
        if self.stop is not None or self.finished:
            raise ApplicationError(f"the run has ended ({self.stop or 'completed'})", type="WrongState",
                                   non_retryable=True)

    def _check_open(self, task_id: str, kind: str) -> None:
        self._check_running()
        pending = self.pending.get(task_id)
        if pending is None or pending.done:
            raise ApplicationError(f"step is not open: task {task_id} is not waiting for anyone in this run",
                                   type="WrongStep", non_retryable=True)
        if pending.node.kind != kind:
            use = "POST /api/v1/runs/{run_id}/approvals" if pending.node.kind == "approval" else \
                "POST /api/v1/tasks/{task_id}/complete"
            raise ApplicationError(f"wrong step: '{pending.node.key}' is {pending.node.kind} step; use {use}",
                                   type="WrongStep", non_retryable=True)

    async def _settle(self, pending: _Pending, outcome: Outcome, ahead: list[OpenStep]) -> Outcome:
        """Mark the step done, then answer once the run waits again (or has ended), naming what is open next."""
        if outcome.ok and not pending.done:
            self.opened_ahead.update((o.task_id, o) for o in ahead)
            pending.done, pending.outcome = True, outcome
            if outcome.values is not None:
                self.values[pending.node.key] = outcome.values
        if outcome.ok:  # a run that stops meanwhile ends up `finished` too
            await workflow.wait_condition(
                lambda: self.finished or self.continuing or (pending.observed and self.busy == 0))
        return outcome.model_copy(update={"open_tasks": self._open_tasks(), "run_status": self.state().status})

    async def _control(self, c: Control) -> RunState:
        # The run's state changes only once the record is committed: a control that fails changes nothing here
        # either, so the database and the workflow never disagree about it.
        status = await self._request(RunRecords.control_run, ControlRun(run=self.inp.run, control=c),
                                     f"the {c.action}")
        if c.action == "cancel":
            self.stop = "cancelled"
            self.cancel_reason = f"by {c.actor.display}: {c.reason}"
        else:
            self.held = c.action == "hold" if self.auth_held else status == "on_hold"
            self.hold_reason = c.reason if self.held else None
        self._index(self.stop or ("on_hold" if self._paused() else "running"))
        return self.state().model_copy(update={"actor_id": c.actor.id})

    # ------------------------------------------------------------------ opening ahead

    def _ahead(self, pending: _Pending, raw_values: Mapping[str, object] | None) -> list[OpenStep]:
        """The steps this step's completion opens next, when they can be told now (workflows/navigation.py):
        the completion's own activity records them in its transaction, so a completion costs one local
        activity, not two. A held or stopping run opens nothing ahead. `_human` takes an opening from
        `opened_ahead` instead of recording it again; whatever navigation cannot tell is left to it.
        """
        if self._paused() or self.stop is not None:
            return []
        values: dict[str, Mapping[str, object]] = dict(self.values)
        if raw_values is not None:
            assert isinstance(pending.node, TaskNode)
            try:
                values[pending.node.key] = normalize_values(pending.node, raw_values)
            except SubmissionError:
                return []  # refused anyway
        nxt = next_human_steps(pending.path, values)
        return [self._opening(n, self.reached.get(n.key, 0)) for n in nxt or []]

    def _task_id(self, node: HumanStep, iteration: int) -> str:
        return str(uuid.uuid5(uuid.UUID(self.inp.run.run_id), f"task:{node.key}:{iteration}"))

    def _opening(self, node: HumanStep, iteration: int) -> OpenStep:
        opened = workflow.now()
        due = opened + self._scaled(node.due_seconds) if node.due_seconds is not None else None
        return OpenStep(run=self.inp.run, task_id=self._task_id(node, iteration), step=node, iteration=iteration,
                        opened_at=opened, due_at=due)

    # ------------------------------------------------------------------ helpers

    async def _wait(self, ready: Callable[[], bool], timeout: dt.timedelta | None = None) -> None:
        """Wait for people or time; raise _Stopped when the run stops meanwhile."""
        if ready() and self.stop is None:
            return  # nothing to wait for: stay busy, so no answer goes out before the run moves on
        self.busy -= 1
        try:
            await workflow.wait_condition(lambda: ready() or self.stop is not None, timeout=timeout)
        finally:
            self.busy += 1
        if self.stop is not None:
            raise _Stopped(self.stop)

    def _scaled(self, seconds: int) -> dt.timedelta:
        """A protocol duration under the run's time scale; a scaled one is never under a second."""
        scale = self.inp.time_scale
        return dt.timedelta(seconds=seconds if scale == 1 else max(seconds * scale, min(seconds, 1)))

    def _open_tasks(self) -> list[TaskBrief]:
        return [TaskBrief(task_id=p.task_id, step_key=p.node.key, kind=p.node.kind, title=p.node.title,
                          iteration=p.iteration, due_at=p.due_at) for p in self.pending.values() if not p.done]

    async def _event(self, step_key: str, step_kind: str, event: str, iteration: int,
                     detail: dict[str, object]) -> None:
        await self._record(RunRecords.record_event, StepEvent(
            run=self.inp.run, key=f"{event}:{step_key}:{iteration}", step_key=step_key, step_kind=step_kind,
            event=event, iteration=iteration, at=workflow.now(), detail=detail))

    async def _record(self, activity: Record[Msg, Answer], arg: Msg) -> Answer:
        """One of the interpreter's own records, retried until the database takes it."""
        try:
            async with self._one_record:
                return await workflow.execute_local_activity_method(
                    activity, arg, start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY)
        except (ActivityError, ApplicationError) as exc:
            # Only a refusal ends the retries here, and the interpreter's records are never refused unless
            # something is badly wrong: fail the workflow task (Temporal retries it, the UI shows why), never
            # the run, which would leave the database showing it running.
            raise RuntimeError(f"{activity.__name__} refused: {exc}") from exc

    async def _request(self, activity: Record[Msg, Answer], arg: Msg, doing: str) -> Answer:
        """A person's request recorded by its activity; its refusal or failure fails the update, not the run."""
        try:
            async with self._one_record:
                return await workflow.execute_local_activity_method(
                    activity, arg, start_to_close_timeout=RECORD_TIMEOUT, retry_policy=REQUEST_RETRY)
        except (ActivityError, ApplicationError) as exc:
            # A local activity's last failure arrives as its ApplicationError itself (no ActivityError around it).
            cause = exc.cause if isinstance(exc, ActivityError) else exc
            refusal = cause.details[0] if isinstance(cause, ApplicationError) and cause.details else None
            if isinstance(refusal, dict) and "status" in refusal:  # activities/runs.py `refusal`: the API's 4xx
                assert isinstance(cause, ApplicationError)
                raise ApplicationError(cause.message, refusal, type=cause.type, non_retryable=True) from None
            why = cause.type if isinstance(cause, ApplicationError) and cause.type else type(cause).__name__
            raise ApplicationError(
                f"{doing} could not be recorded ({why}, {REQUEST_ATTEMPTS} attempts); nothing changed and the run "
                "takes further requests: send it again with a new X-Request-ID", type="NotRecorded",
                non_retryable=True) from None

    def continue_as_new_due(self, root_steps_done: int) -> bool:
        """Whether to continue as new before the next root step, `root_steps_done` root steps after this run
        (or its last continuation) started: when Temporal suggests it, its history nearing the limits. The one
        seam for tests: tests/run_workflow/standins.py overrides it to continue as new sooner."""
        return workflow.info().is_continue_as_new_suggested()

    async def _continue_as_new(self, next_index: int) -> None:
        """Continue as a new run of the same workflow id, at a root step boundary (nothing open then)."""
        self.continuing = True  # handlers waiting for the run to settle answer now
        await workflow.wait_condition(workflow.all_handlers_finished)
        resume = Resume(next_index=next_index, values=self.values, reached=self.reached, held=self.held)
        workflow.continue_as_new(self.inp.model_copy(update={"resume": resume}))
