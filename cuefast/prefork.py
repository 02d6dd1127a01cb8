"""``--workers N``: N server processes on one listening socket, forked and supervised.

The parent binds the port once, forks N children that each run the server on that socket
(the kernel hands every new connection to one of them), and stays a supervisor: a child
that dies is started again (after a pause when it died young, so a crash loop cannot spin),
and SIGTERM/SIGINT are passed to every child, whose graceful shutdown the parent waits for.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

YOUNG_SECONDS = 5.0
"""A child that dies younger than this is restarted only after a pause (doubling, ≤ 30 s)."""
MAX_PAUSE = 30.0


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every child serves: bound before any child exists."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.set_inheritable(True)
    return sock


class _Supervisor:
    """The parent's state: which child runs in which slot, since when, and whether we stop."""

    def __init__(self, child: Callable[[int], int]) -> None:
        self.child = child
        self.pids: dict[int, int] = {}  # pid → slot index
        self.born: dict[int, float] = {}  # slot index → monotonic start
        self.pause: dict[int, float] = {}  # slot index → pause before its next restart
        self.stopping = False
        self.code = 0

    def spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child: default signal handlers, its own server, never returns
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            status = 1
            try:
                status = self.child(index)
            except BaseException:
                log.exception("server process %d failed", index)
            finally:
                os._exit(status)
        self.pids[pid] = index
        self.born[index] = time.monotonic()

    def stop(self, signum: int, _frame: object) -> None:
        self.stopping = True
        for pid in list(self.pids):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def exited(self, pid: int, exit_code: int) -> None:
        """Note a child's exit; start its slot again unless stopping (after a pause if young)."""
        index = self.pids.pop(pid)
        if self.stopping:
            if exit_code not in (0, -signal.SIGTERM, -signal.SIGINT):
                self.code = exit_code
            return
        young = time.monotonic() - self.born[index] < YOUNG_SECONDS
        pause = min(MAX_PAUSE, max(1.0, self.pause.get(index, 0.0) * 2)) if young else 0.0
        self.pause[index] = pause
        log.error(
            "server process %d (pid %d) exited with %d; starting it again%s",
            index,
            pid,
            exit_code,
            f" in {pause:g} s" if pause else "",
        )
        deadline = time.monotonic() + pause
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if not self.stopping:
            self.spawn(index)


def supervise(n: int, child: Callable[[int], int]) -> int:
    """Run ``child(index)`` in ``n`` forked processes until SIGTERM/SIGINT, then wait for
    every child: 0 when each stopped cleanly, else the exit code of one that did not."""
    sup = _Supervisor(child)
    previous = {sig: signal.signal(sig, sup.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(n):
            sup.spawn(index)
        log.info("%d server processes on one socket (pids %s)", n, " ".join(map(str, sup.pids)))
        while sup.pids:
            pid, status = os.wait()
            if pid in sup.pids:
                sup.exited(pid, os.waitstatus_to_exitcode(status))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return sup.code
