"""Guard process: stops an embedded PostgreSQL when its parent goes away.

``python -m cuefast._pg_guard <pgdata>`` blocks reading stdin (a pipe from the parent).
When the pipe closes — the parent exited, or was killed with SIGKILL — it asks the
postmaster for a fast shutdown (SIGINT) and waits for it to finish. Postgres is
daemonized by ``pg_ctl``, so without this it would outlive a killed parent.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, owned by someone else
        return True
    return True


def stop_postgres(pgdata: Path, timeout: float = 30.0) -> bool:
    """Fast shutdown (SIGINT to the postmaster); SIGQUIT if it does not finish in time."""
    pid = postmaster_pid(pgdata)
    if pid is None or not alive(pid):
        return True
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGQUIT)
    return False


def main() -> None:
    pgdata = Path(sys.argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal ^C must not kill the guard first
    while sys.stdin.buffer.read(4096):
        pass
    stop_postgres(pgdata)


if __name__ == "__main__":
    main()
