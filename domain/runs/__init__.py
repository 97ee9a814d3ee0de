"""Protocol runs: launch, controls, approvals, history, and the records they write for the lake."""
