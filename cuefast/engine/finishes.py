"""Group commit of webhook attempts' results, with their host permits given back."""

from __future__ import annotations

import asyncio
import logging

from cuefast.clock import Clock
from cuefast.engine.rates import Give, HostRates
from cuefast.store import Store
from cuefast.store.delivery import AttemptResult, Finished

log = logging.getLogger(__name__)


class Finishes:
    """Results that arrive in the same event loop turn share one pipeline: one
    ``delivery_finish`` call per partition, and before them one ``delivery_host_give`` call per
    (account, host) for the permits of ``max_concurrency_per_host`` those attempts held (the
    request is over; the give goes in the same round trip as the result, ahead of it). Waiters the
    gives made room for are moved to their outbox (``delivery_wake.lua``) before the results are
    handed out."""

    def __init__(self, store: Store, clock: Clock, rates: HostRates) -> None:
        self.store, self.clock, self.rates = store, clock, rates
        self._rows: dict[int, list[tuple[AttemptResult, asyncio.Future[Finished]]]] = {}
        self._gives: list[Give] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def finish(self, p: int, row: AttemptResult, give: Give | None = None) -> Finished:
        """Record one attempt's result (and give its host permit back)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Finished] = loop.create_future()
        if not self._rows:
            loop.call_soon(self._start_flush)
        self._rows.setdefault(p, []).append((row, fut))
        if give is not None:
            self._gives.append(give)
        return await fut

    def _start_flush(self) -> None:
        task = asyncio.create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        batches, self._rows = self._rows, {}
        gives, self._gives = self._gives, []
        now = self.clock.now_us()
        try:
            statuses, given = await self.store.delivery.finish_with(
                {p: [row for row, _ in batch] for p, batch in batches.items()},
                self.rates.give_calls(gives, now),
                now,
            )
        except Exception as exc:
            for batch in batches.values():
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
            return
        woken = [str(w) for res in given if not isinstance(res, Exception) for w in res]
        if any(isinstance(res, Exception) for res in given):  # their permits expire with the leases
            log.warning("host permits not given back: %s", [r for r in given if isinstance(r, Exception)])
        if woken:
            try:
                await self.store.delivery.wake(woken, now)
            except Exception:  # they come back at their safety-net time, meeting their permit
                log.warning("could not wake %d host-cap waiters", len(woken), exc_info=True)
        for p, batch in batches.items():
            got = statuses[p]  # an error: that partition's node is down (its attempts alone fail)
            for i, (_, fut) in enumerate(batch):
                if not fut.done():
                    fut.set_exception(got) if isinstance(got, Exception) else fut.set_result(got[i])
