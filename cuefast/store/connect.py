"""The pooled asyncio Redis client every store object shares."""

from __future__ import annotations

import os
import socket
import ssl
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cuefast.errors import OperatorError

UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
)
"""what the client raises when Redis cannot be reached (whether the command ran is then
unknown), or when its node cannot serve the command now and did not run it: a replica since a
failover (READONLY), a cluster slot without a primary (CLUSTERDOWN, MASTERDOWN), a slot still
migrating after the cluster wire's retries (TRYAGAIN). Every role tries again later; the API
answers 503."""


def unreachable_cause(exc: BaseException) -> str:
    """An ``UNREACHABLE`` error for a log line: its type, and for a Redis error reply (READONLY,
    CLUSTERDOWN, …) the server's own words, which hold no secret."""
    if isinstance(exc, ResponseError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


FULL: type[BaseException] = OutOfMemoryError
"""what the client raises when Redis is past its ``maxmemory`` and refused a write before it
started (a script that may write is refused whole: scripts.load_function; the API answers 503)"""


REFUSALS = {
    "BUSY": "busy running a script (busy-reply-threshold)",
    "MISCONF": "unable to persist to disk (MISCONF: its last RDB save or AOF write failed)",
    "NOREPLICAS": "short of replicas (min-replicas-to-write)",
}
"""error codes redis-py raises as a plain ``ResponseError`` for a command Redis refused whole
before running it (a function that may write counts as a write), and what each means"""


def refusal(exc: BaseException) -> str:
    """Why Redis refused a command whole before running it, so that nothing was written ("" when
    it did not): past its ``maxmemory`` (``FULL``), or one of ``REFUSALS``."""
    if isinstance(exc, FULL):
        return "out of memory (maxmemory)"
    if type(exc) is ResponseError:
        return REFUSALS.get(str(exc).partition(" ")[0], "")
    return ""


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
    if options:
        for name, path in zip(("CA", "CERT", "KEY"), tls or Tls(), strict=True):
            if path and not os.access(path, os.R_OK):
                raise OperatorError(
                    f"CUEFAST_REDIS_TLS_{name}={path} cannot be read: point it at a readable PEM file"
                )
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


async def reach(client: aioredis.Redis, url: str, tls: Tls | None = None) -> None:
    """PING the server(s) behind ``client`` (a process's first Redis command): any failure is
    an ``OperatorError`` saying which setting to fix (``problem``)."""
    try:
        await client.ping()
    except Exception as exc:
        raise problem(exc, url, tls) from exc


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from, outermost first."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _where(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix socket {parts.path}"
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    except ValueError:
        return "the configured address"


def problem(exc: BaseException, url: str, tls: Tls | None = None) -> OperatorError:  # noqa: PLR0911 (one return per case)
    """The one-line, actionable account of why Redis at ``url`` could not be used."""
    at = f"Redis at {_where(url)}"
    chain = _chain(exc)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    secure = url.startswith("rediss://")
    auth = next((e for e in chain if isinstance(e, AuthenticationError)), None)
    if auth is not None:
        if "required" in str(auth).lower():
            return OperatorError(
                f"{at} requires a password and CUEFAST_REDIS_URL has none: "
                "put it in the URL (redis://:PASSWORD@host:port, or redis://USER:PASSWORD@…)"
            )
        return OperatorError(
            f"{at} refused the user/password in CUEFAST_REDIS_URL ({auth}): "
            "fix the password (redis://:PASSWORD@host:port) or the ACL user (redis://USER:PASSWORD@…)"
        )
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            if "hostname" in str(e).lower() or "ip address mismatch" in str(e).lower():
                return OperatorError(
                    f"TLS: the certificate of {at} does not name that host ({e.verify_message}): use the "
                    "host name it was issued for in CUEFAST_REDIS_URL"
                )
            fix = (
                f"CUEFAST_REDIS_TLS_CA={tls.ca} is not the CA that signed it: point it at that CA's PEM file"
                if tls is not None and tls.ca
                else "set CUEFAST_REDIS_TLS_CA to the PEM file of the CA that signed it"
            )
            return OperatorError(f"TLS: the certificate of {at} is not trusted ({e.verify_message}): {fix}")
        if isinstance(e, ssl.SSLError):
            return OperatorError(
                f"TLS handshake with {at} failed ({e.reason or e}): check that it is a TLS port and, "
                "when it requires client certificates (tls-auth-clients), CUEFAST_REDIS_TLS_CERT/_KEY"
            )
    for e in chain:
        if isinstance(e, socket.gaierror):
            return OperatorError(
                f"cannot resolve the host of CUEFAST_REDIS_URL ({_where(url)}: {e.strerror}): "
                "fix the host name",
                transient=True,
            )
        if isinstance(e, ConnectionRefusedError | FileNotFoundError):
            return OperatorError(
                f"{at} refused the connection (nothing listens there): start Redis, or fix CUEFAST_REDIS_URL",
                transient=True,
            )
        if isinstance(e, ConnectionResetError) and not secure:
            return OperatorError(
                f"{at} closed the connection at once: if it is a TLS port, use rediss:// in "
                "CUEFAST_REDIS_URL",
                transient=True,
            )
    if any(isinstance(e, RedisTimeoutError | TimeoutError) for e in chain):
        hint = (
            "is it a TLS port? (rediss:// needs Redis's tls-port; use redis:// for a plain port)"
            if secure
            else "check the host and port in CUEFAST_REDIS_URL and the network between them"
        )
        return OperatorError(f"{at} did not answer in time: {hint}", transient=True)
    if isinstance(exc, ResponseError):
        return OperatorError(
            f"{at} refused cuefast's first command ({text}): give the CUEFAST_REDIS_URL user "
            "every command on the install's keys (ACL), or check the server"
        )
    return OperatorError(
        f"cannot use {at} ({text}): check CUEFAST_REDIS_URL (and CUEFAST_REDIS_TLS_* for rediss://)",
        transient=isinstance(exc, RedisConnectionError | OSError),
    )
