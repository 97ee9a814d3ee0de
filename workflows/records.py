"""The records a protocol run makes, as the workflow sees them: one activity each, its name on the wire, its
argument and its answer. No bodies: activities/runs.py writes them to PostgreSQL (tests' stand-ins answer
without a database), so the workflow calls them by reference and stays free of I/O packages.

The names are part of every recorded history (local activity markers name them): never rename one. A new
record is a new method here, implemented in activities/runs.py and in the tests' stand-ins.
"""

from __future__ import annotations

from temporalio import activity

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
    StepEvent,
    TaskBrief,
)


class RunRecords:
    """What the run workflow asks activities to record; subclasses implement every method."""

    @activity.defn(name="open_step")
    def open_step(self, msg: OpenStep) -> TaskBrief:
        """A task or approval opens for people (its task row and its audit entry)."""
        raise NotImplementedError

    @activity.defn(name="complete_task")
    def complete_task(self, msg: CompleteTask) -> Outcome:
        """A technician's completion, checked and recorded with the steps it opens next; or refused."""
        raise NotImplementedError

    @activity.defn(name="decide_approval")
    def decide_approval(self, msg: DecideApproval) -> Outcome:
        """An approver's signed decision, recorded with the steps it opens next; or refused."""
        raise NotImplementedError

    @activity.defn(name="escalate")
    def escalate(self, msg: Escalate) -> bool:
        """One escalation level of an overdue step: its record and its notifications."""
        raise NotImplementedError

    @activity.defn(name="record_event")
    def record_event(self, msg: StepEvent) -> bool:
        """A step event of the interpreter's own: a timer started or fired, a step skipped."""
        raise NotImplementedError

    @activity.defn(name="control_run")
    def control_run(self, msg: ControlRun) -> str:
        """A hold, resume or cancel on record; the run's status after it."""
        raise NotImplementedError

    @activity.defn(name="finish_run")
    def finish_run(self, msg: FinishRun) -> str:
        """The run's end (completed, or rejected at an approval that ends it)."""
        raise NotImplementedError


    @activity.defn(name="check_authorizations")
    def check_authorizations(self, msg: CheckAuthorizations) -> AuthorizationCheck:
        """Whether the run's surface needs an authorization it lacks now (a hold placed or lifted is on record)."""
        raise NotImplementedError
