"""How a background loop logs a data store that is down or refusing: a warning, not a traceback a pass."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from cuefast.store.connect import UNREACHABLE, refusal, unreachable_cause

REPEAT_S = 60.0
"""while an outage lasts, its warning is repeated at most this often"""

Classifier = Callable[[BaseException], str]
"""why a data store could not serve a call (an error's cause for a log line), "" if it could"""


def unavailable(exc: BaseException) -> str:
    """Why Redis could not serve a command now — it cannot be reached or cannot serve
    (``UNREACHABLE``), or it refused the command whole (``refusal``: full, busy, a failed save,
    short of replicas) — as a log line's cause; "" for any other error (a bug: log it whole)."""
    if isinstance(exc, UNREACHABLE):
        return unreachable_cause(exc)
    if why := refusal(exc):
        return f"refusing writes: {why}"
    return ""


REDIS: Mapping[str, Classifier] = {"Redis": unavailable}
"""the data stores a loop that uses only Redis can find unavailable"""


class _Down:
    """One data store's current outage: since when (monotonic), failed attempts, last warning."""

    __slots__ = ("failures", "logged", "since")

    def __init__(self, now: float) -> None:
        self.since = self.logged = now
        self.failures = 0


class Outage:
    """One background loop's failures (the scheduler's pass, a dispatcher's read, a snapshot
    cycle…). ``failed`` logs a pass that raised: while a data store is unavailable (one of
    ``stores``: a name → its classifier, Redis's ``unavailable`` by default) that is one warning
    without a traceback when its outage starts, then one a minute while it lasts with how many
    passes failed — every pass is retried (``then`` says what happens instead), and a traceback
    a pass would bury the log under one known cause — and any other error with its traceback,
    every time. ``ok`` after a pass that succeeded: once an outage ends, one line per store says
    how long it lasted (a warning too, so that a log filtered to warnings shows both ends)."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        repeat_s: float = REPEAT_S,
        stores: Mapping[str, Classifier] = REDIS,
        then: str = "retrying",
    ) -> None:
        self.log, self.what, self.repeat_s, self.stores, self.then = log, what, repeat_s, stores, then
        self._down: dict[str, _Down] = {}

    @property
    def since(self) -> float | None:
        """The monotonic start of the current outage (the earliest store's), None if none."""
        return min((d.since for d in self._down.values()), default=None)

    @property
    def failures(self) -> int:
        """The failed attempts of the current outage."""
        return sum(d.failures for d in self._down.values())

    def failed(self, exc: BaseException, message: str) -> None:
        """A pass raised ``exc``; ``message`` is what the log says of any other error."""
        store, cause = next(
            ((s, why) for s, classify in self.stores.items() if (why := classify(exc))), ("", "")
        )
        if not cause:
            self.log.error(message, exc_info=exc)
            return
        now = time.monotonic()
        down = self._down.get(store)
        if down is None:
            down = self._down[store] = _Down(now)
            self.log.warning("%s: %s unavailable (%s); %s", self.what, store, cause, self.then)
        elif now - down.logged >= self.repeat_s:
            down.logged = now
            self.log.warning(
                "%s: %s still unavailable after %.0f s, %d failed attempts (%s); %s",
                self.what,
                store,
                now - down.since,
                down.failures + 1,
                cause,
                self.then,
            )
        down.failures += 1

    def ok(self) -> None:
        """A pass succeeded: ends the outage, if one was logged."""
        if not self._down:
            return
        now = time.monotonic()
        for store, down in self._down.items():
            self.log.warning(
                "%s: %s available again after %.0f s, %d failed attempts",
                self.what,
                store,
                now - down.since,
                down.failures,
            )
        self._down.clear()
