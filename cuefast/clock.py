"""Time is injectable: every component takes a Clock; tests freeze it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_us(self) -> int:
        """Current UTC time in integer microseconds since the epoch."""
        ...


class SystemClock:
    __slots__ = ()

    def now_us(self) -> int:
        return time.time_ns() // 1000


class FrozenClock:
    """A clock that only moves when told to."""

    __slots__ = ("_now",)

    def __init__(self, now_us: int) -> None:
        self._now = now_us

    def now_us(self) -> int:
        return self._now

    def set(self, now_us: int) -> None:
        self._now = now_us

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1_000_000)
