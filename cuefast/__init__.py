"""cuefast: a Redis-native, high-throughput scheduler for fleets of AI agents.

It speaks the CueAPI wire format. This package holds the server (``cuefast serve``), the
SDK (``CueFast``, ``AsyncCueFast``, ``verify_webhook``, the errors) and the worker daemon
(``Worker``, ``cuefast worker``). ``import cuefast`` loads nothing else: the SDK names
are imported on first use, and they need only httpx and msgspec (never the server's
dependencies).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "CueFast": "cuefast.client",
    "AsyncCueFast": "cuefast.client",
    "verify_webhook": "cuefast.client.webhook",
    "CuePayload": "cuefast.client.payload",
    "Worker": "cuefast.worker.daemon",
    "Context": "cuefast.worker.handlers",
    "Outcome": "cuefast.worker.handlers",
    "CueAPIError": "cuefast.client.errors",
    "AuthenticationError": "cuefast.client.errors",
    "CueLimitExceededError": "cuefast.client.errors",
    "CueNotFoundError": "cuefast.client.errors",
    "InvalidScheduleError": "cuefast.client.errors",
    "RateLimitError": "cuefast.client.errors",
    "CueAPIServerError": "cuefast.client.errors",
    "CueAPIConnectionError": "cuefast.client.errors",
    "CueAPITimeoutError": "cuefast.client.errors",
}

__all__ = [
    "AsyncCueFast",
    "AuthenticationError",
    "Context",
    "CueAPIConnectionError",
    "CueAPIError",
    "CueAPIServerError",
    "CueAPITimeoutError",
    "CueFast",
    "CueLimitExceededError",
    "CueNotFoundError",
    "CuePayload",
    "InvalidScheduleError",
    "Outcome",
    "RateLimitError",
    "Worker",
    "__version__",
    "verify_webhook",
]

if TYPE_CHECKING:
    from cuefast.client import AsyncCueFast, CueFast
    from cuefast.client.errors import (
        AuthenticationError,
        CueAPIConnectionError,
        CueAPIError,
        CueAPIServerError,
        CueAPITimeoutError,
        CueLimitExceededError,
        CueNotFoundError,
        InvalidScheduleError,
        RateLimitError,
    )
    from cuefast.client.payload import CuePayload
    from cuefast.client.webhook import verify_webhook
    from cuefast.worker.daemon import Worker
    from cuefast.worker.handlers import Context, Outcome


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cuefast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
