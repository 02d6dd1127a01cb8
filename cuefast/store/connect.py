"""The pooled asyncio Redis client every store object shares."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

UNREACHABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)
"""what the client raises when Redis cannot be reached (the API answers 503)"""


def _no_maint_notifications() -> dict[str, Any]:
    """Pool options that turn redis-py's maintenance notifications off (none for an older
    redis-py, which has no such notifications and always checks a connection it hands out)."""
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # pragma: no cover - older redis-py
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def connect(url: str, max_connections: int = 128) -> aioredis.Redis:
    """A pooled asyncio client (hiredis parser when installed; str responses).

    The pool blocks (up to 30 s) when all connections are busy instead of failing, so
    hundreds of concurrent deliveries or requests share a bounded set of connections.

    Maintenance notifications are off: in redis-py's default ("auto") mode the pool skips its
    check of a connection it hands out, so after a Redis restart every pooled connection failed
    its next command ("Connection closed by server") instead of being reconnected.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=30,
        **_no_maint_notifications(),
    )
    return aioredis.Redis(connection_pool=pool)
