"""Cron dialect and next-fire maths with real zones (CONTRACT.md §7.4).

Every expected value is worked out by hand from the calendar and the zones' rules (the
comments say how), never by asking croniter.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from croniter import CroniterBadDateError, croniter

from cuefast import cron
from cuefast.cron import next_fire, next_fires, resolve_timezone, validate_cron
from cuefast.errors import InvalidSchedule, InvalidTimezone
from cuefast.times import fmt_z, from_datetime, parse_datetime

NOW = parse_datetime("2026-11-24T10:00:00Z")  # a Tuesday
HOUR = 3600 * 1_000_000


def nf(expr: str, zone: str, ref: str) -> str | None:
    return fmt_z(next_fire(expr, resolve_timezone(zone), parse_datetime(ref)))


def nfs(expr: str, zone: str, ref: str, until: str, limit: int = 100) -> list[str | None]:
    fires = next_fires(expr, resolve_timezone(zone), parse_datetime(ref), parse_datetime(until), limit)
    return [fmt_z(f) for f in fires]


# -- known answers -----------------------------------------------------------------------

DIALECT_ROWS = [
    # strictly after the reference
    ("0 9 * * *", "UTC", "2026-11-24T08:59:59Z", "2026-11-24T09:00:00Z"),
    ("0 9 * * *", "UTC", "2026-11-24T09:00:00Z", "2026-11-25T09:00:00Z"),
    ("* * * * *", "UTC", "2026-11-24T10:00:30Z", "2026-11-24T10:01:00Z"),
    # local zone: Monday 09:00 EST (UTC-5) in November, EDT (UTC-4) in June
    ("0 9 * * 1", "America/New_York", "2026-11-24T10:00:00Z", "2026-11-30T14:00:00Z"),
    ("0 9 * * 1", "America/New_York", "2027-06-01T00:00:00Z", "2027-06-07T13:00:00Z"),
    # 6th field = seconds
    ("0 0 1 1 * 30", "UTC", "2026-11-24T10:00:00Z", "2027-01-01T00:00:30Z"),
    ("* * * * * */20", "UTC", "2026-11-24T10:00:07Z", "2026-11-24T10:00:20Z"),
    ("* * * * * *", "UTC", "2026-11-24T10:00:00.5Z", "2026-11-24T10:00:01Z"),
    # 7th field = year, also further away than croniter's default 50-year search
    ("0 12 1 6 * 0 2030", "UTC", "2026-11-24T10:00:00Z", "2030-06-01T12:00:00Z"),
    ("0 0 1 1 * 0 2090", "UTC", "2026-11-24T10:00:00Z", "2090-01-01T00:00:00Z"),
    ("0 0 29 2 * 0 2096", "UTC", "2026-11-24T10:00:00Z", "2096-02-29T00:00:00Z"),
    ("0 12 1 6 * 0 2030", "UTC", "2030-06-01T12:00:00Z", None),  # its only fire is past
    # steps, ranges, lists
    ("*/15 * * * *", "UTC", "2026-11-24T10:00:00Z", "2026-11-24T10:15:00Z"),
    ("5/20 * * * *", "UTC", "2026-11-24T10:06:00Z", "2026-11-24T10:25:00Z"),  # 5,25,45
    ("10-40/15 * * * *", "UTC", "2026-11-24T10:26:00Z", "2026-11-24T10:40:00Z"),  # 10,25,40
    ("10-40/15 * * * *", "UTC", "2026-11-24T10:41:00Z", "2026-11-24T11:10:00Z"),
    ("0 8,17 * * *", "UTC", "2026-11-24T10:00:00Z", "2026-11-24T17:00:00Z"),
    ("0 9-11 * * *", "UTC", "2026-11-24T11:00:00Z", "2026-11-25T09:00:00Z"),
    # L, W, #, Ld
    ("0 0 L * *", "UTC", "2027-02-01T00:00:00Z", "2027-02-28T00:00:00Z"),
    ("0 0 L 2 *", "UTC", "2027-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),  # 2028 is a leap year
    ("0 0 15W * *", "UTC", "2027-05-01T00:00:00Z", "2027-05-14T00:00:00Z"),  # 15 May 2027 is a Sat
    ("0 0 15W * *", "UTC", "2026-11-01T00:00:00Z", "2026-11-16T00:00:00Z"),  # 15 Nov 2026 is a Sun
    ("0 0 * * 1#2", "UTC", "2026-12-01T00:00:00Z", "2026-12-14T00:00:00Z"),  # Mondays: 7, 14
    ("0 0 * * mon#1", "UTC", "2026-12-01T00:00:00Z", "2026-12-07T00:00:00Z"),
    ("0 0 * * L5", "UTC", "2026-12-01T00:00:00Z", "2026-12-25T00:00:00Z"),  # last Friday
    # names (any case), ?, Sunday as 0 and 7
    ("0 0 ? * MON", "UTC", "2026-11-24T10:00:00Z", "2026-11-30T00:00:00Z"),
    ("0 12 * * Fri", "UTC", "2026-11-24T10:00:00Z", "2026-11-27T12:00:00Z"),
    ("0 0 * * sat-sun", "UTC", "2026-11-24T10:00:00Z", "2026-11-28T00:00:00Z"),
    ("0 0 1 jan *", "UTC", "2026-11-24T10:00:00Z", "2027-01-01T00:00:00Z"),
    ("0 0 1 Mar-May *", "UTC", "2026-11-24T10:00:00Z", "2027-03-01T00:00:00Z"),
    ("0 0 * * 0", "UTC", "2026-11-24T10:00:00Z", "2026-11-29T00:00:00Z"),
    ("0 0 * * 7", "UTC", "2026-11-24T10:00:00Z", "2026-11-29T00:00:00Z"),
    # DOM and DOW both restricted: OR; only one restricted: just that one
    ("0 9 1 * 1", "UTC", "2026-11-24T10:00:00Z", "2026-11-30T09:00:00Z"),  # Monday 30th
    ("0 9 1 * 1", "UTC", "2026-11-30T09:00:00Z", "2026-12-01T09:00:00Z"),  # Tuesday the 1st
    ("0 9 1 * *", "UTC", "2026-11-24T10:00:00Z", "2026-12-01T09:00:00Z"),
    ("0 9 * * 1", "UTC", "2026-11-30T09:00:00Z", "2026-12-07T09:00:00Z"),
    # aliases
    ("@hourly", "UTC", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z"),
    ("@daily", "UTC", "2026-11-24T10:00:00Z", "2026-11-25T00:00:00Z"),
    ("@midnight", "UTC", "2026-11-24T10:00:00Z", "2026-11-25T00:00:00Z"),
    ("@DAILY", "UTC", "2026-11-24T10:00:00Z", "2026-11-25T00:00:00Z"),
    ("@weekly", "UTC", "2026-11-24T10:00:00Z", "2026-11-29T00:00:00Z"),  # Sunday
    ("@monthly", "UTC", "2026-11-24T10:00:00Z", "2026-12-01T00:00:00Z"),
    ("@yearly", "UTC", "2026-11-24T10:00:00Z", "2027-01-01T00:00:00Z"),
    ("@annually", "UTC", "2026-11-24T10:00:00Z", "2027-01-01T00:00:00Z"),
    # Feb 29, the 2100 horizon
    ("0 0 29 2 *", "UTC", "2026-11-24T10:00:00Z", "2028-02-29T00:00:00Z"),
    ("0 0 31 12 *", "UTC", "2099-06-01T00:00:00Z", "2099-12-31T00:00:00Z"),
    ("0 0 1 1 *", "UTC", "2099-06-01T00:00:00Z", None),
    ("0 0 30 2 *", "UTC", "2026-11-24T10:00:00Z", None),
    # rare fires: 29 February that is a Monday (the 5th Monday of February) is in 2044 and
    # 2072 only, 28 years apart; each search must skip the years known to be empty
    ("0 0 29 2 1#5", "UTC", "2026-11-24T10:00:00Z", "2044-02-29T00:00:00Z"),
    ("0 0 29 2 1#5", "UTC", "2044-02-29T00:00:00Z", "2072-02-29T00:00:00Z"),
    ("0 0 29 2 1#5", "UTC", "2072-02-29T00:00:00Z", None),
    ("0 0 29 2 mon#5", "America/New_York", "2026-11-24T10:00:00Z", "2044-02-29T05:00:00Z"),
    # a year field: 2030, 2037, 2044, …; only 2044 and 2072 of them are leap years
    ("0 0 29 2 * 0 2030-2099/7", "UTC", "2026-11-24T10:00:00Z", "2044-02-29T00:00:00Z"),
    ("0 0 29 2 * 0 2030-2099/7", "UTC", "2044-03-01T00:00:00Z", "2072-02-29T00:00:00Z"),
    ("0 0 1 1 * 0 2099", "UTC", "2026-01-01T00:00:00Z", "2099-01-01T00:00:00Z"),
    # an impossible day-of-month side (31 April…) leaves the day-of-week side: Mondays in
    # April, June, September, November; 2027-04-05 is the first after 24 November 2026
    ("0 9 31 4,6,9,11 1", "UTC", "2026-11-24T10:00:00Z", "2026-11-30T09:00:00Z"),
    ("0 9 31 4,6,9,11 1", "UTC", "2026-11-30T09:00:00Z", "2027-04-05T09:00:00Z"),
]

DST_ROWS = [
    # America/Los_Angeles spring forward 2027-03-14: 02:00 PST → 03:00 PDT at 10:00Z
    ("30 2 * * *", "America/Los_Angeles", "2027-03-14T05:00:00Z", "2027-03-14T10:00:00Z"),
    ("30 2 * * *", "America/Los_Angeles", "2027-03-14T10:00:00Z", "2027-03-15T09:30:00Z"),
    ("*/15 * * * *", "America/Los_Angeles", "2027-03-14T09:50:00Z", "2027-03-14T10:00:00Z"),
    ("*/15 * * * *", "America/Los_Angeles", "2027-03-14T10:00:00Z", "2027-03-14T10:15:00Z"),
    ("0 3 * * *", "America/Los_Angeles", "2027-03-14T05:00:00Z", "2027-03-14T10:00:00Z"),  # gap end
    # America/Los_Angeles fall back 2026-11-01: 02:00 PDT → 01:00 PST at 09:00Z
    ("30 1 * * *", "America/Los_Angeles", "2026-11-01T07:00:00Z", "2026-11-01T08:30:00Z"),
    ("30 1 * * *", "America/Los_Angeles", "2026-11-01T08:30:00Z", "2026-11-02T09:30:00Z"),
    ("*/30 * * * *", "America/Los_Angeles", "2026-11-01T07:45:00Z", "2026-11-01T08:00:00Z"),
    ("*/30 * * * *", "America/Los_Angeles", "2026-11-01T08:00:00Z", "2026-11-01T08:30:00Z"),
    ("*/30 * * * *", "America/Los_Angeles", "2026-11-01T08:30:00Z", "2026-11-01T10:00:00Z"),
    ("*/30 * * * *", "America/Los_Angeles", "2026-11-01T09:00:00Z", "2026-11-01T10:00:00Z"),  # 01:00 PST
    ("*/30 * * * *", "America/Los_Angeles", "2026-11-01T09:10:00Z", "2026-11-01T10:00:00Z"),  # 01:10 PST
    ("* * * * * *", "America/Los_Angeles", "2026-11-01T09:00:00Z", "2026-11-01T10:00:00Z"),
    ("* * * * * *", "America/Los_Angeles", "2026-11-01T08:59:59Z", "2026-11-01T10:00:00Z"),
    # America/New_York spring forward 2027-03-14: 02:00 EST → 03:00 EDT at 07:00Z
    ("0 2 * * *", "America/New_York", "2027-03-13T12:00:00Z", "2027-03-14T07:00:00Z"),
    # Europe/London 2027-03-28: 01:00 GMT → 02:00 BST at 01:00Z
    ("30 1 * * *", "Europe/London", "2027-03-27T12:00:00Z", "2027-03-28T01:00:00Z"),
    ("*/30 * * * *", "Europe/London", "2027-03-28T00:45:00Z", "2027-03-28T01:00:00Z"),
    ("*/30 * * * *", "Europe/London", "2027-03-28T01:00:00Z", "2027-03-28T01:30:00Z"),  # 02:30 BST
    # Europe/London 2026-10-25: 02:00 BST → 01:00 GMT at 01:00Z
    ("30 1 * * *", "Europe/London", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"),
    ("30 1 * * *", "Europe/London", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"),
    ("0 * * * *", "Europe/London", "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z"),  # 02:00 GMT
    # Australia/Sydney 2027-04-04: 03:00 AEDT (UTC+11) → 02:00 AEST (UTC+10) at 16:00Z on the 3rd
    ("30 2 * * *", "Australia/Sydney", "2027-04-03T12:00:00Z", "2027-04-03T15:30:00Z"),
    ("30 2 * * *", "Australia/Sydney", "2027-04-03T15:30:00Z", "2027-04-04T16:30:00Z"),
    ("*/30 * * * *", "Australia/Sydney", "2027-04-03T15:30:00Z", "2027-04-03T17:00:00Z"),  # 03:00 AEST
    ("*/30 * * * *", "Australia/Sydney", "2027-04-03T16:10:00Z", "2027-04-03T17:00:00Z"),  # ref repeated
    # Australia/Sydney 2026-10-04: 02:00 AEST → 03:00 AEDT at 16:00Z on the 3rd
    ("30 2 * * *", "Australia/Sydney", "2026-10-03T12:00:00Z", "2026-10-03T16:00:00Z"),
    ("30 2 * * *", "Australia/Sydney", "2026-10-03T16:00:00Z", "2026-10-04T15:30:00Z"),
    # Australia/Lord_Howe 2026-10-04: a 30-minute gap, 02:00 (UTC+10:30) → 02:30 (UTC+11) at 15:30Z
    ("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00Z", "2026-10-03T15:30:00Z"),
    ("45 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00Z", "2026-10-03T15:45:00Z"),
]


@pytest.mark.parametrize(("expr", "zone", "ref", "expected"), DIALECT_ROWS + DST_ROWS)
def test_next_fire(expr: str, zone: str, ref: str, expected: str | None) -> None:
    assert nf(expr, zone, ref) == expected


def test_next_fire_is_consistent_whatever_the_call_order() -> None:
    """The memo must not answer from a span the reference is not inside."""
    assert nf("0 * * * *", "UTC", "2026-11-24T10:30:00Z") == "2026-11-24T11:00:00Z"
    assert nf("0 * * * *", "UTC", "2026-11-24T10:59:59.999999Z") == "2026-11-24T11:00:00Z"
    assert nf("0 * * * *", "UTC", "2026-11-24T11:00:00Z") == "2026-11-24T12:00:00Z"
    assert nf("0 * * * *", "UTC", "2026-11-24T09:59:00Z") == "2026-11-24T10:00:00Z"
    # Kolkata is UTC+5:30: 10:29Z = 15:59 IST, so the next full hour 16:00 IST = 10:30Z
    assert nf("0 * * * *", "Asia/Kolkata", "2026-11-24T10:29:00Z") == "2026-11-24T10:30:00Z"


# -- next_fires (catch-up) ---------------------------------------------------------------


def test_next_fires_window_and_limit() -> None:
    assert nfs("*/15 * * * *", "UTC", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z") == [
        "2026-11-24T10:15:00Z",
        "2026-11-24T10:30:00Z",
        "2026-11-24T10:45:00Z",
        "2026-11-24T11:00:00Z",  # the window's end is included
    ]
    assert nfs("*/15 * * * *", "UTC", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", limit=2) == [
        "2026-11-24T10:15:00Z",
        "2026-11-24T10:30:00Z",
    ]
    assert nfs("*/15 * * * *", "UTC", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z", limit=0) == []
    assert nfs("0 0 1 1 *", "UTC", "2026-11-24T10:00:00Z", "2026-12-31T00:00:00Z") == []
    tz = resolve_timezone("UTC")
    assert len(next_fires("* * * * * *", tz, NOW, NOW + HOUR, 10)) == 10
    assert len(next_fires("* * * * * *", tz, NOW, NOW + HOUR, 100_000)) == 3600


def test_next_fires_across_dst() -> None:
    # LA fall back: 01:00/01:30 PDT fire, their PST repeats do not, then 02:00 PST
    assert nfs("*/30 * * * *", "America/Los_Angeles", "2026-11-01T07:45:00Z", "2026-11-01T10:30:00Z") == [
        "2026-11-01T08:00:00Z",
        "2026-11-01T08:30:00Z",
        "2026-11-01T10:00:00Z",
        "2026-11-01T10:30:00Z",
    ]
    # LA spring forward: 02:00..02:45 and 03:00 all collapse into 10:00Z
    assert nfs("*/15 * * * *", "America/Los_Angeles", "2027-03-14T09:40:00Z", "2027-03-14T10:20:00Z") == [
        "2027-03-14T09:45:00Z",
        "2027-03-14T10:00:00Z",
        "2027-03-14T10:15:00Z",
    ]
    # Sydney autumn: 02:00 and 02:30 AEDT, not their AEST repeats, then 03:00 AEST
    assert nfs("*/30 * * * *", "Australia/Sydney", "2027-04-03T14:50:00Z", "2027-04-03T17:30:00Z") == [
        "2027-04-03T15:00:00Z",
        "2027-04-03T15:30:00Z",
        "2027-04-03T17:00:00Z",
        "2027-04-03T17:30:00Z",
    ]
    # a daily job runs once on both transition days
    assert nfs("30 1 * * *", "America/Los_Angeles", "2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z") == [
        "2026-10-31T08:30:00Z",
        "2026-11-01T08:30:00Z",
        "2026-11-02T09:30:00Z",
    ]
    assert nfs("30 2 * * *", "America/Los_Angeles", "2027-03-13T00:00:00Z", "2027-03-16T00:00:00Z") == [
        "2027-03-13T10:30:00Z",
        "2027-03-14T10:00:00Z",
        "2027-03-15T09:30:00Z",
    ]


def count_get_next(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count croniter searches (``get_next`` calls) from now on: ``[n]``."""
    steps = [0]
    real_get_next = croniter.get_next

    def counting_get_next(self: croniter, *args: Any, **kwargs: Any) -> Any:
        steps[0] += 1
        return real_get_next(self, *args, **kwargs)

    monkeypatch.setattr(croniter, "get_next", counting_get_next)
    return steps


def test_spring_forward_gap_is_skipped_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 3,600 per-second matches inside a one-hour gap all fire once at its end: the search
    jumps over them instead of stepping through each."""
    steps = count_get_next(monkeypatch)
    assert nfs("* * * * * *", "America/Los_Angeles", "2027-03-14T09:59:58Z", "2027-03-14T11:00:00Z", 4) == [
        "2027-03-14T09:59:59Z",  # 01:59:59 PST
        "2027-03-14T10:00:00Z",  # 02:00:00 … 02:59:59 and 03:00:00 PDT
        "2027-03-14T10:00:01Z",
        "2027-03-14T10:00:02Z",
    ]
    assert steps[0] <= 6


def test_repeated_hour_is_skipped_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-second schedule must not step through 3,600 repeated wall times one by one."""
    steps = 0
    real_get_next = croniter.get_next

    def counting_get_next(self: croniter, *args: Any, **kwargs: Any) -> Any:
        nonlocal steps
        steps += 1
        return real_get_next(self, *args, **kwargs)

    monkeypatch.setattr(croniter, "get_next", counting_get_next)
    tz = resolve_timezone("America/Los_Angeles")
    fire = next_fire("* * * * * *", tz, parse_datetime("2026-11-01T09:00:00.25Z"))  # 01:00:00.25 PST
    assert fmt_z(fire) == "2026-11-01T10:00:00Z"
    assert steps <= 2


# -- validation --------------------------------------------------------------------------

INVALID = [
    "",
    "   ",
    "* * *",
    "* * * *",
    "1 2 3 4 5 6 7 8",
    "60 * * * *",
    "0 24 * * *",
    "* * * 13 *",
    "* * * 0 *",
    "0 0 0 * *",
    "0 0 32 * *",
    "* * * * 8",
    "61 25 * * *",
    "-1 * * * *",
    "1-60 * * * *",
    "0 0 1 1 * 60",
    "0 0 1 1 * 0 2100",
    "0 0 1 1 * 0 1969",
    "*/0 * * * *",
    "5/0 * * * *",
    "H * * * *",
    "h * * * *",
    "H/5 * * * *",
    "H(0-5) * * * *",
    "0 H * * *",
    "R * * * *",
    "r/5 * * * *",
    "0 0 * * R",
    "@reboot",
    "@every",
    "@every 5m",
    "@daily *",
    "0 0 LW * *",
    "0 0 32W * *",
    "0 0 1,15W * *",
    "0 0 * * L",
    "0 0 * * 5L",
    "0 0 * * 1#6",
    "0 0 * * 1#0",
    "? * * * *",
    "0 0 * ? *",
    "x y z a b",
    "jan * * * *",
    "0 0 * * jan",
    "0 0 ? ? ?x",
    "1,2,,3 * * * *",
    "*/ * * * *",
    "1.5 * * * *",
    "+1 * * * *",
    "\x00 * * * *",
    "١ * * * *",  # an Arabic-Indic digit
    "0\u00a00 * * *",  # a no-break space is not a separator
]


@pytest.mark.parametrize("expr", INVALID)
def test_invalid_expressions(expr: str) -> None:
    with pytest.raises(InvalidSchedule, match=r"^Invalid cron expression$"):
        validate_cron(expr, NOW)


@pytest.mark.parametrize("value", [None, 5, 1.5, b"* * * * *", ["*", "*", "*", "*", "*"]])
def test_non_string_is_invalid(value: object) -> None:
    with pytest.raises(InvalidSchedule, match=r"^Invalid cron expression$"):
        validate_cron(value, NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "expr", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 11 *", "* * 30 2 * *", "0 0 1 1 * 0 2025"]
)
def test_never_fires(expr: str) -> None:
    with pytest.raises(InvalidSchedule, match=r"^Cron expression never fires$"):
        validate_cron(expr, NOW)


def test_never_fires_is_relative_to_now() -> None:
    validate_cron("0 0 1 6 * 0 2027", NOW)
    with pytest.raises(InvalidSchedule, match=r"^Cron expression never fires$"):
        validate_cron("0 0 1 6 * 0 2027", parse_datetime("2027-06-01T00:00:00Z"))


# The expressions that cost the most to decide: ``W`` against a ``#``/``L`` weekday (they never
# meet, and croniter walks month by month to prove it), impossible day-of-month sides, and
# year fields over every remaining year. Before the search was bounded, the first took
# 6,000-15,000 croniter field steps (~100 ms) each.
WORST = [
    "0 0 15W * L6",
    "0 23 1 * mon#5",
    "0 0 15W * 1#5,2#5",
    "0 0 30 2 *",
    "0 0 31 2,4,6,9,11 *",
    "* * 15W * L6 * 2027-2099",
    "0 0 15W * L1,L2,L3,L4,L5 0 1970-2099",
    "0 0 15W * L0,L1,L2,L3,L4,L5,L6",
    "0 0 15W * L0,L1,L2,L3,L4,L5,L6 0 2027-2099",
    "0 0 15W * 0#5,1#5,2#5,3#5,4#5,5#5,6#5 0 2027-2099",
    "0 0 29 2 1#5",  # fires, in 2044
    "0 9 31 4,6,9,11 1",  # fires, but its day-of-month side never does
]
STEP_BUDGET = 4_000
"""croniter field steps (``_get_next_nearest_diff``, ``_get_nth_weekday_of_month``,
``_get_nearest_weekday`` calls) one validation may take; the worst found take ~3,000"""


def count_field_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count croniter's per-field search steps from now on: ``[n]``."""
    steps = [0]
    for name in ("_get_next_nearest_diff", "_get_nth_weekday_of_month", "_get_nearest_weekday"):
        real = croniter.__dict__[name].__func__  # staticmethods

        def counting(*args: Any, _real: Any = real) -> Any:
            steps[0] += 1
            return _real(*args)

        monkeypatch.setattr(croniter, name, staticmethod(counting))
    return steps


def fresh(expr: str) -> None:
    """Forget every memo of ``expr`` so the next call searches."""
    cron._template.cache_clear()
    cron._next_fire.cache_clear()
    cron._LAST.clear()


@pytest.mark.parametrize("expr", WORST)
def test_validation_work_is_bounded(expr: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh(expr)
    searches = count_get_next(monkeypatch)
    steps = count_field_steps(monkeypatch)
    try:
        validate_cron(expr, NOW)
    except InvalidSchedule as exc:
        assert exc.message == "Cron expression never fires"
    assert searches[0] <= 2 * (cron.MAX_EMPTY_WINDOWS + 1)
    assert steps[0] <= STEP_BUDGET, steps[0]
    # the same bound holds in any zone and from any reference (the scheduler's planning)
    for zone in ("America/Los_Angeles", "Australia/Lord_Howe"):
        for ref in (NOW, parse_datetime("2099-12-31T23:00:00Z"), parse_datetime("1999-12-31T23:59:59Z")):
            fresh(expr)
            searches[0] = steps[0] = 0
            next_fire(expr, resolve_timezone(zone), ref)
            assert searches[0] <= 2 * (cron.MAX_EMPTY_WINDOWS + 1)
            assert steps[0] <= STEP_BUDGET, (zone, ref, steps[0])


def test_the_longest_worst_expression_is_bounded_and_one_more_character_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At the length bound: the costliest 100-character expression found still validates within
    the budget; at 101 characters it is refused before any search."""
    longest = ",".join(str(m) for m in range(10, 30)) + " 0 15W * L0,L1,L2,L3,L4,L5,L6 0 2027-2099"
    assert len(longest) == 100
    fresh(longest)
    steps = count_field_steps(monkeypatch)
    with pytest.raises(InvalidSchedule, match=r"^Cron expression never fires$"):
        validate_cron(longest, NOW)
    assert 0 < steps[0] <= STEP_BUDGET
    steps[0] = 0
    with pytest.raises(InvalidSchedule, match=r"^Cron expression is too long$"):
        validate_cron("0" + longest, NOW)
    assert steps[0] == 0


def test_bounded_search_agrees_with_one_long_croniter_search() -> None:
    """Skipping the years whose calendar is known to hold no match never skips a fire: the next
    fire (UTC) of rare expressions equals what one croniter search over the whole range finds."""
    rng = random.Random(20261203)
    doms = ["*", "29", "30", "31", "L", "13", "15W", "1W", "31W", "29,30"]
    months = ["*", "2", "2,4", "4,6,9,11", "*/11", "12"]
    dows = ["*", "1", "1#5", "5#2", "L6", "0#5,6#5", "L1", "mon#1"]
    years = ["", " 0 *", " 0 2030-2099/7", " 0 2044,2072,2096", " 0 2027-2099/3"]
    utc = resolve_timezone("UTC")
    for _ in range(150):
        expr = f"0 12 {rng.choice(doms)} {rng.choice(months)} {rng.choice(dows)}{rng.choice(years)}"
        try:
            reference = croniter(expr, datetime(2026, 11, 24, 10), max_years_between_matches=130)
        except Exception:
            continue
        try:
            want: Any = reference.get_next(datetime)
        except CroniterBadDateError:
            want = None
        if want is not None and want.year >= 2100:
            want = None
        got = next_fire(expr, utc, NOW)
        assert (fmt_z(got) if got else None) == (
            fmt_z(from_datetime(want.replace(tzinfo=UTC))) if want else None
        ), expr


def test_too_long_is_checked_first() -> None:
    longest = "00" + ",0" * 45 + " 0 * * *"
    assert len(longest) == 100
    validate_cron(longest, NOW)
    for expr in (longest + " ", "x" * 101, "0 " * 51, "0 0 30 2 *" + " " * 91):
        with pytest.raises(InvalidSchedule, match=r"^Cron expression is too long$"):
            validate_cron(expr, NOW)


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 29 2 *",
        "0 0 L 2 *",
        "0 9 * * 1-5",
        "*/5 * * * *",
        "0 0 1 1 * 30",
        "0 0 1 1 * 0 2099",
        "0 0 15W * *",
        "0 0 * * 1#2",
        "0 0 * * L5",
        "0 0 ? * mon-FRI",
        "@yearly",
        "@Weekly",
        " 0 9 * * * ",
    ],
)
def test_valid_expressions(expr: str) -> None:
    validate_cron(expr, NOW)


def test_odd_strings_only_ever_raise_invalid_schedule() -> None:
    rng = random.Random(20261124)
    pieces = [
        *"*?/-,#LlWwHhRr0123456789@ \t\n\x00ü٣",
        "jan",
        "MON",
        "sun",
        "60",
        "99999999999999999999",
        "L5",
        "15W",
        "1#2",
        "@daily",
        "(0-5)",
    ]
    zones = [resolve_timezone(z) for z in ("UTC", "America/Los_Angeles", "Australia/Lord_Howe")]
    accepted = 0
    for _ in range(3000):
        fields = rng.choice([1, 4, 5, 5, 5, 6, 7, 8])
        expr = " ".join("".join(rng.choices(pieces, k=rng.randint(1, 4))) for _ in range(fields))
        try:
            validate_cron(expr, NOW)
        except InvalidSchedule as exc:
            assert exc.message in {
                "Invalid cron expression",
                "Cron expression is too long",
                "Cron expression never fires",
            }
            continue
        accepted += 1
        for tz in zones:
            fire = next_fire(expr, tz, NOW)
            assert fire is None or fire > NOW
    assert accepted > 0  # the generator also produces valid expressions


# -- timezones ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("UTC", "UTC"),
        ("utc", "UTC"),
        ("America/New_York", "America/New_York"),
        ("america/new_york", "America/New_York"),
        ("AMERICA/NEW_YORK", "America/New_York"),
        ("US/Pacific", "US/Pacific"),
        ("us/pacific", "US/Pacific"),
        ("EST", "EST"),
        ("Etc/GMT+5", "Etc/GMT+5"),
        ("GMT", "GMT"),
        ("Europe/Kyiv", "Europe/Kyiv"),
    ],
)
def test_timezones(name: str, key: str) -> None:
    assert resolve_timezone(name).key == key


def test_legacy_aliases_have_their_rules() -> None:
    # Etc/GMT+5 is UTC-5 (POSIX sign), EST is fixed UTC-5, US/Pacific follows LA
    assert nf("0 9 * * *", "Etc/GMT+5", "2026-11-24T10:00:00Z") == "2026-11-24T14:00:00Z"
    assert nf("0 9 * * *", "EST", "2027-07-01T00:00:00Z") == "2027-07-01T14:00:00Z"
    assert nf("30 1 * * *", "us/pacific", "2026-11-01T07:00:00Z") == "2026-11-01T08:30:00Z"


@pytest.mark.parametrize(
    "name",
    ["+05:00", "-08:00", "UTC+5", "GMT+5", "", " UTC", "UTC ", "Mars/Base", "America", "localtime", "\x00"],
)
def test_unknown_timezones(name: str) -> None:
    with pytest.raises(InvalidTimezone) as info:
        resolve_timezone(name)
    assert info.value.message == f"Unknown timezone: '{name}'"


@pytest.mark.parametrize("value", [None, 5, ["UTC"]])
def test_non_string_timezone(value: object) -> None:
    with pytest.raises(InvalidTimezone):
        resolve_timezone(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expr", "tz", "first", "expected"),
    [
        # every second of 1 January only, found 36 h later: 86,400 fires were missed
        ("* * 1 1 * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T23:59:59Z"),
        ("*/5 * * * *", "UTC", "2025-12-29T00:00:00Z", None),
        ("0 9 * * 1-5", "America/New_York", "2025-11-03T14:00:00Z", None),
        ("30 2 * * *", "Europe/Berlin", "2024-12-01T01:30:00Z", None),  # both DST changes
        ("0 0 29 2 *", "UTC", "2016-02-29T00:00:00Z", None),  # leap days only
    ],
)
def test_latest_slot_is_a_bounded_search(
    expr: str, tz: str, first: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The latest missed fire is found by bisection: the same answer as walking every fire,
    in a bounded number of searches however many fires were missed."""
    from cuefast.engine import scheduler

    zone = cron.resolve_timezone(tz)
    now = parse_datetime("2026-01-02T12:00:00.5Z")
    first_us = parse_datetime(first)
    assert cron.next_fire(expr, zone, first_us - 1) == first_us
    if expected is None:  # few enough fires to walk
        walked, fire = first_us, first_us
        while fire is not None and fire <= now:
            walked, fire = fire, cron.next_fire(expr, zone, fire)
    else:
        walked = parse_datetime(expected)
    steps = 0
    real = cron._Search.next_after

    def counted(self: Any, t: datetime) -> datetime | None:
        nonlocal steps
        steps += 1
        return real(self, t)

    monkeypatch.setattr(cron._Search, "next_after", counted)
    assert scheduler.latest_slot(expr, tz, first_us, now) == walked
    assert steps <= 200, steps
