"""Tasks of runs: the inbox, claims, completion gates, escalations."""
