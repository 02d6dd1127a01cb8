"""The worker daemon users run: pulls worker-transport executions and runs their handlers."""

from cuefast.worker.daemon import Context, Outcome, Worker

__all__ = ["Context", "Outcome", "Worker"]
