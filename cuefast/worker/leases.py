"""The worker daemon's claims: lease extension, the orphan sweep, and handing executions back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cuefast.client import AsyncCueFast
from cuefast.client.errors import AuthenticationError, CueAPIError
from cuefast.client.models import LeaseExtension
from cuefast.worker.jobs import Runner, Stats
from cuefast.worker.options import MAX_BATCH
from cuefast.worker.outcomes import Outbox
from cuefast.worker.retry import RETRYABLE, Backoff

log = logging.getLogger("cuefast.worker.daemon")  # the daemon logs under one name


class Leases:
    """Keeps the claims of the executions the runner holds (``run``: extended together every
    third of the lease; one reported lost sets ``context.lease_lost``), and gives claims back."""

    def __init__(
        self,
        client: AsyncCueFast,
        worker_id: str,
        stats: Stats,
        runner: Runner,
        outbox: Outbox,
        *,
        lease_seconds: float,
        max_backoff: float,
        die: Callable[[BaseException], None],
    ) -> None:
        self.client = client
        self.worker_id = worker_id
        self.stats = stats
        self.runner = runner
        self.outbox = outbox
        self.seconds = lease_seconds
        """The lease of a claim, as the server last granted it."""
        self.max_backoff = max_backoff
        self._die = die

    async def run(self) -> None:
        backoff = Backoff("lease extension", self.max_backoff)
        delay = max(0.2, self.seconds / 3)
        while True:
            await asyncio.sleep(delay)
            ids = self.runner.held_ids()
            try:
                for i in range(0, len(ids), MAX_BATCH):
                    res = await self.client.worker.extend_leases(self.worker_id, ids[i : i + MAX_BATCH])
                    self._note(res.extended, res.lost)
                    self._cancel(res.cancelled)
            except AuthenticationError as exc:
                self._die(exc)
                return
            except CueAPIError as exc:
                delay = min(backoff.failed(exc), max(0.2, self.seconds / 3))
                continue
            backoff.ok()
            delay = max(0.2, self.seconds / 3)

    def _note(self, extended: list[LeaseExtension], lost: list[str]) -> None:
        for execution_id in lost:
            job = self.runner.running.get(execution_id)
            if job is not None and not job.context.lease_lost:
                job.context.lease_lost = True
                self.stats.lost += 1
                log.warning("lease of %s lost", execution_id, extra={"execution_id": execution_id})
        for ext in extended:
            job = self.runner.running.get(ext.execution_id)
            if job is not None:
                job.context.lease_expires_at = ext.lease_expires_at

    def _cancel(self, cancelled: list[str]) -> None:
        for execution_id in cancelled:
            if self.runner.cancel(execution_id):
                self.stats.cancelled += 1
                log.warning(
                    "execution %s cancelled by its cue's overlap policy: handler stopped",
                    execution_id,
                    extra={"execution_id": execution_id},
                )

    async def sweep_orphans(self) -> None:
        """Release executions the server says this worker holds but the worker does not know
        (a claim whose answer was lost: read error, timeout, 5xx after the claim)."""
        with self.outbox.watching() as sent:
            try:
                known = set(self.runner.held_ids()) | self.outbox.reporting
                found: list[str] = []
                offset = 0
                while True:
                    page = await self.client.executions.list(
                        worker_id=self.worker_id, status="delivering", limit=100, offset=offset
                    )
                    found.extend(e.id for e in page.executions)
                    if not page.has_more:
                        break
                    offset += 100
                known |= set(self.runner.held_ids()) | self.outbox.reporting | sent
            except CueAPIError as exc:
                log.warning("orphan sweep failed: %s", exc)
                return
        orphans = [i for i in found if i not in known]
        if orphans:
            await self.release(orphans, "claimed by a request whose answer was lost")

    async def release(self, ids: list[str], why: str, deadline: float | None = None) -> None:
        """Hand the claims of ``ids`` back (claimable again at once); retried until ``deadline``
        (10 s from now by default)."""
        if not ids:
            return
        deadline = deadline or time.monotonic() + 10
        backoff = Backoff("release", 2.0)
        for i in range(0, len(ids), MAX_BATCH):
            chunk = ids[i : i + MAX_BATCH]
            while True:
                try:
                    res = await self.client.worker.release(self.worker_id, chunk)
                except AuthenticationError:
                    return
                except CueAPIError as exc:
                    if not isinstance(exc, RETRYABLE) or time.monotonic() > deadline:
                        log.error("could not release %d executions: %s", len(chunk), exc)
                        break
                    await asyncio.sleep(backoff.failed(exc))
                    continue
                self.stats.released += res.released
                log.info("released %d executions (%s)", res.released, why)
                break
