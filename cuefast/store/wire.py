"""Multiplexed Redis connections: every caller's commands share a few sockets, written together.

redis-py's asyncio client spends ~100 µs of Python per round trip with 50 concurrent callers
(pool checkout, ``asyncio.timeout``, per-command packing and parsing, one socket write per
call); the bare command costs Redis a few µs. ``Wire`` is the request/response path of the
store: a caller packs its commands with hiredis, appends them to a connection's output buffer
and awaits one future; every command appended in the same event-loop iteration, by any caller,
leaves in one ``write`` (automatic pipelining, as ioredis and Lettuce do), and replies are
matched to callers in order. Redis answers a connection's commands in the order it reads them,
so ordering is all the bookkeeping there is: ~10 µs of client CPU per round trip.

What stays on redis-py (``Store.redis``): blocking reads (``XREADGROUP BLOCK``/``XREAD BLOCK``),
``WATCH``/``MULTI`` transactions, ``SCRIPT LOAD`` and admin commands — anything that holds a
connection or waits on the server must not sit in front of other callers' replies.

Replication (``Wire(…, replicas=Replicas(n, ms))``, ``CUEFAST_REDIS_WAIT_REPLICAS``): a batch that
may write ends with ``WAIT n ms`` in the same write, on the same connection, so its replies come
back once ``n`` replicas hold every write the connection made, in one round trip; fewer in time
raises ``NotReplicated`` (the writes stay on the primary: whether they survive its loss is unknown).

Failure: a connection that closes or breaks fails every command in flight on it with
``redis.exceptions.ConnectionError`` (whether Redis ran them is unknown, as with any client) and
is reopened by the next call; a command unanswered after ``timeout`` seconds aborts its
connection with ``redis.exceptions.TimeoutError``. Error replies are the exception redis-py
would raise (``NoScriptError``, ``ResponseError``…), returned in place by ``execute`` and raised
by ``call``. One cancelled caller does not disturb the others: its reply is read and dropped.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ExecAbortError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from cuefast.store.batch import Batch

Arg = str | int | float | bytes
Command = Sequence[Arg]

_MORE = object()  # hiredis: "no complete reply buffered yet"


def _pack(command: Command) -> bytes:
    packed: bytes = hiredis.pack_command(tuple(command))  # type: ignore[arg-type]  # stub: 1-tuples
    return packed


_ERRORS: dict[str, Callable[[str], RedisError]] = {
    "NOSCRIPT": NoScriptError,
    "OOM": OutOfMemoryError,
    "READONLY": ReadOnlyError,
    "NOPERM": NoPermissionError,
    "EXECABORT": ExecAbortError,
    "LOADING": BusyLoadingError,
    "WRONGPASS": AuthenticationError,
    "NOAUTH": AuthenticationError,
}


class NotReplicated(RedisTimeoutError):
    """Fewer replicas than asked acknowledged a batch's writes within the WAIT timeout (the
    primary applied them; a failover now may lose them). A timeout: the API answers 503."""


class Replicas(NamedTuple):
    """``WAIT needed timeout_ms`` after each batch that may write (``CUEFAST_REDIS_WAIT_REPLICAS``)."""

    needed: int
    timeout_ms: int


READS = frozenset(
    {
        "GET", "MGET", "STRLEN", "EXISTS", "TTL", "PTTL", "TYPE", "PING", "ECHO", "TIME", "ASKING",
        "HGET", "HMGET", "HGETALL", "HLEN", "HEXISTS", "HKEYS", "HVALS", "HSCAN",
        "SCARD", "SISMEMBER", "SMEMBERS", "SSCAN",
        "ZCARD", "ZCOUNT", "ZSCORE", "ZMSCORE", "ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE",
        "ZREVRANGEBYSCORE", "ZRANK", "ZSCAN", "LLEN", "LRANGE", "LINDEX",
        "XLEN", "XRANGE", "XREVRANGE", "XREAD", "XINFO", "XPENDING",
        "EVALSHA_RO", "EVAL_RO", "FCALL_RO", "SCAN", "INFO", "DBSIZE", "CLUSTER", "SCRIPT",
    }
)  # fmt: skip
"""commands that never write (a batch of only these needs no ``WAIT``)"""


def writes(commands: Sequence[Command]) -> bool:
    """Whether ``commands`` may write (any command not in ``READS``; a script counts as a write)."""
    for command in commands:
        name = command[0]
        if (name.decode() if isinstance(name, bytes) else str(name)).upper() not in READS:
            return True
    return False


class _Reply(ResponseError):
    """An error reply as hiredis hands it over; ``error`` makes it the class redis-py would raise."""


def error(reply: _Reply) -> RedisError:
    """The exception redis-py raises for this error reply (prefix stripped as redis-py does)."""
    text = str(reply)
    code, _, rest = text.partition(" ")
    make = _ERRORS.get(code)
    return ResponseError(text) if make is None else make(rest)


def _errors_raised(replies: list[Any]) -> list[Any]:
    """``replies`` with each error reply made redis-py's exception (returned, not raised)."""
    for i, reply in enumerate(replies):
        if type(reply) is _Reply:
            replies[i] = error(reply)
    return replies


class _Waiter(NamedTuple):
    future: asyncio.Future[list[Any]]
    expected: int
    replies: list[Any]
    sent: float


class _Connection(asyncio.Protocol):
    """One socket: an output buffer flushed once per loop iteration, and the callers waiting for
    replies, oldest first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.reader = hiredis.Reader(encoding="utf-8", replyError=_Reply, notEnoughData=_MORE)
        self.waiting: deque[_Waiter] = deque()
        self.out: list[bytes] = []
        self.flushing = False
        self.watching = False
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reads = 0
        """socket reads that brought data (``Wire.heard``)"""

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = reader.gets()
            except Exception as exc:  # a protocol error, or a reply that is not UTF-8 text
                self._fail(RedisConnectionError(f"Unreadable reply from Redis: {type(exc).__name__}"))
                return
            if reply is _MORE:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self._fail(RedisConnectionError("Unexpected reply from Redis"))
                return
            w = waiting[0]
            w.replies.append(reply)
            if len(w.replies) == w.expected:
                waiting.popleft()
                if not w.future.done():  # a cancelled caller's reply is dropped
                    w.future.set_result(w.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(
            RedisConnectionError("Connection closed by server." if exc is None else f"Connection lost: {exc}")
        )

    # -- callers -----------------------------------------------------------------------------
    def send(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Queue ``count`` packed commands; the future gets their ``count`` replies."""
        if self.closed:
            raise RedisConnectionError("Connection closed.")
        future: asyncio.Future[list[Any]] = self.loop.create_future()
        self.waiting.append(_Waiter(future, count, [], self.loop.time()))
        self.out.append(packed)
        if not self.flushing:
            self.flushing = True
            self.loop.call_soon(self._flush)
        if not self.watching:
            self.watching = True
            self.loop.call_later(1.0, self._watch)
        return future

    def _flush(self) -> None:
        self.flushing = False
        out, self.out = self.out, []
        if not self.closed and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _watch(self) -> None:
        """Once a second while replies are awaited: abort the connection when the oldest has
        waited longer than ``timeout`` (Redis hung, or the network between went silent)."""
        self.watching = False
        if self.closed or not self.waiting:
            return
        if self.loop.time() - self.waiting[0].sent > self.timeout:
            self._fail(RedisTimeoutError(f"Timeout reading from Redis ({self.timeout:g} s)"))
            return
        self.watching = True
        self.loop.call_later(1.0, self._watch)

    def _fail(self, exc: RedisError) -> None:
        """Close for good: every caller waiting gets ``exc``."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        while self.waiting:
            w = self.waiting.popleft()
            if not w.future.done():
                w.future.set_exception(exc)

    def close(self) -> None:
        self._fail(RedisConnectionError("Connection closed by client."))

    def abandon(self) -> None:
        """Forget a connection of an event loop that no longer runs here: its callers are gone
        with their loop; its socket is closed without touching that loop."""
        self.closed = True
        self.waiting.clear()
        if self.transport is not None:
            try:
                self.transport.abort()
            except RuntimeError:  # its loop is closed: the socket went with it
                pass


class Endpoint(NamedTuple):
    """Where and how to connect: what a redis-py client's pool was configured with."""

    host: str
    port: int
    path: str | None
    ssl: ssl.SSLContext | None
    username: str | None
    password: str | None
    db: int
    connect_timeout: float

    @classmethod
    def of(cls, client: aioredis.Redis) -> Endpoint:
        """The endpoint of ``client``'s connection pool (its URL already parsed by redis-py)."""
        pool = client.connection_pool
        return cls.parse(pool.connection_class, pool.connection_kwargs)

    @classmethod
    def parse(cls, connection_class: Any, connection_kwargs: Any) -> Endpoint:
        """The endpoint of redis-py connections built as ``connection_class(**connection_kwargs)``
        (a pool's, or a cluster node's)."""
        kwargs = dict(connection_kwargs)
        probe = connection_class(**kwargs)  # never connected: redis-py's own reading of the settings
        username, password = kwargs.get("username"), kwargs.get("password")
        provider = kwargs.get("credential_provider")
        if provider is not None:  # pragma: no cover - not configured by cuefast
            creds = provider.get_credentials()
            username, password = (creds[0], creds[1]) if len(creds) == 2 else (None, creds[0])
        return cls(
            host=str(getattr(probe, "host", "")),
            port=int(getattr(probe, "port", 0) or 0),
            path=probe.path if isinstance(probe, UnixDomainSocketConnection) else None,
            ssl=probe.ssl_context.get() if isinstance(probe, SSLConnection) else None,
            username=username,
            password=password,
            db=int(kwargs.get("db") or 0),
            connect_timeout=float(kwargs.get("socket_connect_timeout") or 5.0),
        )

    def describe(self) -> str:
        return self.path or f"{self.host}:{self.port}"


class Wire:
    """``size`` multiplexed connections to one Redis, opened on first use and reopened after a
    failure; calls take them in turn. One by default: every command of a loop iteration leaves
    in one write and comes back in one read (two cost ~10 % more CPU per request in the server
    and in Redis, bench/README.md)."""

    def __init__(
        self, endpoint: Endpoint, *, size: int = 1, timeout: float = 60.0, replicas: Replicas | None = None
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.replicas = replicas
        self._slots: list[_Connection | None] = [None] * size
        self._opening: list[asyncio.Future[_Connection] | None] = [None] * size
        self._turn = 0

    @classmethod
    def of(cls, client: aioredis.Redis, **kwargs: Any) -> Wire:
        """A wire to the Redis ``client`` is configured for (``kwargs``: ``Wire``'s)."""
        return cls(Endpoint.of(client), **kwargs)

    async def execute(self, commands: Sequence[Command], patience_s: float | None = None) -> list[Any]:
        """The replies of ``commands``, in order, sent together; an error reply is returned in
        its place as the exception redis-py raises for it. Connection failures raise.
        ``patience_s`` is for Redis Cluster (``ClusterWire.execute``): one Redis answers all or
        nothing, so it waits as long as the wire's timeout."""
        if not commands:
            return []
        i = self._turn = (self._turn + 1) % len(self._slots)
        conn = self._slots[i]
        if conn is None or conn.closed or conn.loop is not asyncio.get_running_loop():
            conn = await self._open(i)
        if self.replicas is not None and writes(commands):
            return await self._replicated(conn, commands, self.replicas)
        replies = await conn.send(b"".join([_pack(c) for c in commands]), len(commands))
        for reply in replies:
            if type(reply) is _Reply:
                return _errors_raised(replies)
        return replies

    async def call(self, *command: Arg) -> Any:
        """One command's reply; an error reply raises."""
        reply = (await self.execute((command,)))[0]
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def pipeline(self) -> Batch:
        from cuefast.store.batch import Batch  # batch.py builds on this module

        return Batch(self)

    async def _replicated(self, conn: _Connection, commands: Sequence[Command], want: Replicas) -> list[Any]:
        """``commands`` then ``WAIT``, in one write on ``conn``: their replies once ``want.needed``
        replicas acknowledged the connection's writes (``NotReplicated`` when fewer did in time)."""
        packed = b"".join([_pack(c) for c in commands]) + _pack(("WAIT", want.needed, want.timeout_ms))
        replies = await conn.send(packed, len(commands) + 1)
        acked = replies.pop()
        if type(acked) is _Reply or int(acked) < want.needed:
            raise NotReplicated(
                f"{self.endpoint.describe()}: {acked} of {want.needed} replicas acknowledged "
                f"within {want.timeout_ms} ms (written on the primary)"
            )
        return _errors_raised(replies)

    async def _open(self, i: int) -> _Connection:
        """Connection ``i``, opened once however many callers ask at the same time."""
        pending = self._opening[i]
        if pending is not None and pending.get_loop() is not asyncio.get_running_loop():
            pending = None  # opened from another event loop (one per test, or a new worker thread)
        old = self._slots[i]
        if old is not None and not old.closed and old.loop is not asyncio.get_running_loop():
            old.abandon()
        if pending is None:
            pending = self._opening[i] = asyncio.ensure_future(self._connect())
            pending.add_done_callback(lambda _: self._forget(i))
        conn = await asyncio.shield(pending)
        self._slots[i] = conn
        return conn

    def _forget(self, i: int) -> None:
        self._opening[i] = None

    async def _connect(self) -> _Connection:
        e = self.endpoint
        loop = asyncio.get_running_loop()

        def protocol() -> _Connection:
            return _Connection(loop, self.timeout)

        try:
            async with asyncio.timeout(e.connect_timeout):
                if e.path:
                    _, conn = await loop.create_unix_connection(protocol, e.path, ssl=e.ssl)
                else:
                    _, conn = await loop.create_connection(
                        protocol, e.host, e.port, ssl=e.ssl, server_hostname=e.host if e.ssl else None
                    )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise RedisConnectionError(
                f"Error connecting to {e.describe()}: {str(exc) or type(exc).__name__}"
            ) from None
        hello: list[Command] = []
        if e.password:
            hello.append(("AUTH", e.username, e.password) if e.username else ("AUTH", e.password))
        if e.db:
            hello.append(("SELECT", e.db))
        if hello:
            replies = await conn.send(b"".join(_pack(c) for c in hello), len(hello))
            for reply in replies:
                if isinstance(reply, _Reply):
                    conn.close()
                    err = error(reply)
                    raise err if isinstance(err, RedisConnectionError) else AuthenticationError(str(err))
        return conn

    def heard(self) -> int:
        """How many times this Redis sent anything on the open connections: a count that moves
        while the node answers other callers (alive, however long one call takes)."""
        return sum(c.reads for c in self._slots if c is not None and not c.closed)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        for i, conn in enumerate(self._slots):
            if conn is not None:
                conn.close() if conn.loop is loop else conn.abandon()
            self._slots[i] = None
