"""Protocol runs: launch, controls, the end of a run, history, and the records they write for the lake."""
