"""Cron dialect and next-fire maths with real zones (CONTRACT.md §7.4). Expected values by hand."""

from __future__ import annotations

import pytest

from cuefast.cron import next_fire, next_fires, resolve_timezone, validate_cron
from cuefast.errors import InvalidSchedule, InvalidTimezone
from cuefast.times import fmt_z, parse_datetime

NOW = parse_datetime("2026-11-24T10:00:00Z")


def nf(expr: str, zone: str, ref: str) -> str | None:
    return fmt_z(next_fire(expr, resolve_timezone(zone), parse_datetime(ref)))


@pytest.mark.parametrize(
    ("expr", "zone", "ref", "expected"),
    [
        # plain
        ("0 9 * * *", "UTC", "2026-11-24T08:59:59Z", "2026-11-24T09:00:00Z"),
        ("0 9 * * *", "UTC", "2026-11-24T09:00:00Z", "2026-11-25T09:00:00Z"),  # strictly after
        ("0 9 * * 1", "America/New_York", "2026-11-24T10:00:00Z", "2026-11-30T14:00:00Z"),  # Monday 09:00 EST
        ("0 9 * * 1", "America/New_York", "2027-06-01T00:00:00Z", "2027-06-07T13:00:00Z"),  # EDT
        ("0 0 1 1 * 30", "UTC", "2026-11-24T10:00:00Z", "2027-01-01T00:00:30Z"),  # seconds field
        ("0 12 1 6 * 0 2030", "UTC", "2026-11-24T10:00:00Z", "2030-06-01T12:00:00Z"),  # year field
        ("0 0 L * *", "UTC", "2027-02-01T00:00:00Z", "2027-02-28T00:00:00Z"),
        ("0 0 15W * *", "UTC", "2027-05-01T00:00:00Z", "2027-05-14T00:00:00Z"),  # 15 May 2027 is a Saturday
        ("0 0 * * 1#2", "UTC", "2026-12-01T00:00:00Z", "2026-12-14T00:00:00Z"),
        ("0 0 * * L5", "UTC", "2026-12-01T00:00:00Z", "2026-12-25T00:00:00Z"),  # last Friday
        ("0 0 ? * MON", "UTC", "2026-11-24T10:00:00Z", "2026-11-30T00:00:00Z"),
        ("0 0 1 jan *", "UTC", "2026-11-24T10:00:00Z", "2027-01-01T00:00:00Z"),
        ("0 9 1 * 1", "UTC", "2026-11-24T10:00:00Z", "2026-11-30T09:00:00Z"),  # DOM or DOW
        ("0 9 1 * 1", "UTC", "2026-11-30T09:00:00Z", "2026-12-01T09:00:00Z"),
        ("0 0 * * 7", "UTC", "2026-11-24T10:00:00Z", "2026-11-29T00:00:00Z"),  # 7 = Sunday
        ("@hourly", "UTC", "2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z"),
        ("@weekly", "UTC", "2026-11-24T10:00:00Z", "2026-11-29T00:00:00Z"),
        ("@yearly", "UTC", "2026-11-24T10:00:00Z", "2027-01-01T00:00:00Z"),
        ("0 0 29 2 *", "UTC", "2026-11-24T10:00:00Z", "2028-02-29T00:00:00Z"),
        # spring forward, America/Los_Angeles 2027-03-14 02:00 → 03:00 (10:00Z)
        ("30 2 * * *", "America/Los_Angeles", "2027-03-14T05:00:00Z", "2027-03-14T10:00:00Z"),
        ("30 2 * * *", "America/Los_Angeles", "2027-03-14T10:00:00Z", "2027-03-15T09:30:00Z"),
        (
            "*/15 * * * *",
            "America/Los_Angeles",
            "2027-03-14T09:50:00Z",
            "2027-03-14T10:00:00Z",
        ),  # gap collapses
        ("*/15 * * * *", "America/Los_Angeles", "2027-03-14T10:00:00Z", "2027-03-14T10:15:00Z"),
        # fall back, America/Los_Angeles 2026-11-01 02:00 PDT → 01:00 PST (09:00Z)
        ("30 1 * * *", "America/Los_Angeles", "2026-11-01T07:00:00Z", "2026-11-01T08:30:00Z"),
        ("30 1 * * *", "America/Los_Angeles", "2026-11-01T08:30:00Z", "2026-11-02T09:30:00Z"),
        ("*/30 * * * *", "America/Los_Angeles", "2026-11-01T07:45:00Z", "2026-11-01T08:00:00Z"),
        ("*/30 * * * *", "America/Los_Angeles", "2026-11-01T08:00:00Z", "2026-11-01T08:30:00Z"),
        (
            "*/30 * * * *",
            "America/Los_Angeles",
            "2026-11-01T08:30:00Z",
            "2026-11-01T10:00:00Z",
        ),  # repeats skipped
        (
            "*/30 * * * *",
            "America/Los_Angeles",
            "2026-11-01T09:10:00Z",
            "2026-11-01T10:00:00Z",
        ),  # ref in repeat
        # Europe/London: 2027-03-28 01:00 GMT → 02:00 BST; 2026-10-25 02:00 BST → 01:00 GMT
        ("30 1 * * *", "Europe/London", "2027-03-27T12:00:00Z", "2027-03-28T01:00:00Z"),
        ("30 1 * * *", "Europe/London", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"),
        ("30 1 * * *", "Europe/London", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"),
        # Australia/Sydney: 2027-04-04 03:00 AEDT → 02:00 AEST; 2026-10-04 02:00 AEST → 03:00 AEDT
        ("30 2 * * *", "Australia/Sydney", "2027-04-03T12:00:00Z", "2027-04-03T15:30:00Z"),
        ("30 2 * * *", "Australia/Sydney", "2026-10-03T12:00:00Z", "2026-10-03T16:00:00Z"),
        ("0 0 30 2 *", "UTC", "2026-11-24T10:00:00Z", None),
    ],
)
def test_next_fire(expr: str, zone: str, ref: str, expected: str | None) -> None:
    assert nf(expr, zone, ref) == expected


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "   ",
        "* * *",
        "1 2 3 4 5 6 7 8",
        "60 * * * *",
        "0 24 * * *",
        "* * * 13 *",
        "* * * * 8",
        "61 25 * * *",
        "*/0 * * * *",
        "H * * * *",
        "H/5 * * * *",
        "@reboot",
        "@every",
        "0 0 LW * *",
        "x y z a b",
        "jan * * * *",
        "0 0 ? ? ?x",
        "\x00 * * * *",
        "-1 * * * *",
        "1-60 * * * *",
        "* * * * MON#9",
    ],
)
def test_invalid_expressions(expr: str) -> None:
    with pytest.raises(InvalidSchedule, match=r"^Invalid cron expression$"):
        validate_cron(expr, NOW)


def test_never_fires_and_too_long() -> None:
    for expr in ("0 0 30 2 *", "0 0 31 4 *", "0 0 31 11 *"):
        with pytest.raises(InvalidSchedule, match=r"^Cron expression never fires$"):
            validate_cron(expr, NOW)
    with pytest.raises(InvalidSchedule, match=r"^Cron expression is too long$"):
        validate_cron("0 " * 51, NOW)
    validate_cron("0 0 29 2 *", NOW)
    validate_cron("0 12 1 6 * 0 2030", NOW)


def test_odd_inputs_never_escape_as_other_errors() -> None:
    for expr in (
        "*" * 100,
        "0 0 1 1 1 1 1",
        "@",
        "1,2,,3 * * * *",
        "*/ * * * *",
        "0-0-0 * * * *",
        "ü * * * *",
        5,
    ):
        try:
            validate_cron(expr, NOW)  # type: ignore[arg-type]
        except InvalidSchedule:
            pass


def test_timezones() -> None:
    assert resolve_timezone("america/new_york").key == "America/New_York"
    assert resolve_timezone("US/Pacific").key == "US/Pacific"
    assert resolve_timezone("utc").key == "UTC"
    assert resolve_timezone("EST").key == "EST"
    for bad in ("+05:00", "UTC+5", "", "Mars/Base", "America/New_York\x00"):
        with pytest.raises(InvalidTimezone):
            resolve_timezone(bad)


def test_next_fires_for_catch_up() -> None:
    tz = resolve_timezone("UTC")
    start = parse_datetime("2026-11-24T10:00:00Z")
    fires = next_fires("*/15 * * * *", tz, start, start + 3600 * 1_000_000, 100)
    assert [fmt_z(f) for f in fires] == [
        "2026-11-24T10:15:00Z",
        "2026-11-24T10:30:00Z",
        "2026-11-24T10:45:00Z",
        "2026-11-24T11:00:00Z",
    ]
    assert len(next_fires("* * * * * *", tz, start, start + 3600 * 1_000_000, 10)) == 10
