"""The compliance surface's hooks into protocol runs.

`extra_checklist_items` is where requirements derived from the run's samples (regulatory tags through
their lineage, authorizations in force) add items a technician must confirm before a step completes.
The completion gates and the task inbox already call it; it adds nothing yet.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from domain.protocols.plan import ChecklistItem, TaskNode
from domain.runs.rows import RunRow


def extra_checklist_items(session: Session, run: RunRow, step: TaskNode) -> list[ChecklistItem]:
    """Checklist items beyond the step's own for this run. None today."""
    return []
