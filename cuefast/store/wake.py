"""The scheduler's wake-up stream: writers that make something due soon tell the sleeping schedulers.

An idle scheduler sleeps until the earliest head of its timed sets, at most ``MAX_SLEEP_S``,
blocked in ``XREAD`` on this one stream (``keys.wake``, one hash slot). A write that makes
something due sooner than ``HORIZON_US`` from now (a cue created, updated or resumed, a
``send_at`` fire, a retry, a released attempt, a short lease or outcome deadline) appends one
entry after its own write returned, so every scheduler wakes and re-reads the heads. Anything
due later needs no signal: a scheduler re-reads at least every ``MAX_SLEEP_S`` <
``HORIZON_US`` (the difference absorbs clock skew between processes and a slow pass).
"""

from __future__ import annotations

import logging
from typing import Any

from cuefast.store.repository import Repository

log = logging.getLogger(__name__)

HORIZON_US = 3_000_000
"""writers signal a due time earlier than now + this"""
MAX_SLEEP_S = 2.0
"""the longest a scheduler sleeps between two reads of the heads of its timed sets"""
STREAM_LEN = 64
"""entries kept (approximately): a scheduler only needs those newer than its cursor"""
START = "0-0"
"""the cursor of an empty stream"""


class Wake(Repository):
    async def due(self, due_us: int | None, now_us: int) -> None:
        """Signal the schedulers when ``due_us`` is within ``HORIZON_US`` of ``now_us`` (else, or
        with None, nothing). Best effort: the write it follows is done, and a lost signal costs
        at most ``MAX_SLEEP_S``."""
        if due_us is None or due_us - now_us >= HORIZON_US:
            return
        try:
            await self.wire.call("XADD", self.keys.wake, "MAXLEN", "~", STREAM_LEN, "*", "t", due_us)
        except Exception:
            log.warning("scheduler wake-up not signalled", exc_info=True)

    async def cursor(self) -> str:
        """The newest entry's id: a scheduler waits for entries after it (read before its first
        look at the heads, so no signal sent after that look is missed)."""
        last: Any = await self.redis.xrevrange(self.keys.wake, count=1)
        return str(last[0][0]) if last else START

    async def wait(self, cursor: str, timeout_s: float) -> str:
        """Block until an entry newer than ``cursor`` arrives or ``timeout_s`` passes; the new
        cursor (``cursor`` itself on a timeout)."""
        streams: dict[Any, Any] = {self.keys.wake: cursor}
        res: Any = await self.redis.xread(streams, count=STREAM_LEN, block=max(1, int(timeout_s * 1000)))
        for _, entries in res or []:
            if entries:
                cursor = str(entries[-1][0])
        return cursor
