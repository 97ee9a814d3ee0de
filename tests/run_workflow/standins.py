"""Stand-ins for the run workflow's records, and the one test variant of the workflow, for tests that run
the interpreter without PostgreSQL: the fast workflow tests (tests/run_workflow) and the replay recorder
(tests/replay/record.py).

The stand-ins implement workflows/records.py as the database would answer when every check passes: a
completion is accepted with its values normalized, a decision is taken, a control changes the status.
Each message is kept in `calls` so a test can say what the run recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from temporalio import activity, workflow

from domain.protocols.forms import normalize_values
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
    RunInput,
    RunRef,
    StepEvent,
    TaskBrief,
)
from workflows.records import RunRecords
from workflows.run import WORKFLOW_NAME, ProtocolRun

M = TypeVar("M")
ACTION_STATUS = {"hold": "on_hold", "resume": "running", "cancel": "cancelled"}


class StandInRecords(RunRecords):
    """Every record accepted at once, and kept: (activity name, message) in call order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []  # (run id, message) for every record, in call order
        self._lock = threading.Lock()  # activities run on a thread pool

    def all(self) -> list[Callable[..., object]]:
        return [self.open_step, self.complete_task, self.decide_approval, self.escalate, self.record_event,
                self.control_run, self.finish_run, self.check_authorizations]

    def _keep(self, run: RunRef, msg: object) -> None:
        with self._lock:
            self.calls.append((run.run_id, msg))

    def of_run(self, run_id: str, kind: type[M]) -> list[M]:
        """The messages of one kind recorded for one run (each record takes its own kind of message)."""
        with self._lock:
            return [m for r, m in self.calls if r == run_id and isinstance(m, kind)]

    @activity.defn(name="check_authorizations")
    def check_authorizations(self, msg: CheckAuthorizations) -> AuthorizationCheck:
        self._keep(msg.run, msg)
        return AuthorizationCheck(held=False)

    @activity.defn(name="open_step")
    def open_step(self, msg: OpenStep) -> TaskBrief:
        self._keep(msg.run, msg)
        return TaskBrief(task_id=msg.task_id, step_key=msg.step.key, kind=msg.step.kind, title=msg.step.title,
                         iteration=msg.iteration, due_at=msg.due_at)

    @activity.defn(name="complete_task")
    def complete_task(self, msg: CompleteTask) -> Outcome:
        self._keep(msg.run, msg)
        return Outcome(ok=True, task_id=msg.completion.task_id, run_id=msg.run.run_id, step_key=msg.step.key,
                       iteration=msg.iteration, result="completed",
                       values=normalize_values(msg.step, msg.completion.values))

    @activity.defn(name="decide_approval")
    def decide_approval(self, msg: DecideApproval) -> Outcome:
        self._keep(msg.run, msg)
        result = "approved" if msg.decision.decision == "approve" else "rejected"
        return Outcome(ok=True, task_id=msg.decision.task_id, run_id=msg.run.run_id, step_key=msg.step.key,
                       iteration=msg.iteration, result=result, signature_id=msg.decision.signature_id)

    @activity.defn(name="escalate")
    def escalate(self, msg: Escalate) -> bool:
        self._keep(msg.run, msg)
        return True

    @activity.defn(name="record_event")
    def record_event(self, msg: StepEvent) -> bool:
        self._keep(msg.run, msg)
        return True

    @activity.defn(name="control_run")
    def control_run(self, msg: ControlRun) -> str:
        self._keep(msg.run, msg)
        return ACTION_STATUS[msg.control.action]

    @activity.defn(name="finish_run")
    def finish_run(self, msg: FinishRun) -> str:
        self._keep(msg.run, msg)
        return msg.status


@workflow.defn(name=WORKFLOW_NAME)
class ContinuingEveryStep(ProtocolRun):
    """The run workflow continuing as new at every root step boundary, as a long run does once Temporal
    suggests it: through the workflow's one test seam, `continue_as_new_due`."""

    @workflow.run
    async def run(self, inp: RunInput) -> str:
        return await super().run(inp)

    def continue_as_new_due(self, root_steps_done: int) -> bool:
        return True
