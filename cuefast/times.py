"""Timestamps on the wire (CONTRACT.md §3.2).

Internally every instant is an int of microseconds since the Unix epoch, UTC.
Two output spellings exist: ``Z`` style (most object fields) and ``+00:00`` style
(webhook bodies, ``scheduled_for`` of fire/replay, …). Microseconds appear only
when non-zero.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta, tzinfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


def _base(us: int) -> str:
    secs, micro = divmod(us, 1_000_000)
    return f"{_second(secs)}.{micro:06d}" if micro else _second(secs)


def fmt_z(us: int | None) -> str | None:
    """``2026-11-23T11:41:18.397965Z`` / ``2026-11-23T11:42:00Z``."""
    return None if us is None else _base(us) + "Z"


def fmt_offset(us: int | None) -> str | None:
    """``2026-11-23T11:43:17.702571+00:00``."""
    return None if us is None else _base(us) + "+00:00"


def fmt_date(us: int) -> str:
    return to_datetime(us).strftime("%Y-%m-%d")


def parse_datetime(text: str, default_tz: tzinfo = UTC) -> int:
    """Parse an ISO-8601 datetime (``Z`` or an offset) into µs.

    A value without an offset is wall-clock time in ``default_tz``. Raises
    ValueError on anything that is not an ISO-8601 datetime.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("not a datetime")
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    dt = datetime.fromisoformat(raw)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=default_tz)
    return from_datetime(dt)
