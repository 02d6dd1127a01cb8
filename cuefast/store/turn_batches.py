"""Requests of one event-loop turn sharing one script call: auth calls, outcomes, fires, reads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - what a request brings to the call (a name to reserve, an outcome…)
G = TypeVar("G", bound=Hashable)  # what requests share a call by (an asker, a partition and account…)

Run = Callable[[G, Sequence[I], int], Awaitable[Sequence[T]]]
"""(group, each request's item in arrival order, now µs) → one answer per request, in that order"""


class _Batch(Generic[I, T]):
    __slots__ = ("futures", "items", "loop", "now_us")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.futures: list[asyncio.Future[T]] = []
        self.items: list[I] = []
        self.now_us = 0


class Batches(Generic[G, I, T]):
    """Open batches by group. A request joins its group's open batch; the batch closes when its
    call starts, at the next turn of the event loop, so every request that arrived meanwhile —
    whatever else it awaited first — is in it. The call runs as its own task: a request that
    goes away is still counted (its outcome recorded), as it would be had its own call been sent."""

    def __init__(self, run: Run[G, I, T]) -> None:
        self._run = run
        self._open: dict[G, _Batch[I, T]] = {}
        self._calls: set[asyncio.Task[None]] = set()  # held until done (the loop holds weakly)

    async def join(self, group: G, now_us: int, item: I) -> T:
        """This request's answer from its batch's call (the batch's latest ``now_us`` is used);
        ``item`` goes to the call in arrival order."""
        loop = asyncio.get_running_loop()
        batch = self._open.get(group)
        if batch is None or batch.loop is not loop:  # (a batch of a loop that stopped: never sent)
            batch = self._open[group] = _Batch(loop)
            call = loop.create_task(self._send(group, batch))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
        future: asyncio.Future[T] = loop.create_future()
        batch.futures.append(future)
        batch.items.append(item)
        batch.now_us = max(batch.now_us, now_us)
        return await future

    async def _send(self, group: G, batch: _Batch[I, T]) -> None:
        if self._open.get(group) is batch:
            del self._open[group]  # closed: later requests start the next batch
        futures = batch.futures
        try:
            answers = await self._run(group, batch.items, batch.now_us)
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, answer in zip(futures, answers, strict=True):
            if not future.done():  # a request that went away
                future.set_result(answer)
