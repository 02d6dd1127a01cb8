"""The Redis client of every cuefast process (``cuefast.store.connect``) after a Redis restart.

The test owns its Redis: a private ``redis-server`` (AOF on) on a free loopback port that it
kills and starts again on the same port and directory (the shared Redis is never restarted).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from cuefast.store import connect
from tests.chaos.backends import RedisServer


async def test_pooled_connections_survive_a_redis_restart(tmp_path: Path) -> None:
    """Connections pooled before the restart are dead sockets afterwards: the pool must notice
    when it hands one out and reconnect, so the first command on each of them does not fail
    with "Connection closed by server". (redis-py 8 skips that check while maintenance
    notifications are in their default "auto" mode; the chaos run saw every process fail once
    per pooled connection after each Redis restart — result writes lost, stale windows.)"""
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = connect(server.url)
    try:
        await server.wait_ready()
        await asyncio.gather(*(client.incr("n") for _ in range(20)))  # several pooled connections
        await server.restart(hard=True, down_seconds=0.2)
        values = await asyncio.gather(*(client.incr("n") for _ in range(20)))
        assert sorted(values) == list(range(21, 41))  # AOF kept every write, none failed
    finally:
        await client.aclose()
        server.stop()
