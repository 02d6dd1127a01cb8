"""One API key's requests of one event-loop turn counted together, in one auth-script call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

Run = Callable[[Hashable, int, int], Awaitable[Sequence[T]]]
"""(group, how many requests, now µs) → one answer per request, in arrival order"""


class _Batch(Generic[T]):
    __slots__ = ("futures", "loop", "now_us")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.futures: list[asyncio.Future[T]] = []
        self.now_us = 0


class Batches(Generic[T]):
    """Open batches by group. A request joins its group's open batch; the batch closes when its
    call starts, at the next turn of the event loop, so every request that arrived meanwhile —
    whatever else it awaited first — is in it. The call runs as its own task: a request that
    goes away is still counted, as it would be had its own call been sent."""

    def __init__(self, run: Run[T]) -> None:
        self._run = run
        self._open: dict[Hashable, _Batch[T]] = {}
        self._calls: set[asyncio.Task[None]] = set()  # held until done (the loop holds weakly)

    async def join(self, group: Hashable, now_us: int) -> T:
        """This request's answer from its batch's call (the batch's latest ``now_us`` is used)."""
        loop = asyncio.get_running_loop()
        batch = self._open.get(group)
        if batch is None or batch.loop is not loop:  # (a batch of a loop that stopped: never sent)
            batch = self._open[group] = _Batch(loop)
            call = loop.create_task(self._send(group, batch))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
        future: asyncio.Future[T] = loop.create_future()
        batch.futures.append(future)
        batch.now_us = max(batch.now_us, now_us)
        return await future

    async def _send(self, group: Hashable, batch: _Batch[T]) -> None:
        if self._open.get(group) is batch:
            del self._open[group]  # closed: later requests start the next batch
        futures = batch.futures
        try:
            answers = await self._run(group, len(futures), batch.now_us)
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, answer in zip(futures, answers, strict=True):
            if not future.done():  # a request that went away
                future.set_result(answer)
