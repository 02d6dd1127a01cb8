"""What a request does: accounts, cues, executions, outcomes, alerts, usage, claims, workers."""
