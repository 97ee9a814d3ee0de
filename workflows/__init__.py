"""Temporal workflows: the protocol run interpreter (run.py), the records it asks activities to make (records.py,
implemented in activities/runs.py) and the look-ahead over its plan (navigation.py). No I/O package here."""

from workflows.run import WORKFLOW_NAME, ProtocolRun

__all__ = ["WORKFLOW_NAME", "ProtocolRun"]
