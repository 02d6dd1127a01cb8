"""The bulk-replay runner: each due job's next batch, once a second, in every dispatcher."""

from __future__ import annotations

import asyncio
import logging

from cuefast.services.replays import ReplayService

log = logging.getLogger("cuefast.replays")


class ReplayRunner:
    """Runs ``ReplayService.step`` every ``interval`` seconds until ``stop``; any number may run
    (a job's batch is leased to one of them at a time)."""

    def __init__(self, replays: ReplayService, interval: float = 1.0) -> None:
        self.replays = replays
        self.interval = interval

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.replays.step()
            except Exception:  # a store outage: the next pass retries (leases hand batches on)
                log.warning("bulk replay pass failed", exc_info=True)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
