"""The worker daemon's limits, its default worker id and how it reads the environment."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any

MAX_BATCH = 500
"""Executions per claim, lease extension, release or outcome report call (the server's limit)."""
MAX_HANDLERS = 100
"""Tasks one daemon may serve: the server accepts at most this many per claim and per
registry heartbeat (``work_input``, ``worker_registry``)."""


def default_worker_id() -> str:
    """``<hostname>-<pid>``: unique per process, so the claims of a daemon that crashed are
    reclaimed once their lease expires (the server keeps renewing the leases of a worker id
    that is still heartbeating — a restarted daemon reusing the id would hold them for
    ``CUEFAST_WORKER_MAX_CLAIM_SECONDS``)."""
    return f"{platform.node() or 'cuefast-worker'}-{os.getpid()}"


def env_text(environ: Mapping[str, str], name: str) -> str | None:
    """The variable ``name``, stripped; ``None`` when unset or blank."""
    value = environ.get(name, "").strip()
    return value or None


def env_number(environ: Mapping[str, str], name: str, kind: type[int] | type[float]) -> Any:
    """The variable ``name`` as a ``kind``; ``None`` when unset or blank, ``ValueError`` when not a number."""
    raw = env_text(environ, name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
