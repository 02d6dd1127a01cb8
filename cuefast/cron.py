"""Cron validation and next-fire maths (CONTRACT.md §7.4), DST-correct.

The dialect is croniter's (5 fields, a 6th for seconds, a 7th for the year, names, ``?``,
``L``, ``W``, ``#``, aliases) minus the extensions the contract rejects: ``H`` hashing,
``R`` random values and ``@reboot``. Fires are searched on naive wall-clock time in the
cue's zone and then mapped to UTC:

* a wall time inside a spring-forward gap fires once, at the first instant after the gap
  (several matches in one gap, and a match at the gap's end, collapse into that fire);
* a wall time that occurs twice (fall-back) fires once, at its first occurrence;
* the result is always strictly after the reference instant.

croniter quirks handled here:

* it gives up after 50 years by default (``0 0 1 1 * 0 2090`` would "never fire" in 2026),
  and the work of one of its searches grows with the span it covers: proving that
  ``0 0 15W * L6`` never fires by walking to 2100 took ~100 ms, and every fire of an
  expression with an impossible day side (``* * 31 4,6,9,11 1``) paid that side's whole
  walk (~15 ms). So croniter is only ever asked to search two calendar years at a time,
  and a longer search skips years whose calendar is known to hold no match (``_Side``):
  any search, and so any validation, makes at most ``MAX_EMPTY_WINDOWS`` croniter calls
  that find nothing per side of the expression, whatever the expression. The two sides of
  a day-of-month/day-of-week OR are searched separately (croniter's own split, done once
  at parse time) so that a side failing inside one two-year window does not hide the
  other side's matches there;
* ``R`` (random) fields pass its validation with a new value on each parse: rejected;
* parsing costs 40-110 µs, so each expression is parsed once into a template and every
  search runs on a shallow copy of it (thread-safe, ~3x faster than parsing again);
* kept as croniter has it (the dialect is croniter's): ``W15`` = ``15W``, ``1-L`` ranges,
  and with ``#``/``W`` the DOM/DOW "OR" keeps that side's condition (``0 0 1 1 1#1`` is
  the first Monday of January only).

Timings (CPython 3.11, 2-core container, ``*/5 * * * *`` and ``0 9 * * 1-5`` in
America/New_York, timeit): an uncached search runs at about 29,000 calls/s (~35 µs: copy of
the parsed template, one croniter step, zone mapping); an expression seen for the first time
adds parsing (~140 µs, ~7,000/s). Memoised calls run at about 6,500,000/s (the same
reference) and 5,000,000/s (a new reference inside the last known span). Proving that an
expression never fires takes at most 15 croniter calls of two calendar years each per side:
the worst expressions found (``W`` against ``#``/``L`` weekdays, such as ``0 0 15W * L6``)
take up to ~3,000 croniter field steps, ~10 ms (6,000-15,000 steps, ~100 ms, when croniter
walked to 2100 in one call).
"""

from __future__ import annotations

import calendar
import copy
import functools
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import islice, takewhile
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterBadDateError, croniter

from cuefast.errors import InvalidSchedule, InvalidTimezone
from cuefast.times import from_datetime, to_datetime

MAX_LENGTH = 100
HORIZON = datetime(2100, 1, 1)
"""Wall-clock end of every search: no fire on or after it is ever returned."""

INVALID = "Invalid cron expression"
TOO_LONG = "Cron expression is too long"
NEVER_FIRES = "Cron expression never fires"

_US = 1_000_000
_ONE_US = timedelta(microseconds=1)
_HORIZON_US = from_datetime(HORIZON.replace(tzinfo=UTC)) + 2 * 86_400 * _US  # after any zone's 2100
_SPAN_YEARS = 1  # croniter's max_years_between_matches: one call searches its start year and the next
MAX_EMPTY_WINDOWS = 15
"""Most croniter calls that find no match in one search of one side of an expression (one per
calendar kind, 14, plus the start's partial window): with at most two sides, the bound of every
search's work."""
_DOM, _DOW, _YEAR = 2, 4, 6  # croniter's field indexes
_MEMO_SIZE = 65_536
_FIELD = re.compile(r"\S+", re.ASCII)  # croniter's own field splitting
_HASHED = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.ASCII | re.IGNORECASE)  # H / R fields
_NOT_ZONES = frozenset({"localtime", "posixrules"})  # host files under the tz path, not IANA
_UTC = ZoneInfo("UTC")


# -- timezones ---------------------------------------------------------------------------


@functools.cache
def _zone_keys() -> dict[str, str]:
    """Lower-cased name → canonical key for every IANA zone and legacy alias."""
    keys = {name.lower(): name for name in available_timezones() if name not in _NOT_ZONES}
    keys.setdefault("utc", "UTC")
    return keys


def resolve_timezone(name: str) -> ZoneInfo:
    """The zone for an IANA name or legacy alias, any case; InvalidTimezone otherwise.

    The returned zone's ``key`` is the canonical spelling; callers store ``name`` as sent.
    """
    if not isinstance(name, str):
        raise InvalidTimezone(name)
    return _resolve(name)


@functools.lru_cache(maxsize=1024)
def _resolve(name: str) -> ZoneInfo:
    key = _zone_keys().get(name.lower())
    if key is None:
        raise InvalidTimezone(name)
    try:
        return ZoneInfo(key)
    except (OSError, ValueError):  # pragma: no cover - listed by zoneinfo but unloadable
        raise InvalidTimezone(name) from None


# -- parsing -----------------------------------------------------------------------------


class _Parsed(NamedTuple):
    """An expression parsed once: one croniter per side of its day-of-month/day-of-week OR
    (one when at most one of the two is restricted), copied per search."""

    sides: tuple[Any, ...]
    clean: bool
    """False: a side keeps a ``#``/``L``-weekday or ``W`` condition; croniter then gives up on
    the whole expression when one side has no match (kept: see ``_Search``)"""
    years: frozenset[int] | None
    """the years the 7th field allows (None: any)"""


@functools.lru_cache(maxsize=4096)
def _template(expr: str) -> _Parsed:
    """``expr`` parsed; InvalidSchedule if outside the dialect."""
    if any(_HASHED.match(field) for field in _FIELD.findall(expr)):
        raise InvalidSchedule(INVALID)
    try:
        it = croniter(expr, datetime(2000, 1, 1), max_years_between_matches=_SPAN_YEARS)
    except Exception:  # croniter raises several unrelated types for bad input
        raise InvalidSchedule(INVALID) from None
    field = it.expanded[_YEAR] if len(it.expanded) > _YEAR else ["*"]
    years = None if "*" in field else frozenset(int(y) for y in field)
    if it.expanded[_DOM][0] == "*" or it.expanded[_DOW][0] == "*":
        return _Parsed((it,), True, years)
    # croniter's own split (croniter._calc_next): each side is the expression with the other
    # day field set to "*", and a match of either side is a match
    sides = []
    for star in (_DOW, _DOM):
        side = copy.copy(it)
        side.expanded = [["*"] if i == star else f for i, f in enumerate(it.expanded)]
        sides.append(side)
    return _Parsed(tuple(sides), not it.nth_weekday_of_month and not it.nearest_weekday, years)


def validate_cron(expr: str, now_us: int) -> None:
    """Raise InvalidSchedule with the contract's text unless ``expr`` can be scheduled.

    Checked in order: a string at most 100 characters long, in the dialect, and with a
    fire after ``now_us`` before 2100.
    """
    if not isinstance(expr, str):
        raise InvalidSchedule(INVALID)
    if len(expr) > MAX_LENGTH:
        raise InvalidSchedule(TOO_LONG)
    _template(expr)
    if next_fire(expr, _UTC, now_us) is None:
        raise InvalidSchedule(NEVER_FIRES)


# -- wall clock ↔ UTC --------------------------------------------------------------------


def _offset(us: int, tz: ZoneInfo) -> timedelta | None:
    return to_datetime(us).astimezone(tz).utcoffset()


def _transition(lo_us: int, hi_us: int, tz: ZoneInfo) -> int:
    """The instant in (lo_us, hi_us] where ``tz`` switches to the offset it has at hi_us.

    Bisects on whole seconds (every tzdata transition is on one); assumes one switch.
    """
    target = _offset(hi_us, tz)
    lo, hi = lo_us // _US, -(-hi_us // _US)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(mid * _US, tz) == target:
            hi = mid
        else:
            lo = mid
    return hi * _US


def _wall_to_us(wall: datetime, tz: ZoneInfo) -> tuple[int, bool]:
    """A naive wall time in ``tz`` → (µs, inside a gap): a repeated time at its first
    occurrence, a time inside a spring-forward gap at the end of the gap."""
    first = wall.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the earlier reading
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return from_datetime(first), False
    # Non-existent: fold=0 reads it with the old offset, fold=1 with the new one, and the
    # transition lies between the two instants.
    a = from_datetime(first)
    b = from_datetime(wall.replace(tzinfo=tz, fold=1).astimezone(UTC))
    return _transition(min(a, b), max(a, b), tz), True


def _search_start(after_us: int, tz: ZoneInfo) -> datetime:
    """The naive wall time to search after: every match up to it maps to ≤ ``after_us``.

    Normally the reading of ``after_us``; inside a repeated (fall-back) span the repeated
    wall times already fired at their first occurrence, so the search resumes where the
    repeat ends.
    """
    local = to_datetime(after_us).astimezone(tz)
    wall = local.replace(tzinfo=None)
    if not local.fold:
        return wall
    first_offset = local.replace(fold=0).utcoffset() or timedelta(0)
    second_offset = local.utcoffset() or timedelta(0)
    repeat_us = (first_offset - second_offset) // _ONE_US
    switch = _transition(after_us - repeat_us, after_us, tz)
    return (to_datetime(switch) + first_offset).replace(tzinfo=None) - _ONE_US


# -- next fires --------------------------------------------------------------------------


def _year_kind(year: int) -> tuple[int, bool]:
    """Years of one kind have the same calendar: weekday of 1 January, and leap or not."""
    return date(year, 1, 1).weekday(), calendar.isleap(year)


class _Side:
    """The search over one side of an expression (or the whole of it).

    croniter searches at most two calendar years per call (``max_years_between_matches=1``:
    the year its search starts in and the next). When a call finds nothing, every year it
    searched in full holds no match, and neither does any year of the same kind (a match
    depends on the year only through its calendar and the year field), so the search resumes
    on 1 January of the next year the year field allows whose kind is not known to be empty.
    There are 14 kinds: one search ends after at most ``MAX_EMPTY_WINDOWS`` empty calls.
    """

    def __init__(self, template: Any, years: frozenset[int] | None) -> None:
        self.it = copy.copy(template)  # shallow: the parsed fields are shared, never mutated
        self.years = years
        self.empty: set[tuple[int, bool]] = set()
        self.known: tuple[datetime, datetime] = (HORIZON, HORIZON)
        """(t, m): the first match after every instant in [t, m) is m (HORIZON: none)"""

    def next_after(self, t: datetime) -> datetime:
        """The first matching wall time strictly after ``t``; HORIZON when none before 2100."""
        if self.known[0] <= t < self.known[1]:
            return self.known[1]
        window, resumed = t, False
        self.it.set_current(t, force=True)
        while True:
            try:
                wall: datetime = self.it.get_next(datetime)
                break
            except CroniterBadDateError:
                pass
            # searched in full: the year after the window's start, and when the window began
            # on a 1 January (a resumption) the year after that too
            first = window.year + 1
            last = first + 1 if resumed else first
            self.empty.update(_year_kind(y) for y in range(first, last + 1) if self._allowed(y))
            year = next(
                (
                    y
                    for y in range(last + 1, HORIZON.year)
                    if self._allowed(y) and _year_kind(y) not in self.empty
                ),
                None,
            )
            if year is None:
                wall = HORIZON
                break
            window, resumed = datetime(year, 1, 1) - _ONE_US, True
            self.it.set_current(window, force=True)
        wall = min(wall, HORIZON)
        self.known = (t, wall)
        return wall

    def _allowed(self, year: int) -> bool:
        return self.years is None or year in self.years


class _Search:
    """Matching wall times of one expression, searched side by side."""

    def __init__(self, expr: str) -> None:
        parsed = _template(expr)
        self.sides = [_Side(side, parsed.years) for side in parsed.sides]
        self.clean = parsed.clean

    def next_after(self, t: datetime) -> datetime | None:
        """The first matching wall time strictly after ``t``, or None when none before 2100.

        A match of either side is a match. As in croniter, a side that keeps a ``#``/``L``
        weekday or a ``W`` condition and has no match ends the whole schedule (croniter gives
        up on the expression when such a side fails; this search asks until 2100, where
        croniter asked up to 129 years ahead)."""
        wall = HORIZON
        for side in self.sides:
            found = side.next_after(t)
            if found >= HORIZON and not self.clean:
                return None
            wall = min(wall, found)
        return None if wall >= HORIZON else wall


def _fires(expr: str, tz: ZoneInfo, after_us: int) -> Iterator[int]:
    """Every fire strictly after ``after_us``, ascending, until 2100 (wall clock)."""
    if after_us >= _HORIZON_US:
        return
    search = _Search(expr)
    cursor = _search_start(after_us, tz)
    last = after_us
    while (wall := search.next_after(cursor)) is not None:
        fire, in_gap = _wall_to_us(wall, tz)
        if fire > last:  # equal: an earlier match of the same gap already fired
            last = fire
            yield fire
        # every match up to the wall time that ends a gap fires at that same instant: skip them
        cursor = to_datetime(fire).astimezone(tz).replace(tzinfo=None) if in_gap else wall


_LAST: dict[tuple[str, ZoneInfo], tuple[int, int]] = {}


def next_fire(expr: str, tz: ZoneInfo, after_us: int) -> int | None:
    """The next fire strictly after ``after_us`` (µs UTC), or None if none before 2100.

    Memoised twice: on the exact arguments (the scheduler asks once per cue sharing a
    schedule and a due time), and on the last answered span per (expression, zone) — for
    every t in [ref, next_fire(ref)) the answer is next_fire(ref), which answers "next
    after now" on creates without a search.
    """
    key = (expr, tz)
    span = _LAST.get(key)
    if span is not None and span[0] <= after_us < span[1]:
        return span[1]
    fire = _next_fire(expr, tz, after_us)
    if fire is not None:
        if len(_LAST) >= _MEMO_SIZE:
            _LAST.clear()
        _LAST[key] = (after_us, fire)
    return fire


@functools.lru_cache(maxsize=_MEMO_SIZE)
def _next_fire(expr: str, tz: ZoneInfo, after_us: int) -> int | None:
    return next(_fires(expr, tz, after_us), None)


def next_fires(expr: str, tz: ZoneInfo, after_us: int, until_us: int, limit: int) -> list[int]:
    """Every fire in (after_us, until_us], oldest first, at most ``limit`` of them."""
    fires = takewhile(lambda fire: fire <= until_us, _fires(expr, tz, after_us))
    return list(islice(fires, max(limit, 0)))


MAX_JITTER_SECONDS = 3600
"""``schedule.jitter_seconds`` is 0–3600 (``services/cue_input.py``)"""
_JITTER_PERSON = b"cuefast-jitter"


def jitter_offset_us(cue_id: str, slot_us: int, jitter_seconds: int) -> int:
    """The delay (µs, in ``[0, jitter_seconds·10⁶)``) of a cue's fire of slot ``slot_us``: a pure
    function of its arguments — BLAKE2b (8-byte digest, personalised ``cuefast-jitter``) of
    ``"<cue id>|<slot µs>"`` read big-endian, modulo the span. The same on every process, after
    restarts and on every scheduler, so a slot planned twice gets one ``fire_at``; the modulo
    bias over a 64-bit digest is below 10⁻⁹. 0 when jitter is off."""
    if jitter_seconds <= 0:
        return 0
    digest = hashlib.blake2b(f"{cue_id}|{slot_us}".encode(), digest_size=8, person=_JITTER_PERSON).digest()
    return int.from_bytes(digest, "big") % (jitter_seconds * _US)
