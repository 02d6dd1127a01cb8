"""Long-poll wake-ups for batch claims: one blocking ``XREAD`` per API process.

The read covers every partition's capped ``worksig`` stream (written by every script that
makes worker work claimable). Streams fan out, so any number of API processes each run their
own feed.

A wake-up says which partitions changed, so a woken claimer re-reads only those. When
signals may have been lost (the read failed, or a stream returned a full batch: it may have
been trimmed past this feed's position), every waiter is told to re-read everything."""

from __future__ import annotations

import asyncio
import logging

from cuefast.store import Store
from cuefast.store.outage import Outage

log = logging.getLogger(__name__)

READ_COUNT = 1000
"""entries read per stream per XREAD; a full batch may mean the capped stream (MAXLEN ~1000)
was trimmed past the feed's position, so it wakes every waiter for a full re-read"""


class Waiter:
    """One waiting claimer: what changed for its account since it last looked."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.partitions: set[int] = set()
        self.everything = False

    def wake(self, partition: int | None) -> None:
        """Work may have become claimable in ``partition`` (None: anywhere)."""
        if partition is None:
            self.everything = True
        else:
            self.partitions.add(partition)
        self.event.set()

    def take(self) -> set[int] | None:
        """The partitions signalled since the last call (None: all of them), and clear."""
        changed = None if self.everything else self.partitions
        self.partitions, self.everything = set(), False
        self.event.clear()
        return changed


class WorkFeed:
    """Wakes long-polling claimers of this process when work becomes claimable.

    One listener task (only while someone waits) blocks on ``XREAD`` over every partition's
    signal stream and wakes the waiters of the accounts named in new entries, with the
    entry's partition.
    """

    def __init__(self, store: Store, block_ms: int = 1000) -> None:
        self.store = store
        self.block_ms = block_ms
        self.outage = Outage(log, "work feed")
        self._waiters: dict[str, set[Waiter]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closing = False

    async def subscribe(self, account_id: str) -> Waiter:
        """A waiter for the account's signals; returns once the feed reads from now on."""
        waiter = Waiter()
        self._waiters.setdefault(account_id, set()).add(waiter)
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._closing = False
            self._task = asyncio.create_task(self._listen())
        await self._ready.wait()
        return waiter

    def unsubscribe(self, account_id: str, waiter: Waiter) -> None:
        waiters = self._waiters.get(account_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[account_id]

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.wake(None)

    async def _listen(self) -> None:
        positions: list[str] | None = None
        while not self._closing:
            try:
                if positions is None:
                    positions = await self.store.claims.signal_positions()
                    self._ready.set()
                if not self._waiters:
                    return
                signals = await self.store.claims.read_signals(positions, self.block_ms, READ_COUNT)
                per_stream: dict[int, int] = {}
                for p, entry_id, account_id, anywhere in signals:
                    positions[p] = entry_id
                    per_stream[p] = per_stream.get(p, 0) + 1
                    for waiter in self._waiters.get(account_id, ()):
                        waiter.wake(None if anywhere else p)
                if any(n >= READ_COUNT for n in per_stream.values()):
                    self._wake_all()
                self.outage.ok()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.outage.failed(exc, "work feed read failed")
                self._ready.set()
                self._wake_all()  # signals may be lost: every waiter re-reads everything
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        """Stop the listener. Besides the cancel, a flag ends its loop after the current read:
        a cancel that lands while redis-py's read timeout fires can be swallowed (the read is
        retried), which left ``close`` waiting for ever."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # its outcome is not ours; a cancel of close() is
