"""What every step action goes through, a task's completion or an approval's decision: the gates common to
both, the refusal on record (every reason at once), and the first answer kept per request id."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit
from domain.audit import Severity
from domain.roles import RequestContext
from domain.runs.messages import ActorRef, Outcome, RunRef
from domain.runs.rows import RunRow
from domain.tasks.rows import TaskRow


def prior_answer(session: Session, request_id: str | None) -> tuple[str, Outcome] | None:
    """The first answer given to this request id in the org, with the task it was about."""
    if not request_id:
        return None
    row = session.execute(
        text("SELECT task_id, result FROM task_requests WHERE org_id = current_org() AND request_id = :q"),
        {"q": request_id},
    ).first()
    return (str(row.task_id), Outcome.model_validate(row.result)) if row else None


def remember_answer(session: Session, run: RunRef, outcome: Outcome, request_id: str | None) -> bool:
    """Keep the first answer to this request id; False when the id had answered before."""
    if not request_id:
        return True
    row = session.execute(
        text("INSERT INTO task_requests (org_id, request_id, task_id, run_id, result) VALUES (:o, :q, :t, :r,"
             " CAST(:res AS jsonb)) ON CONFLICT DO NOTHING RETURNING request_id"),
        {"o": run.org_id, "q": request_id, "t": outcome.task_id, "r": run.run_id, "res": outcome.model_dump_json()},
    ).first()
    return row is not None


def common_gates(task: TaskRow, run: RunRow, actor: ActorRef) -> tuple[list[str], list[str]]:
    """Reasons the actor may not act on this task of this run now: (forbidden, conflicting)."""
    forbidden: list[str] = []
    conflicts: list[str] = []
    if task.status != "open":
        conflicts.append(f"task: already {task.status}")
    if actor.role not in task.roles:
        allowed = ", ".join(task.roles)
        forbidden.append(f"role: {actor.role} may not perform step '{task.step_key}' (allowed: {allowed})")
    if task.claimed_by is not None and str(task.claimed_by) != actor.user_id:
        conflicts.append(f"claim: the task is claimed by {task.claimed_by_display}; they must release it first")
    if run.status == "on_hold" and (run.status_reason or "").startswith("authorization hold: "):
        conflicts.append(f"run: on {run.status_reason}; it resumes by itself once the authorization is granted")
    elif run.status == "on_hold":
        conflicts.append(f"run: on hold ({run.status_reason}); a lab manager must resume it before work goes on")
    elif run.status != "running":
        conflicts.append(f"run: {run.status}; it takes no more work")
    return forbidden, conflicts


def refusal(
    session: Session, run: RunRef, task: TaskRow | None, *, step_key: str, iteration: int, actor: ActorRef,
    request: RequestContext, forbidden: list[str], conflicts: list[str], invalid: list[str], doing: str,
) -> Outcome:
    """Answer every reason at once (403 before 409 before 422) and put the attempt on record."""
    status = 403 if forbidden else 409 if conflicts else 422
    reasons = forbidden + conflicts + invalid
    message = f"{doing} refused: " + "; ".join(reasons)
    audit.record(session, org_id=run.org_id, actor=actor.actor(), action="refuse", entity_type="task",
                 entity_id=str(task.id) if task else "-", after={"doing": doing, "status": status, "reasons": reasons},
                 reason=message[:2000], severity=Severity.warning, context=request)
    return Outcome(ok=False, status=status, message=message, reasons=reasons, task_id=str(task.id) if task else "",
                   run_id=run.run_id, step_key=step_key, iteration=iteration, result="refused", actor_id=actor.id)
