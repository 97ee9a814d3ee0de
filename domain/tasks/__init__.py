"""Tasks of runs: opening and closing them with the run, the inbox, claims, completion gates, escalations."""
