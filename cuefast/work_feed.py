"""Long-poll wake-ups for batch claims: one blocking ``XREAD`` per API process over every
partition's capped ``worksig`` stream (written by every script that makes worker work
claimable). Streams fan out, so any number of API processes each run their own feed."""

from __future__ import annotations

import asyncio
import logging

from cuefast.store import Store

log = logging.getLogger(__name__)


class WorkFeed:
    """Wakes long-polling claimers of this process when work becomes claimable.

    One listener task (only while someone waits) blocks on ``XREAD`` over every partition's
    signal stream and sets the events of the accounts named in new entries.
    """

    def __init__(self, store: Store, block_ms: int = 1000) -> None:
        self.store = store
        self.block_ms = block_ms
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def subscribe(self, account_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._waiters.setdefault(account_id, set()).add(ev)
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._listen())
        await self._ready.wait()
        return ev

    def unsubscribe(self, account_id: str, ev: asyncio.Event) -> None:
        waiters = self._waiters.get(account_id)
        if waiters is not None:
            waiters.discard(ev)
            if not waiters:
                del self._waiters[account_id]

    async def _listen(self) -> None:
        positions: list[str] | None = None
        while True:
            try:
                if positions is None:
                    positions = await self.store.signal_positions()
                    self._ready.set()
                if not self._waiters:
                    return
                for p, entry_id, account_id in await self.store.read_signals(positions, self.block_ms):
                    positions[p] = entry_id
                    for ev in self._waiters.get(account_id, ()):
                        ev.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("work feed read failed")
                self._ready.set()  # waiters fall back to their periodic re-check
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
