"""The dispatcher's per-process bound per callback host (``CUEFAST_DELIVERY_PER_HOST``, engine/dispatcher.py).

A ``Host`` counts the requests in flight to one ``host:port`` and queues the attempts behind
them; one whose queue waits too long while it keeps the reader from reading is congested, and
its attempts are handed back for a while (the times below)."""

from __future__ import annotations

from collections import deque
from typing import Any

HOST_WAIT_S = 1.0
"""An attempt queued behind a saturated host longer than this means the host cannot keep
up: its queue is handed back and, for as long again, new attempts for it are handed back
at once."""
HAND_BACK_MIN_S = 1.0
HAND_BACK_MAX_S = 30.0
"""Handed-back attempts are re-queued after the time their host has been congested,
clamped to these bounds (a host that stays stuck is retried less and less often)."""


class Host:
    """One target host's bound: requests in flight, attempts queued behind them, and attempts
    waiting for their rate-cap send slot (``waiting``: they hold no place; when their slot comes
    they take one, or go back to the front of the queue)."""

    __slots__ = ("active", "congested_since", "congested_until", "key", "queue", "waiting")

    def __init__(self, key: str) -> None:
        self.key = key
        self.active = 0
        self.waiting = 0
        self.queue: deque[Any] = deque()  # the dispatcher's leased attempts, oldest first
        self.congested_since = 0.0  # loop time the host was first found congested (0: it is not)
        self.congested_until = 0.0  # until then, new attempts for it are handed back at once

    def hand_back_delay_us(self, now: float) -> int:
        waited = now - (self.congested_since or now)
        return int(min(max(waited, HAND_BACK_MIN_S), HAND_BACK_MAX_S) * 1_000_000)

    def idle(self, now: float) -> bool:
        """Nothing in flight, queued or waiting, and not congested: the dispatcher forgets it."""
        return not (self.active or self.waiting or self.queue) and now >= self.congested_until
