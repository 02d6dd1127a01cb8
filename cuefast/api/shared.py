"""Identical reads shared while in flight: a request like one not yet sent to Redis awaits its answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cuefast.store.wire import sent

T = TypeVar("T")


class Shared(Generic[T]):
    """Answers in flight by key. Sharing one is exact: the earlier request's reads are sent
    only after the later one arrived (no wire has written since the earlier registered: ``sent``),
    so its answer is one the later request could have read itself."""

    def __init__(self) -> None:
        self._open: dict[Hashable, tuple[int, asyncio.Future[T]]] = {}

    async def answer(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """``make()``'s answer, or that of an identical call not yet sent to Redis."""
        entry = self._open.get(key)
        if entry is not None and entry[0] == sent() and entry[1].get_loop() is asyncio.get_running_loop():
            return await asyncio.shield(entry[1])
        task = asyncio.ensure_future(make())
        self._open[key] = (sent(), task)
        task.add_done_callback(lambda t: self._done(key, t))
        return await asyncio.shield(task)

    def _done(self, key: Hashable, task: asyncio.Future[T]) -> None:
        entry = self._open.get(key)
        if entry is not None and entry[1] is task:
            del self._open[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone
