"""Every piece of I/O the run workflow needs, one activity per record it makes.

Each runs as a local activity (a short database transaction next to the workflow) and is idempotent:
rows carry keys derived from the run and step, so an activity retried after a worker crash writes
nothing twice. Thin by design: the rules live in domain/tasks/service.py and domain/runs/service.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from domain.notifications import DatabaseNotifier, Notifier
from domain.roles import SYSTEM_ACTOR
from domain.runs import records
from domain.runs import service as runs
from domain.runs.messages import (
    CompleteTask,
    ControlRun,
    DecideApproval,
    Escalate,
    FinishRun,
    OpenStep,
    Outcome,
    StepEvent,
    TaskBrief,
)
from domain.tasks import service as tasks
from flasktrack.db import TenantSessions


class RunActivities:
    def __init__(self, sessions: TenantSessions, notifier: Notifier | None = None) -> None:
        self.sessions = sessions
        self.notifier = notifier or DatabaseNotifier()

    def all(self) -> list[Callable[..., Any]]:
        return [self.open_step, self.complete_task, self.decide_approval, self.escalate, self.record_event,
                self.control_run, self.finish_run]

    @activity.defn(name="open_step")
    def open_step(self, msg: OpenStep) -> TaskBrief:
        with self.sessions.begin(msg.run.org_id) as s:
            return tasks.open_task(s, msg)

    @activity.defn(name="complete_task")
    def complete_task(self, msg: CompleteTask) -> Outcome:
        try:
            with self.sessions.begin(msg.run.org_id) as s:
                return tasks.complete(s, msg)
        except tasks.RequestReused:
            with self.sessions.begin(msg.run.org_id) as s:
                return tasks.refuse_reused(s, msg)

    @activity.defn(name="decide_approval")
    def decide_approval(self, msg: DecideApproval) -> Outcome:
        with self.sessions.begin(msg.run.org_id) as s:
            return runs.decide(s, msg)

    @activity.defn(name="escalate")
    def escalate(self, msg: Escalate) -> bool:
        with self.sessions.begin(msg.run.org_id) as s:
            return tasks.escalate(s, msg, self.notifier)

    @activity.defn(name="record_event")
    def record_event(self, msg: StepEvent) -> bool:
        with self.sessions.begin(msg.run.org_id) as s:
            return records.step_event(s, msg.run, key=msg.key, event=msg.event, step_key=msg.step_key,
                                      step_kind=msg.step_kind, iteration=msg.iteration, actor=SYSTEM_ACTOR,
                                      detail={**msg.detail, "workflow_time": msg.at})

    @activity.defn(name="control_run")
    def control_run(self, msg: ControlRun) -> str:
        with self.sessions.begin(msg.run.org_id) as s:
            return runs.control(s, msg)

    @activity.defn(name="finish_run")
    def finish_run(self, msg: FinishRun) -> str:
        with self.sessions.begin(msg.run.org_id) as s:
            return runs.finish(s, msg)
