"""The pooled asyncio Redis client every store object shares."""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

UNREACHABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)
"""what the client raises when Redis cannot be reached (the API answers 503)"""


class Tls(NamedTuple):
    """Files for a ``rediss://`` connection (``CUEFAST_REDIS_TLS_*``): the CA that signed the
    servers' certificates ("" : the system's CAs), a client certificate and its key ("": none)."""

    ca: str = ""
    cert: str = ""
    key: str = ""

    def options(self) -> dict[str, Any]:
        """redis-py's ``ssl_*`` options for these files (for every node of a cluster too); the
        server's certificate is always verified, its name against the URL's host."""
        options: dict[str, Any] = {}
        if self.ca:
            options["ssl_ca_certs"] = self.ca
        if self.cert:
            options.update(ssl_certfile=self.cert, ssl_keyfile=self.key)
        return options


def _no_maint_notifications() -> dict[str, Any]:
    """Pool options that turn redis-py's maintenance notifications off (none for an older
    redis-py, which has no such notifications and always checks a connection it hands out)."""
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # pragma: no cover - older redis-py
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def connect(
    url: str, max_connections: int = 128, *, cluster: bool = False, tls: Tls | None = None
) -> aioredis.Redis:
    """A pooled asyncio client (hiredis parser when installed; str responses); with ``cluster``,
    a ``RedisCluster`` seeded by the node ``url`` names (``connect_cluster``). ``tls``: the
    certificate files of a ``rediss://`` URL; a password is the URL's (``rediss://:pass@host``).

    The pool blocks (up to 30 s) when all connections are busy instead of failing, so
    hundreds of concurrent deliveries or requests share a bounded set of connections.

    Maintenance notifications are off: in redis-py's default ("auto") mode the pool skips its
    check of a connection it hands out, so after a Redis restart every pooled connection failed
    its next command ("Connection closed by server") instead of being reconnected.
    """
    options = tls.options() if tls is not None and url.startswith("rediss://") else {}
    if cluster:
        return connect_cluster(url, **options)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        **options,
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


def connect_cluster(url: str, **options: Any) -> aioredis.Redis:
    """A ``RedisCluster`` client (typed as the ``Redis`` whose commands it shares) seeded by one
    node: it reads the slot map from that node and follows it; ``rediss://`` and a password in
    the URL, and ``options`` (``Tls.options``), apply to every node. No socket timeout (blocking
    stream reads wait up to their ``BLOCK``), as for a single Redis; a dead node's connections
    fail and the map is re-read."""
    client = aioredis.RedisCluster.from_url(
        url,
        decode_responses=True,
        max_connections=CLUSTER_CONNECTIONS,
        socket_timeout=None,
        health_check_interval=30,
        **options,
        **_no_maint_notifications(),
    )
    return cast(aioredis.Redis, client)


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a ``RedisCluster`` (``connect_cluster``)."""
    return isinstance(client, aioredis.RedisCluster)
