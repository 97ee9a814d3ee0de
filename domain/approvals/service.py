"""Approvals of runs: the approval a request is about, its gates, and the decision (the workflow's activity).

Approvals are electronic signatures bound to the hash of the records they review (21 CFR 11.70):
the task steps the approval covers (`ApprovalNode.reviews`), their latest completion in this run with
the values submitted. Nobody approves work they performed in the run (segregation of duties).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import audit, signatures
from domain.canonical import canonical_bytes, format_ts
from domain.errors import Conflict, Forbidden, Invalid, NotFound
from domain.roles import Caller
from domain.rows import from_row
from domain.runs import records
from domain.runs.messages import ActorRef, DecideApproval, Decision, Outcome
from domain.runs.rows import run_row
from domain.tasks import lifecycle
from domain.tasks.actions import common_gates, prior_answer, refusal, remember_answer
from domain.tasks.rows import TASK_COLUMNS, TaskRow

ReviewedRecord = dict[str, object]  # one reviewed step's latest completion, as the signature binds it


def reviewed_records(session: Session, run_id: str, reviews: list[str]) -> tuple[str, list[ReviewedRecord]]:
    """The records an approval signs: the latest completion of each reviewed step in the run, with its values;
    and their SHA-256 over canonical JSON (what the signature's content_hash binds)."""
    rows = session.execute(
        text("SELECT DISTINCT ON (t.step_key) t.id, t.step_key, t.iteration, t.closed_by, t.closed_at,"
             " f.id AS submission_id, f.field_values, f.checklist, f.evidence FROM tasks t"
             " LEFT JOIN form_submissions f ON f.task_id = t.id"
             " WHERE t.run_id = :r AND t.step_key = ANY(:keys) AND t.status = 'completed'"
             " ORDER BY t.step_key, t.iteration DESC"),
        {"r": run_id, "keys": reviews},
    ).all()
    recs: list[ReviewedRecord] = [
        {"task_id": str(r.id), "step_key": r.step_key, "iteration": r.iteration, "performed_by": r.closed_by,
         "completed_at": format_ts(r.closed_at), "submission_id": str(r.submission_id) if r.submission_id else None,
         "values": r.field_values, "checklist": r.checklist, "evidence": r.evidence} for r in rows]
    content = {"run_id": run_id, "records": recs}
    return hashlib.sha256(canonical_bytes(content)).hexdigest(), recs


def performed_by(session: Session, run_id: str, reviews: list[str], actor_id: str) -> list[str]:
    """Reviewed steps this actor performed in the run (any iteration)."""
    rows = session.execute(
        text("SELECT DISTINCT step_key FROM tasks WHERE run_id = :r AND step_key = ANY(:keys) AND closed_by = :a"
             " AND status = 'completed' ORDER BY step_key"),
        {"r": run_id, "keys": reviews, "a": actor_id},
    ).all()
    return [r.step_key for r in rows]


def approval_task(session: Session, run_id: uuid.UUID, task_id: uuid.UUID | None) -> TaskRow:
    """The approval the request is about: the given one, or the run's only open approval."""
    run_row(session, run_id)
    sql = f"SELECT {TASK_COLUMNS} FROM tasks t WHERE run_id = :r AND kind = 'approval'"
    if task_id is not None:
        row = session.execute(text(sql + " AND id = :t"), {"r": run_id, "t": task_id}).first()
        if row is None:
            raise NotFound(f"run {run_id} has no approval {task_id}")
        return from_row(TaskRow, row)
    rows = session.execute(text(sql + " AND status = 'open' ORDER BY opened_at"), {"r": run_id}).all()
    if len(rows) != 1:
        raise Conflict(f"the run has {len(rows)} open approvals: name one with task_id" if rows
                       else "the run has no open approval")
    return from_row(TaskRow, rows[0])


def _reviews(task: TaskRow) -> list[str]:
    return list(task.spec.get("reviews", []))


def approval_gates(session: Session, task: TaskRow, actor: ActorRef, decision: str, reason: str | None
                   ) -> tuple[list[str], list[str], list[str]]:
    """Every reason this person may not decide this approval now: (forbidden, conflicts, invalid)."""
    forbidden, conflicts = common_gates(task, run_row(session, task.run_id), actor)
    mine = performed_by(session, str(task.run_id), _reviews(task), actor.id)
    if mine:
        forbidden.append(f"segregation of duties: you performed {', '.join(mine)} in this run, which this approval "
                         "reviews; someone else must sign")
    invalid = [] if decision == "approve" or (reason and reason.strip()) else ["reason: required when rejecting"]
    return forbidden, conflicts, invalid


def check_approval(session: Session, caller: Caller, task: TaskRow, decision: str, reason: str | None) -> str:
    """The API's gate before asking for the signature: raise with every reason; else the content hash to sign."""
    forbidden, conflicts, invalid = approval_gates(session, task, ActorRef.of(caller), decision, reason)
    reasons = forbidden + conflicts + invalid
    if forbidden:
        raise Forbidden("approval refused: " + "; ".join(reasons), reasons=reasons)
    if conflicts:
        raise Conflict("approval refused: " + "; ".join(reasons), reasons=reasons)
    if invalid:
        raise Invalid("approval refused: " + "; ".join(reasons), reasons=reasons)
    content_hash, _ = reviewed_records(session, str(task.run_id), _reviews(task))
    return content_hash


def signed_hash(session: Session, signature_id: str) -> str:
    row = session.execute(text("SELECT content_hash FROM signatures WHERE id = :s"), {"s": signature_id}).one()
    return str(row.content_hash)


@dataclass(frozen=True)
class SignedAs:
    """The signature a closed approval carries: what was signed (the hash then), by whom, meaning what, when."""

    signer_name: str
    meaning: str
    content_hash: str
    signed_at: dt.datetime
    reason: str | None


def signature_of(session: Session, task_id: uuid.UUID | str) -> SignedAs | None:
    """The latest signature on this approval task, or None (an open one, or one closed without a signature)."""
    row = session.execute(text("SELECT signer_name, meaning, content_hash, signed_at, reason FROM signatures"
                               " WHERE org_id = current_org() AND entity_type = 'task' AND entity_id = :t"
                               " ORDER BY signed_at DESC LIMIT 1"), {"t": str(task_id)}).first()
    return SignedAs(row.signer_name, row.meaning, row.content_hash, row.signed_at, row.reason) if row else None


def _verified_signature(d: Decision) -> signatures.Signature | None:
    if d.meaning is None or d.signer_name is None or d.signed_at is None or d.actor.user_id is None:
        return None
    return signatures.Signature(
        id=uuid.UUID(d.signature_id), signer_id=uuid.UUID(d.actor.user_id), signer_name=d.signer_name,
        meaning=signatures.Meaning(d.meaning), reason=d.reason, entity_type="task", entity_id=d.task_id,
        content_hash=d.content_hash, signed_at=d.signed_at)


def decide(session: Session, msg: DecideApproval) -> Outcome:
    """Record an approval decision (the workflow's activity): gates again, the signature bound to the reviewed
    records as they are now, then the signature, the task, step event, audit entry and outbox row together: a
    refused decision records no signature."""
    d, run, step = msg.decision, msg.run, msg.step
    prior = prior_answer(session, d.request.request_id)
    if prior is not None and prior[0] == d.task_id:
        return prior[1]
    row = session.execute(text(f"SELECT {TASK_COLUMNS} FROM tasks t WHERE id = :t FOR UPDATE"),
                          {"t": d.task_id}).first()
    if row is None:
        raise NotFound(f"no task {d.task_id}")
    task = from_row(TaskRow, row)
    forbidden, conflicts, invalid = approval_gates(session, task, d.actor, d.decision, d.reason)
    content_hash, _ = reviewed_records(session, run.run_id, list(step.reviews))
    new_signature = _verified_signature(d)
    if new_signature is not None:  # verified by the API: recorded below with the decision, or not at all
        signed_by, meaning, signed_hash = str(new_signature.signer_id), new_signature.meaning.value, d.content_hash
    else:  # a decision sent before signatures travelled with it (replayed histories): its row was written then
        sig = session.execute(
            text("SELECT signer_id, meaning, content_hash FROM signatures WHERE id = :s AND entity_type = 'task'"
                 " AND entity_id = :t"), {"s": d.signature_id, "t": d.task_id},
        ).first()
        signed_by, meaning, signed_hash = (str(sig.signer_id), sig.meaning, sig.content_hash) if sig else ("", "", "")
    if not signed_by or signed_by != d.actor.user_id:
        forbidden.append("signature: no signature by you on this approval")
    elif signed_hash != content_hash or d.content_hash != content_hash:
        conflicts.append("signature: the reviewed records changed since you signed; review and sign again")
    if forbidden or conflicts or invalid:
        return refusal(session, run, task, step_key=step.key, iteration=msg.iteration, actor=d.actor,
                       request=d.request, forbidden=forbidden, conflicts=conflicts, invalid=invalid,
                       doing="approval")
    actor = d.actor.actor()
    if new_signature is not None:
        signatures.record(session, new_signature, org_id=run.org_id, actor=actor, context=d.request)
    status: Literal["approved", "rejected"] = "approved" if d.decision == "approve" else "rejected"
    at = records.now()
    session.execute(
        text("UPDATE tasks SET status = :s, closed_at = :at, closed_by = :by, closed_by_display = :byd WHERE id = :t"),
        {"s": status, "at": at, "by": actor.id, "byd": actor.display, "t": d.task_id},
    )
    detail = {"task_id": d.task_id, "signature_id": d.signature_id, "meaning": meaning,
              "content_hash": content_hash, "reason": d.reason, "reviews": list(step.reviews),
              "on_reject": step.on_reject.model_dump() if status == "rejected" else None}
    records.step_event(session, run, key=f"{status}:{d.task_id}", event=status, step_key=step.key,
                       step_kind="approval", iteration=msg.iteration, actor=actor, detail=detail, task_id=d.task_id,
                       occurred_at=at)
    audit.record(session, org_id=run.org_id, actor=actor, action="approve" if status == "approved" else "reject",
                 entity_type="task", entity_id=d.task_id, before={"status": "open"},
                 after={"status": status, **detail}, reason=d.reason, context=d.request, occurred_at=at)
    outcome = Outcome(ok=True, task_id=d.task_id, run_id=run.run_id, step_key=step.key, iteration=msg.iteration,
                      result=status, signature_id=d.signature_id, closed_at=at, actor_id=d.actor.id)
    remember_answer(session, run, outcome, d.request.request_id)
    for opening in msg.open_next:
        lifecycle.open_task(session, opening)
    return outcome
