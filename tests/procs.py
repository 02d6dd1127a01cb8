"""Real cuefast processes for tests: output in files, a bounded life, never leaked.

``Processes`` starts ``cuefast <role>`` (the venv's console script) with stdout and stderr in
files under a log directory. Every process dies with the test process (PR_SET_PDEATHSIG), is
SIGKILLed by a watchdog thread after ``lifetime`` seconds, and is stopped in ``close()`` (SIGTERM,
then SIGKILL), which prints every log when the test failed or a process misbehaved. Waiting
is asynchronous, so a receiver on the test's event loop keeps answering while a dispatcher
drains its in-flight deliveries on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from cuefast.config import Settings

ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a cuefast process on the test's backends.

    Both backend URLs are set, so no process starts embedded servers; no CUEFAST_* variable
    of the test's own environment leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
    env.update(
        CUEFAST_REDIS_URL=settings.redis_url,
        CUEFAST_REDIS_CLUSTER=str(settings.redis_cluster).lower(),
        CUEFAST_DATABASE_URL=settings.database_url,
        CUEFAST_DATABASE_SCHEMA=settings.database_schema,
        CUEFAST_KEY_PREFIX=settings.key_prefix,
        CUEFAST_PARTITIONS=str(settings.partitions),
        CUEFAST_ALLOW_PRIVATE_CALLBACKS="true",
        **extra,
    )
    return env


def cluster_env(url: str, database_url: str, schema: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a cuefast process on the Redis Cluster at ``url`` (any node)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
    env.update(
        CUEFAST_REDIS_URL=url,
        CUEFAST_REDIS_CLUSTER="true",
        CUEFAST_DATABASE_URL=database_url,
        CUEFAST_DATABASE_SCHEMA=schema,
        CUEFAST_KEY_PREFIX=prefix,
        CUEFAST_ALLOW_PRIVATE_CALLBACKS="true",
        **extra,
    )
    return env


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until_healthy(client: httpx.AsyncClient, timeout: float = 30.0) -> None:
    """Wait until the server behind ``client`` answers ``/health`` with 200."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


def cuefast_command() -> list[str]:
    """The venv's ``cuefast`` console script (``python -m cuefast`` when it is not installed)."""
    script = Path(sys.executable).parent / "cuefast"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cuefast"]


# Run first in the child: SIGKILL when the parent dies (kept across exec, same pid), then exec
# the command. A launcher instead of preexec_fn, which is unsafe in a process with threads.
_LAUNCHER = (
    "import ctypes, os, signal, sys; "
    f"ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, signal.SIGKILL); "
    "os.getppid() == int(sys.argv[1]) or sys.exit(3); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


class Proc:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.name = name
        self.popen = popen
        self.out = out
        self.err = err
        self.killed = False  # SIGKILLed on purpose: its exit status is not a failure

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


class Processes:
    def __init__(self, log_dir: Path, *, lifetime: float = 120.0) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, Proc] = {}
        self._watchdog = threading.Timer(lifetime, self._kill_all)
        self._watchdog.daemon = True
        self._watchdog.start()

    def start(self, name: str, *args: str, env: dict[str, str]) -> Proc:
        assert name not in self.procs, name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out, err = self.log_dir / f"{name}.out", self.log_dir / f"{name}.err"
        with out.open("wb") as fo, err.open("wb") as fe:
            popen = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *cuefast_command(), *args],
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=fo,
                stderr=fe,
            )
        proc = Proc(name, popen, out, err)
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        """kill -9, and reap it."""
        proc = self.procs[name]
        proc.killed = True
        proc.popen.kill()
        proc.popen.wait(10)

    async def stop(self, name: str, timeout: float = 20.0) -> int:
        """SIGTERM, then wait (without blocking the event loop) for a graceful exit."""
        proc = self.procs[name]
        if proc.alive():
            proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.alive():
            if time.monotonic() > deadline:
                proc.killed = True
                proc.popen.kill()
                proc.popen.wait(10)
                raise AssertionError(f"{name} did not stop within {timeout} s of SIGTERM")
            await asyncio.sleep(0.02)
        return int(proc.popen.returncode)

    async def stop_all(self, names: list[str], timeout: float = 20.0) -> dict[str, int]:
        """``stop`` these processes at the same time; exit codes of those that were running."""
        running = [n for n in names if self.procs[n].alive()]
        codes = await asyncio.gather(*(self.stop(n, timeout) for n in running))
        return dict(zip(running, codes, strict=True))

    async def wait_for_log(self, name: str, text: str, timeout: float = 30.0) -> None:
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while text not in proc.stderr():
            if not proc.alive():
                raise AssertionError(f"{name} exited with {proc.popen.returncode} before logging {text!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not log {text!r} within {timeout} s")
            await asyncio.sleep(0.05)

    def problems(self) -> list[str]:
        """Processes that crashed or logged a traceback (the ones killed on purpose excepted)."""
        out = []
        for proc in self.procs.values():
            code = proc.popen.poll()
            if not proc.killed and code not in (None, 0):
                out.append(f"{proc.name} exited with {code}")
            if "Traceback" in proc.stderr():
                out.append(f"{proc.name} logged a traceback")
        return out

    def logs(self) -> str:
        parts = []
        for proc in self.procs.values():
            for path in (proc.out, proc.err):
                text = path.read_text(errors="replace") if path.exists() else ""
                parts.append(
                    f"----- {path.name} (pid {proc.pid}, exit {proc.popen.poll()}) -----\n{text[-20_000:]}"
                )
        return "\n".join(parts)

    async def close(self, failed: bool = False) -> None:
        """Stop every process still running: SIGTERM, up to 15 s in all, then SIGKILL."""
        self._watchdog.cancel()
        for proc in self.procs.values():
            if proc.alive():
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(p.alive() for p in self.procs.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stuck = [p.name for p in self.procs.values() if p.alive()]
        self._kill_all()
        if failed or stuck or self.problems():
            if stuck:
                print(f"SIGKILLed after ignoring SIGTERM for 15 s: {stuck}")
            print(self.logs())

    def _kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.alive():
                proc.killed = True
                proc.popen.kill()
                proc.popen.wait(10)

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.close(failed=exc_type is not None)
