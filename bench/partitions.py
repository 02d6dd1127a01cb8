"""What more partitions cost on one Redis: client ms per call of the per-partition reads.

``.venv/bin/python -m bench.partitions [redis://127.0.0.1:6391/0]`` (use a private, empty Redis):
for 16, 64, 128 and 256 partitions, on an empty install, the scheduler's idle read of every
partition's timed sets (``due_work``), a non-blocking outbox read, the ``/metrics`` backlog, an
alert page over every partition and over a 2-partition bitmap, and the claimable peek likewise.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cuefast.store import Store, connect
from cuefast.store.claims import WorkIndex
from cuefast.store.keys import Keys

COUNTS = (16, 64, 128, 256)


async def timed(fn: Callable[[], Awaitable[Any]], n: int = 200) -> float:
    """Mean ms per call over ``n`` sequential calls."""
    t = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - t) / n * 1e3


async def one(url: str, p_count: int) -> str:
    """The row of one partition count, on a fresh prefix deleted afterwards."""
    prefix = f"benchparts{p_count}"
    s = Store(connect(url), Keys(prefix, p_count))
    await s.preload()
    await s.delivery.ensure_groups()
    now = int(time.time() * 1e6)
    every = [WorkIndex(p) for p in range(p_count)]
    two = [WorkIndex(p) for p in (3, 7)]
    due = await timed(lambda: s.schedule.due_work(now, 60_000_000))
    out = await timed(lambda: s.delivery.read("c1", 4, None))
    back = await timed(lambda: s.system.backlog(now, overdue_us=1, alive_us=1), 50)
    al = await timed(lambda: s.alerts.page("acct", None, None, 0, 20), 100)
    al2 = await timed(lambda: s.alerts.page("acct", None, None, 0, 20, partitions=(3, 7)), 100)
    cl = await timed(lambda: s.claims.peek("acct", every, now, 10), 100)
    cl2 = await timed(lambda: s.claims.peek("acct", two, now, 10), 100)
    keys = [k async for k in s.redis.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await s.redis.delete(*keys)
    await s.close()
    return (
        f"P={p_count:4d}: scheduler due_work {due:.2f} | outbox read {out:.2f} | backlog {back:.2f} | "
        f"alert page all {al:.2f} / bitmap(2) {al2:.2f} | claimable all {cl:.2f} / bitmap(2) {cl2:.2f} ms"
    )


async def measure(url: str) -> None:
    for p_count in COUNTS:
        print(await one(url, p_count), flush=True)


if __name__ == "__main__":
    asyncio.run(measure(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6391/0"))
