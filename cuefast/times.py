"""Timestamps on the wire (CONTRACT.md §3.2).

Internally every instant is an int of microseconds since the Unix epoch, UTC.
Two output spellings exist: ``Z`` style (most object fields) and ``+00:00`` style
(webhook bodies, ``scheduled_for`` of fire/replay, …). Microseconds appear only
when non-zero.

Bounds. Every instant the API accepts goes through ``parse_datetime``, which refuses one
outside ``[MIN_INSTANT_US, MAX_INSTANT_US]`` (``InstantOutOfRange``): the Unix epoch to the
end of 2199 UTC. The upper bound keeps every µs value below 2**53, so it is exact as a
double (Lua numbers and sorted-set scores are doubles) and always renderable.

Rendering is total: ``fmt_z``/``fmt_offset`` answer None for a value no datetime can hold
instead of raising (``cuefast.services.render`` logs such a stored value as a data error).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta, tzinfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MIN_INSTANT_US = 0
"""1970-01-01T00:00:00Z: the earliest instant the API accepts."""
MAX_INSTANT_US = 7_258_118_399_999_999
"""2199-12-31T23:59:59.999999Z: the latest instant the API accepts (< 2**53 µs)."""
MIN_INSTANT_TEXT = "1970-01-01T00:00:00Z"
MAX_INSTANT_TEXT = "2199-12-31T23:59:59.999999Z"
RANGE_TEXT = f"must be between {MIN_INSTANT_TEXT} and {MAX_INSTANT_TEXT}"


class InstantOutOfRange(ValueError):
    """A well-formed datetime outside the accepted range; ``late``: after it (else before)."""

    def __init__(self, late: bool) -> None:
        super().__init__(f"datetime {RANGE_TEXT}")
        self.late = late


def to_datetime(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def from_datetime(dt: datetime) -> int:
    """An aware datetime → µs since the epoch."""
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@functools.lru_cache(maxsize=8192)
def _second(secs: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a whole second, remembered: the timestamps a burst of
    deliveries or a page of executions writes share few distinct seconds."""
    dt = _EPOCH + timedelta(seconds=secs)
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"


def _base(us: int) -> str | None:
    """The text of ``us`` without a zone, or None when no datetime can hold it."""
    secs, micro = divmod(us, 1_000_000)
    try:
        second = _second(secs)
    except (OverflowError, ValueError):  # beyond year 1..9999
        return None
    return f"{second}.{micro:06d}" if micro else second


def fmt_z(us: int | None) -> str | None:
    """``2026-11-23T11:41:18.397965Z`` / ``2026-11-23T11:42:00Z``; None for None or a value no
    datetime can hold (never raises)."""
    if us is None:
        return None
    secs, micro = divmod(us, 1_000_000)  # _base inlined: a page of executions calls this ~60 times
    try:
        second = _second(secs)
    except (OverflowError, ValueError):
        return None
    return f"{second}.{micro:06d}Z" if micro else second + "Z"


def fmt_offset(us: int | None) -> str | None:
    """``2026-11-23T11:43:17.702571+00:00``; None like ``fmt_z``."""
    if us is None:
        return None
    base = _base(us)
    return None if base is None else base + "+00:00"


def fmt_date(us: int) -> str:
    return to_datetime(us).strftime("%Y-%m-%d")


def parse_datetime(text: str, default_tz: tzinfo = UTC) -> int:
    """Parse an ISO-8601 datetime (``Z`` or an offset) into µs.

    A value without an offset is wall-clock time in ``default_tz``. Raises ValueError on
    anything that is not an ISO-8601 datetime, and its subclass ``InstantOutOfRange`` on one
    outside ``[MIN_INSTANT_US, MAX_INSTANT_US]`` (the one bound of every accepted instant).
    """
    if not isinstance(text, str) or not text:
        raise ValueError("not a datetime")
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    dt = datetime.fromisoformat(raw)
    try:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=default_tz)
        us = from_datetime(dt)
    except OverflowError:  # a zone's offset pushed it past year 1..9999
        raise InstantOutOfRange(late=dt.year > 1970) from None
    if not MIN_INSTANT_US <= us <= MAX_INSTANT_US:
        raise InstantOutOfRange(late=us > MAX_INSTANT_US)
    return us
