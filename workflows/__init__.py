"""Temporal workflows: the protocol run interpreter (run.py)."""

from workflows.run import WORKFLOW_NAME, ProtocolRun

__all__ = ["WORKFLOW_NAME", "ProtocolRun"]
