"""The worker daemon users run: pulls worker-transport executions and runs their handlers."""

from cuefast.worker.daemon import Worker
from cuefast.worker.handlers import Context, Outcome

__all__ = ["Context", "Outcome", "Worker"]
