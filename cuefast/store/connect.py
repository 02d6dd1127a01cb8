"""The pooled asyncio Redis client every store object shares."""

from __future__ import annotations

from typing import Any, cast

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


def connect(url: str, max_connections: int = 128, *, cluster: bool = False) -> aioredis.Redis:
    """A pooled asyncio client (hiredis parser when installed; str responses); with ``cluster``,
    a ``RedisCluster`` seeded by the node ``url`` names (``connect_cluster``).

    The pool blocks (up to 30 s) when all connections are busy instead of failing, so
    hundreds of concurrent deliveries or requests share a bounded set of connections.

    Maintenance notifications are off: in redis-py's default ("auto") mode the pool skips its
    check of a connection it hands out, so after a Redis restart every pooled connection failed
    its next command ("Connection closed by server") instead of being reconnected.
    """
    if cluster:
        return connect_cluster(url)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=30,
        **_no_maint_notifications(),
    )
    return aioredis.Redis(connection_pool=pool)


CLUSTER_CONNECTIONS = 1024
"""most connections to one cluster node (redis-py's cluster pool raises past it rather than
wait, so it is set well above what a process holds: each blocking stream read holds one)"""


def connect_cluster(url: str) -> aioredis.Redis:
    """A ``RedisCluster`` client (typed as the ``Redis`` whose commands it shares) seeded by one
    node: it reads the slot map from that node and follows it; ``rediss://`` and a password in
    the URL apply to every node. No socket timeout (blocking stream reads wait up to their
    ``BLOCK``), as for a single Redis; a dead node's connections fail and the map is re-read."""
    client = aioredis.RedisCluster.from_url(
        url,
        decode_responses=True,
        max_connections=CLUSTER_CONNECTIONS,
        socket_timeout=None,
        health_check_interval=30,
        **_no_maint_notifications(),
    )
    return cast(aioredis.Redis, client)


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a ``RedisCluster`` (``connect_cluster``)."""
    return isinstance(client, aioredis.RedisCluster)
