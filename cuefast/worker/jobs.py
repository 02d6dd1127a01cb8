"""The executions a worker daemon holds (waiting for a slot, running) and its counters."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cuefast.client.models import ClaimedExecution, OutcomeReport
from cuefast.worker.handlers import (
    Context,
    Handler,
    Threads,
    failure_report,
    is_async,
    outcome_report,
    positional_arity,
)

if TYPE_CHECKING:
    from cuefast.worker.outcomes import Outbox

log = logging.getLogger("cuefast.worker.daemon")  # the daemon logs under one name


@dataclass(slots=True)
class Job:
    item: ClaimedExecution
    context: Context
    task: asyncio.Task[None] | None = None
    abandoned: bool = False


@dataclass
class Stats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    reported: int = 0
    released: int = 0
    lost: int = 0
    cancelled: int = 0
    claim_calls: int = 0
    outcome_calls: int = 0
    started_at: float = field(default_factory=time.monotonic)


class Runner:
    """Starts claimed executions as slots free up (``concurrency`` at a time; async handlers
    in the loop, sync ones in threads) and queues their outcomes in the outbox."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        worker_id: str,
        concurrency: int,
        stats: Stats,
        outbox: Outbox,
        *,
        stopping: asyncio.Event,
        unknown: Callable[[ClaimedExecution], None],
    ) -> None:
        self._handlers = {
            task: (fn, positional_arity(fn) >= 2, is_async(fn)) for task, fn in handlers.items()
        }
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.stats = stats
        self.outbox = outbox
        self._stopping = stopping
        self._unknown = unknown
        self.running: dict[str, Job] = {}
        self.waiting: collections.deque[ClaimedExecution] = collections.deque()
        self.slot_free = asyncio.Event()
        """Set when a running handler finishes (the claim loop may have room again)."""
        self.jobs_done = asyncio.Event()
        """Set when the last running handler finishes."""
        self.threads = Threads(concurrency)

    def held_ids(self) -> list[str]:
        """The executions this daemon holds the claim of: running (not abandoned) and waiting."""
        ids = [j.item.execution_id for j in self.running.values() if not j.abandoned]
        ids.extend(e.execution_id for e in self.waiting)
        return ids

    def start_waiting(self) -> None:
        while self.waiting and len(self.running) < self.concurrency:
            item = self.waiting.popleft()
            if item.task not in self._handlers:  # not ours (cannot happen with the tasks filter)
                self._unknown(item)
                continue
            ctx = Context(
                execution_id=item.execution_id,
                cue_id=item.cue_id,
                cue_name=item.cue_name,
                task=item.task,
                scheduled_for=item.scheduled_for,
                attempt=item.attempt,
                payload=item.payload,
                worker_id=self.worker_id,
                lease_expires_at=item.lease_expires_at,
            )
            job = Job(item, ctx)
            self.running[item.execution_id] = job
            job.task = asyncio.create_task(self._run(job))

    def abandon(self) -> list[str]:
        """Give up the running handlers (async ones are cancelled; sync ones are left to their
        thread): their outcomes will not be reported. Returns their execution ids."""
        stuck = list(self.running.values())
        for job in stuck:
            job.abandoned = True
            if job.task is not None:
                job.task.cancel()
        self.running.clear()
        return [j.item.execution_id for j in stuck]

    def cancel(self, execution_id: str) -> bool:
        """Stop the handler of an execution the server cancelled (its cue's overlap policy): an
        async one is cancelled, a sync one is left to its thread with ``context.cancelled`` set;
        no outcome is reported. A claim still waiting for a slot is dropped. True if it was held."""
        for item in self.waiting:
            if item.execution_id == execution_id:
                self.waiting.remove(item)
                return True
        job = self.running.pop(execution_id, None)
        if job is None or job.abandoned:
            return False
        job.abandoned = True
        job.context.cancelled = True
        if job.task is not None:
            job.task.cancel()
        self.slot_free.set()
        if not self.running:
            self.jobs_done.set()
        if not self._stopping.is_set():
            self.start_waiting()
        return True

    async def _run(self, job: Job) -> None:
        item, ctx = job.item, job.context
        task = item.task or ""
        extra = {"execution_id": item.execution_id, "cue_id": item.cue_id, "task": task}
        log.debug("running %s", task, extra=extra)
        fn, with_context, in_loop = self._handlers[task]
        args: tuple[Any, ...] = (item.payload, ctx) if with_context else (item.payload,)
        started = time.monotonic()
        report: OutcomeReport | None = None
        try:
            if in_loop:
                value = await fn(*args)
            else:
                value = await self.threads.run(fn, *args)
                if inspect.isawaitable(value):
                    value = await value
            report = outcome_report(item.execution_id, value)
        except asyncio.CancelledError:
            job.abandoned = True
            raise
        except Exception as exc:
            log.warning(
                "handler %s failed: %s",
                task,
                exc,
                exc_info=True,
                extra={**extra, "error": type(exc).__name__},
            )
            report = failure_report(item.execution_id, exc)
        finally:
            if not job.abandoned:
                self.running.pop(item.execution_id, None)
                self.slot_free.set()
                if not self.running:
                    self.jobs_done.set()
                if not self._stopping.is_set():
                    self.start_waiting()
        if report is not None and not job.abandoned:
            if report.success:
                self.stats.succeeded += 1
            else:
                self.stats.failed += 1
            log.debug(
                "finished %s in %.3fs: %s",
                task,
                time.monotonic() - started,
                "success" if report.success else "failure",
                extra=extra,
            )
            self.outbox.add(report)
