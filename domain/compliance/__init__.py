"""The compliance engine: regulatory tags (`tags`), the derived compliance surface with provenance (`surface`),
frameworks and scoped checklist items (`checklists`), authorization rules, records and holds
(`authorizations`), qualifications (`qualifications`), compliance status (`status`). `extra_checklist_items` and
`completion_gates` are what domain/tasks calls (`hooks`)."""

from domain.compliance.checklists import PREFIX
from domain.compliance.hooks import completion_gates, extra_checklist_items, task_opened

__all__ = ["PREFIX", "completion_gates", "extra_checklist_items", "task_opened"]
