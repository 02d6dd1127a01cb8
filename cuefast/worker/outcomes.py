"""The worker daemon's outcome reports: queued, sent in batches, retried until recorded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

import msgspec

from cuefast.client import AsyncCueFast
from cuefast.client.errors import AuthenticationError, CueAPIError
from cuefast.client.models import OutcomeReport
from cuefast.worker.handlers import minimal_report
from cuefast.worker.jobs import Stats
from cuefast.worker.options import MAX_BATCH
from cuefast.worker.retry import RETRYABLE, Backoff

log = logging.getLogger("cuefast.worker.daemon")  # the daemon logs under one name


class Outbox:
    """Outcome reports waiting to be sent, and the loop that sends them (``run``): a batch
    (≤ ``MAX_BATCH``) as soon as the previous one is answered or ``flush_interval`` has
    passed; retried with backoff while the server is away, never dropped."""

    def __init__(
        self,
        client: AsyncCueFast,
        worker_id: str,
        stats: Stats,
        *,
        flush_interval: float,
        max_backoff: float,
        die: Callable[[BaseException], None],
    ) -> None:
        self.client = client
        self.worker_id = worker_id
        self.stats = stats
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self._die = die
        self._queue: list[OutcomeReport] = []
        self._ready = asyncio.Event()
        self._flushing = 0
        self.drained = asyncio.Event()
        """Set when every queued outcome has been sent (or given up)."""
        self.drained.set()
        self.reporting: set[str] = set()
        """Executions whose outcome is queued or being sent."""
        self._sent: set[str] | None = None

    def add(self, report: OutcomeReport) -> None:
        self._queue.append(report)
        self.reporting.add(report.execution_id)
        self.drained.clear()
        self._ready.set()

    def unsent(self) -> int:
        """Outcomes queued or in flight."""
        return len(self._queue) + self._flushing

    @contextlib.contextmanager
    def watching(self) -> Iterator[set[str]]:
        """The ids of the outcomes sent while inside (the orphan sweep must not take their
        executions, no longer ``reporting``, for orphans)."""
        sent: set[str] = set()
        self._sent = sent
        try:
            yield sent
        finally:
            self._sent = None

    async def run(self) -> None:
        backoff = Backoff("outcome report", self.max_backoff)
        while True:
            await self._ready.wait()
            if len(self._queue) < MAX_BATCH and self.flush_interval > 0:
                await asyncio.sleep(self.flush_interval)  # let a few more finish
            batch = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
            if not self._queue:
                self._ready.clear()
            self._flushing = len(batch)
            try:
                while True:
                    try:
                        await self.send(batch)
                    except AuthenticationError as exc:
                        self._queue[:0] = batch
                        self._die(exc)
                        return
                    except RETRYABLE as exc:
                        await asyncio.sleep(backoff.failed(exc))
                        continue
                    backoff.ok()
                    break
            finally:
                self._flushing = 0
                for report in batch:
                    self.reporting.discard(report.execution_id)
                    if self._sent is not None:
                        self._sent.add(report.execution_id)
                if not self._queue:
                    self.drained.set()

    async def send(self, batch: list[OutcomeReport]) -> None:
        self.stats.outcome_calls += 1
        try:
            res = await self.client.worker.report_outcomes(self.worker_id, batch)
        except CueAPIError as exc:
            if isinstance(exc, (*RETRYABLE, AuthenticationError)) or exc.status_code is None:
                raise
            # The batch as a whole was refused (e.g. one invalid item): report one by one.
            log.warning("outcome batch refused (%s); reporting one by one", exc)
            for report in batch:
                await self._send_one(report)
            return
        by_id = {r.execution_id: r for r in batch}
        for item in res.results:
            if item.outcome_recorded:
                self.stats.reported += 1
                continue
            code = item.error.code if item.error else "unknown"
            message = item.error.message if item.error else ""
            extra = {"execution_id": item.execution_id, "error": code}
            if code == "outcome_already_recorded":
                log.info("outcome of %s was already recorded", item.execution_id, extra=extra)
            elif code in ("metadata_too_large", "validation_error") and item.execution_id in by_id:
                log.warning("outcome of %s refused (%s); reporting it without evidence", message, code)
                await self._send_one(minimal_report(by_id[item.execution_id], f"{code}: {message}"))
            else:
                log.warning(
                    "outcome of %s not recorded: %s %s", item.execution_id, code, message, extra=extra
                )

    async def _send_one(self, report: OutcomeReport) -> None:
        extra = {"execution_id": report.execution_id}
        fields = {k: v for k, v in msgspec.structs.asdict(report).items() if k != "execution_id"}
        try:
            await self.client.executions.report_outcome(report.execution_id, **fields)
            self.stats.reported += 1
        except CueAPIError as exc:
            if isinstance(exc, (*RETRYABLE, AuthenticationError)):
                raise
            if exc.code == "outcome_already_recorded":
                return
            if exc.status_code in (400, 422) and (report.metadata or report.artifacts or report.result_url):
                await self._send_one(minimal_report(report, f"{exc.code}: {exc.message}"))
                return
            log.error("outcome of %s not recorded: %s", report.execution_id, exc, extra=extra)
