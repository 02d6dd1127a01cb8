"""Guard process: stops an embedded PostgreSQL when the cuefast process that owns it goes away.

``python -I -S _pg_guard.py <pgdata>`` (standard library only, so it runs without cuefast
on ``sys.path``) reads lines from stdin, a pipe from the owner:

* ``ready``: postgres is up;
* ``stopped``: the owner stopped postgres itself.

When the pipe closes (the owner exited, or was killed with SIGKILL) or the guard gets
SIGTERM, it asks the postmaster for a fast shutdown (what ``pg_ctl stop -m fast`` does:
SIGINT) and waits for it to finish. ``pg_ctl`` daemonizes postgres, so without this it
would outlive a killed owner. If the owner died while postgres was still starting (no
``ready``), the guard keeps watching for a while and stops the server once it appears.

The owner's data-dir lock is inherited by the guard, so the data dir stays locked until
postgres is really gone. The guard runs in its own session: a terminal's ^C reaches the
owner, which stops postgres in order, and never the guard first.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Literal

START_GRACE = 30.0
"""How long to watch for a server an owner that died mid-start may still bring up (pg_ctl
is a child of the owner and outlives it)."""

_HAVE_PROC = Path("/proc/self").exists()


def _pidfile_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited, not yet reaped zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    if not _HAVE_PROC:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ")"
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a postgres started on ``pgdata`` (guards against a stale pidfile whose
    pid now belongs to another process). Without /proc, trust the pidfile."""
    if not _HAVE_PROC:
        return True
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and Path(os.fsdecode(argv[0])).name == "postgres" and os.fsencode(pgdata) in argv


def running_postmaster(pgdata: Path) -> int | None:
    """The pid of the live postmaster serving ``pgdata``, if any."""
    pid = _pidfile_pid(pgdata)
    if pid is None or not alive(pid) or not _is_postmaster_of(pid, pgdata):
        return None
    return pid


def _others_on(pgdata: Path) -> bool:
    """Whether a process other than this one names ``pgdata`` on its command line (initdb,
    pg_ctl, or a postgres about to start). Without /proc: assume so."""
    if not _HAVE_PROC:
        return True
    needle, me = os.fsencode(pgdata), os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(needle in arg for arg in argv) and alive(int(entry.name)):
            return True
    return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_postgres(pgdata: Path, timeout: float = 30.0) -> Literal["not running", "stopped", "forced"]:
    """Fast shutdown (SIGINT: roll back open transactions, disconnect, checkpoint, exit), then
    immediate shutdown (SIGQUIT) and SIGKILL if it does not finish within ``timeout``."""
    pid = running_postmaster(pgdata)
    if pid is None:
        return "not running"
    _signal(pid, signal.SIGINT)
    if _wait_gone(pid, timeout):
        return "stopped"
    _signal(pid, signal.SIGQUIT)
    if not _wait_gone(pid, 5.0):
        _signal(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)
    return "forced"


class _Terminated(Exception):
    pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: _pg_guard.py <pgdata>", file=sys.stderr)
        return 2
    pgdata = Path(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    state = ""
    try:
        for line in sys.stdin.buffer:
            state = line.decode(errors="replace").strip() or state
    except _Terminated:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the shutdown we are about to start
    if state in ("ready", "stopped"):
        stop_postgres(pgdata)
        return 0
    # the owner died while starting postgres: its initdb / pg_ctl may still bring it up
    deadline = time.monotonic() + START_GRACE
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        if stop_postgres(pgdata) != "not running":
            break
        if _others_on(pgdata):
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > 1.0:  # nothing left that could start it
            break
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
