"""How a background loop logs a Redis that is down or refusing writes: a warning, not a traceback a pass."""

from __future__ import annotations

import logging
import time

from cuefast.store.connect import UNREACHABLE, refusal, unreachable_cause

REPEAT_S = 60.0
"""while an outage lasts, its warning is repeated at most this often"""


def unavailable(exc: BaseException) -> str:
    """Why Redis could not serve a command now — it cannot be reached or cannot serve
    (``UNREACHABLE``), or it refused the command whole (``refusal``: full, busy, a failed save,
    short of replicas) — as a log line's cause; "" for any other error (a bug: log it whole)."""
    if isinstance(exc, UNREACHABLE):
        return unreachable_cause(exc)
    if why := refusal(exc):
        return f"refusing writes: {why}"
    return ""


class Outage:
    """One background loop's failures (the scheduler's pass, a dispatcher's read, a snapshot
    cycle…). ``failed`` logs a pass that raised: while Redis is unavailable (``unavailable``)
    that is one warning without a traceback when the outage starts, then one a minute while it
    lasts with how many passes failed — every pass is retried, and a traceback a pass would
    bury the log under one known cause — and any other error with its traceback, every time.
    ``ok`` after a pass that succeeded: once an outage ends, one line says how long it lasted
    (a warning too, so that a log filtered to warnings shows both ends)."""

    def __init__(self, log: logging.Logger, what: str, *, repeat_s: float = REPEAT_S) -> None:
        self.log, self.what, self.repeat_s = log, what, repeat_s
        self.since: float | None = None  # monotonic start of the current outage
        self.failures = 0
        self._logged = 0.0

    def failed(self, exc: BaseException, message: str) -> None:
        """A pass raised ``exc``; ``message`` is what the log says of any other error."""
        cause = unavailable(exc)
        if not cause:
            self.log.error(message, exc_info=exc)
            return
        now = time.monotonic()
        self.failures += 1
        if self.since is None:
            self.since = self._logged = now
            self.log.warning("%s: Redis unavailable (%s); retrying", self.what, cause)
        elif now - self._logged >= self.repeat_s:
            self._logged = now
            self.log.warning(
                "%s: Redis still unavailable after %.0f s, %d failed attempts (%s); retrying",
                self.what,
                now - self.since,
                self.failures,
                cause,
            )

    def ok(self) -> None:
        """A pass succeeded: ends the outage, if one was logged."""
        if self.since is not None:
            self.log.warning(
                "%s: Redis available again after %.0f s, %d failed attempts",
                self.what,
                time.monotonic() - self.since,
                self.failures,
            )
            self.since, self.failures = None, 0
