"""CPU seconds used so far: of a process (``/proc/<pid>/stat``) and of a Redis server (``INFO cpu``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # redis is imported where a client is made: ``bench.__main__`` loads it only when needed
    import redis
    import redis.asyncio


def process_seconds(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` has used so far (utime + stime of
    ``/proc/<pid>/stat``, Linux); ``OSError`` once the process is gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def info_seconds(info: Mapping[str, Any]) -> float:
    """used_cpu_user + used_cpu_sys of an ``INFO cpu`` answer: the CPU seconds the whole Redis
    server has used so far, every client's work included, so a delta of two readings is the
    measured work's own only on a Redis nobody else uses (a private ``redis-server``). CPU time:
    other processes on the machine inflate it less than they do a wall-clock rate."""
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_seconds(client: redis.Redis) -> float:
    """:func:`info_seconds` of the Redis behind a sync ``client``."""
    return info_seconds(client.info("cpu"))


async def redis_seconds_async(client: redis.asyncio.Redis) -> float:
    """:func:`info_seconds` of the Redis behind an asyncio ``client``."""
    return info_seconds(await client.info("cpu"))


def redis_url_seconds(url: str) -> float:
    """:func:`info_seconds` of the Redis at ``url``, read through a client of its own that is
    closed right after."""
    import redis

    with redis.Redis.from_url(url) as client:
        return redis_seconds(client)
