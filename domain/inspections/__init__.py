"""Formal audits (inspections) of the lab's work: scope, findings, outcome, the auditor's signature (issue 10 §3)."""
