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


def supervise(n: int, child: Callable[[int], int]) -> int:
    """Run ``child(index)`` in ``n`` forked processes until SIGTERM/SIGINT, then wait for
    every child: 0 when each stopped cleanly, else the exit code of one that did not."""
    pids: dict[int, int] = {}  # pid → index
    born: dict[int, float] = {}
    pause: dict[int, float] = dict.fromkeys(range(n), 0.0)
    stopping = False
    code = 0

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child: default signal handlers, its own server, never returns
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            status = 1
            try:
                status = child(index)
            except BaseException:
                log.exception("server process %d failed", index)
            finally:
                os._exit(status)
        pids[pid] = index
        born[index] = time.monotonic()

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(pids):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(n):
            spawn(index)
        log.info("%d server processes on one socket (pids %s)", n, " ".join(map(str, pids)))
        while pids:
            pid, status = os.wait()
            if pid not in pids:
                continue
            index = pids.pop(pid)
            exit_code = os.waitstatus_to_exitcode(status)
            if stopping:
                if exit_code not in (0, -signal.SIGTERM, -signal.SIGINT):
                    code = exit_code
                continue
            young = time.monotonic() - born[index] < YOUNG_SECONDS
            pause[index] = min(MAX_PAUSE, max(1.0, pause[index] * 2)) if young else 0.0
            log.error(
                "server process %d (pid %d) exited with %d; starting it again%s",
                index,
                pid,
                exit_code,
                f" in {pause[index]:g} s" if pause[index] else "",
            )
            deadline = time.monotonic() + pause[index]
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            if not stopping:
                spawn(index)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
