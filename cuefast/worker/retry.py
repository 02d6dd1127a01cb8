"""How the worker daemon retries the server: backoff with jitter, and which failures to retry."""

from __future__ import annotations

import logging
import random

import httpx

from cuefast.client.errors import CueAPIConnectionError, CueAPIError, CueAPIServerError, RateLimitError

log = logging.getLogger("cuefast.worker.daemon")  # the daemon logs under one name

RETRYABLE = (CueAPIConnectionError, CueAPIServerError, RateLimitError)
"""Failures that say the server is away or busy, not that the request is wrong."""


class Backoff:
    """Exponential backoff with jitter, and a lost/back log line per outage. ``server`` (the
    claim loop's, the daemon's heartbeat to the operator): one line per backoff instead, naming
    the server and, while it cannot be reached, the setting to check."""

    def __init__(self, what: str, cap: float, *, server: str = "") -> None:
        self.what = what
        self.cap = cap
        self.server = server
        self.failures = 0

    def failed(self, exc: BaseException) -> float:
        self.failures += 1
        if isinstance(exc, RateLimitError) and exc.retry_after:
            delay = float(exc.retry_after)
        else:
            base = min(self.cap, 0.2 * 2 ** (self.failures - 1))
            delay = base / 2 + random.uniform(0, base / 2)  # noqa: S311 (jitter, not a secret)
        if self.server:
            if isinstance(exc, CueAPIConnectionError):
                log.warning(
                    "cannot reach the cuefast server at %s (%s): check CUEFAST_BASE_URL / --base-url "
                    "and that the server runs; %s retry %d in %.1fs",
                    self.server,
                    exc,
                    self.what,
                    self.failures,
                    delay,
                )
            else:
                log.warning(
                    "%s failed at %s (%s); retry %d in %.1fs",
                    self.what,
                    self.server,
                    exc,
                    self.failures,
                    delay,
                )
        elif self.failures == 1:
            log.warning("%s failed (%s); retrying with backoff", self.what, exc)
        else:
            log.debug("%s failed again (%s); next try in %.1fs", self.what, exc, delay)
        return delay

    def ok(self) -> None:
        if self.failures:
            log.info("%s works again after %d failed tries", self.what, self.failures)
        self.failures = 0


def maybe_processed(exc: CueAPIError) -> bool:
    """The request may have reached the server (so a claim may have been made)."""
    if isinstance(exc, CueAPIServerError):
        return True
    if isinstance(exc, CueAPIConnectionError):
        return not isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout)
    return False
