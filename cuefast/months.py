"""Calendar months of the usage counters and the monthly execution limit (UTC, "YYYY-MM")."""

from __future__ import annotations

from cuefast.times import to_datetime


def month_of(now_us: int) -> str:
    """ "YYYY-MM" of an instant (UTC)."""
    return to_datetime(now_us).strftime("%Y-%m")


def previous_month(month: str) -> str:
    """ "2026-01" → "2025-12"."""
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year - 1}-12" if mon == 1 else f"{year:04d}-{mon - 1:02d}"
