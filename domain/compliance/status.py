"""The compliance status of a run or a sample, derived from their state, with the reasons:

- run: `on_hold` while on authorization hold (or held by a person); `action_needed` while an open task has
  compliance checklist items attached that a person must confirm; otherwise `compliant`.
- sample: `on_hold` while an open run on it is on authorization hold; `action_needed` when its surface calls for an
  authorization of which none is in force; otherwise `compliant`.
`deviation_open` is kept for compliance events (deviations, contamination) once they are recorded against a run
or sample.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.compliance import authorizations, surface, tags
from domain.compliance.models import ComplianceStatus
from domain.errors import NotFound


def of_run(session: Session, run_id: uuid.UUID) -> ComplianceStatus:
    run = session.execute(text("SELECT status, status_reason FROM runs WHERE id = :r"), {"r": run_id}).first()
    if run is None:
        raise NotFound(f"no run {run_id}")
    keys = sorted(surface.of_run(session, run_id).keys())
    reasons = [f"authorization hold: {why}" for why in authorizations.hold_of(session, run_id)]
    if run.status == "on_hold" and not reasons:
        reasons.append(f"held: {run.status_reason}")
    if reasons:
        return ComplianceStatus(subject_type="run", subject_id=run_id, status="on_hold", reasons=reasons, tags=keys)
    pending = session.execute(text(
        "SELECT t.step_key, i.key FROM compliance_requirements r JOIN tasks t ON t.id = r.task_id"
        " JOIN compliance_checklist_items i ON i.id = r.item_id WHERE t.run_id = :r AND t.status = 'open'"
        " ORDER BY t.step_key, i.key"), {"r": run_id}).all()
    reasons = [f"step {p.step_key}: confirm compliance item '{p.key}'" for p in pending]
    return ComplianceStatus(subject_type="run", subject_id=run_id, status="action_needed" if reasons else "compliant",
                            reasons=reasons, tags=keys)


def of_sample(session: Session, sample_id: uuid.UUID) -> ComplianceStatus:
    s = surface.of_sample(session, sample_id)
    keys = s.keys()
    held = [r for r in tags.runs_of_samples(session, [sample_id]) if authorizations.hold_of(session, r)]
    if held:
        reasons = [f"run {r}: on authorization hold ({'; '.join(authorizations.hold_of(session, r))})" for r in held]
        return ComplianceStatus(subject_type="sample", subject_id=sample_id, status="on_hold", reasons=reasons,
                                tags=sorted(keys))
    in_force = {a.authorization_type for a in authorizations.list_authorizations(session) if a.in_force}
    reasons = [f"{', '.join(sorted(keys.intersection(rule.tags)))} needs {rule.authorization_type}: none in force"
               for rule in authorizations.list_rules(session)
               if keys.intersection(rule.tags) and rule.authorization_type not in in_force]
    return ComplianceStatus(subject_type="sample", subject_id=sample_id,
                            status="action_needed" if reasons else "compliant", reasons=reasons, tags=sorted(keys))
