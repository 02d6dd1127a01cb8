"""Identical reads shared while in flight: a request like one whose read has not started awaits its answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from cuefast.store.turn_batches import Batches

T = TypeVar("T")

Make = Callable[[], Awaitable[T]]


class Shared(Generic[T]):
    """Answers in flight by key, as turn batches (``store/turn_batches.py``): an identical
    request that arrives before the read's call starts — the next turn of the event loop — gets
    its answer. Sharing it is exact: the read is sent after the later request arrived, so the
    answer is one that request could have read itself (a request that follows a completed
    Redis write arrives a turn or more after that write's reply, and so after any read it could
    have joined started: it never gets an answer from before the write)."""

    def __init__(self) -> None:
        self._batches: Batches[Hashable, Make[T], T] = Batches(self._read)

    async def answer(self, key: Hashable, make: Make[T]) -> T:
        """``make()``'s answer, or that of an identical call that has not started yet."""
        return await self._batches.join(key, 0, make)

    @staticmethod
    async def _read(key: Hashable, makes: Sequence[Make[T]], now_us: int) -> list[T]:
        answer = await makes[0]()  # the first request's read; the others await its answer
        return [answer] * len(makes)
