"""Approvals of runs: electronic signatures bound to the records they review, and the decisions they carry."""
