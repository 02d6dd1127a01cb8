"""What the pages print: schedules in words, instants in a cue's zone, ages, statuses at a glance."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
TERMINAL_BAD = frozenset({"failed", "missed", "outcome_timeout"})
OUTCOME_BAD = frozenset({"reported_failure", "verification_failed"})


def _int(text: str, low: int, high: int) -> int | None:
    return int(text) if text.isdigit() and low <= int(text) <= high else None


def _days(field: str) -> str | None:
    if field == "1-5":
        return "Monday to Friday"
    if field in ("0,6", "6,0"):
        return "Saturday and Sunday"
    names = []
    for part in field.split(","):
        n = _int(part, 0, 7)
        if n is None:
            return None
        names.append(_DAYS[n % 7])
    return ", ".join(names)


def cron_words(expr: str) -> str:
    """Common cron shapes in English; anything else as "cron <expr>"."""
    parts = expr.split()
    if len(parts) != 5:
        return f"cron {expr}"
    minute, hour, dom, month, dow = parts
    if parts == ["*"] * 5:
        return "every minute"
    if minute.startswith("*/") and _int(minute[2:], 1, 59) and [hour, dom, month, dow] == ["*"] * 4:
        return f"every {int(minute[2:])} minutes"
    m = _int(minute, 0, 59)
    if m is not None and [hour, dom, month, dow] == ["*"] * 4:
        return f"every hour at minute {m}"
    h = _int(hour, 0, 23)
    if m is None or h is None or month != "*":
        return f"cron {expr}"
    return _daily(f"at {h:02d}:{m:02d}", dom, dow) or f"cron {expr}"


def _daily(at: str, dom: str, dow: str) -> str | None:
    if dom == "*" and dow == "*":
        return f"{at} every day"
    if dom == "*":
        days = _days(dow)
        return f"{at} on {days}" if days else None
    day = _int(dom, 1, 31)
    if day is not None and dow == "*":
        return f"{at} on day {day} of every month"
    return None


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def in_zone(text: str | None, tz: str | None) -> str:
    """A wire timestamp shown in ``tz`` ("2026-11-24 09:00 PST"); "—" for none."""
    at = parse_instant(text)
    if at is None:
        return "—"
    local = at.astimezone(zone(tz))
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or tz}"


def schedule_words(schedule: dict[str, Any] | None) -> str:
    if not schedule:
        return "no schedule"
    tz = str(schedule.get("timezone") or "UTC")
    if schedule.get("type") == "once" or schedule.get("at"):
        at = parse_instant(str(schedule.get("at") or ""))
        if at is None:
            return f"once ({tz})"
        local = at.astimezone(zone(tz)) if at.tzinfo else at
        return f"once, on {local.day} {_MONTHS[local.month]} {local.year} at {local:%H:%M} ({tz})"
    return f"{cron_words(str(schedule.get('cron') or ''))} ({tz})"


def age(seconds: float | int | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 120:
        return f"{s} s ago"
    if s < 7200:
        return f"{s // 60} min ago"
    if s < 172_800:
        return f"{s // 3600} h ago"
    return f"{s // 86400} days ago"


def tone(status: str | None) -> str:
    """The CSS class of a status badge: ok, warn, bad or idle."""
    if status in ("success", "reported_success", "verified_success", "active", "delivered"):
        return "ok"
    if status in TERMINAL_BAD or status in ("reported_failure", "verification_failed", "dead"):
        return "bad"
    if status in (
        "paused",
        "retrying",
        "retry_ready",
        "stale",
        "pending_outcome",
        "verification_pending",
        "cancelled",
    ):
        return "warn"
    return "idle"


def failing(execution: dict[str, Any] | None) -> bool:
    """The execution failed: its delivery, or the outcome its agent reported."""
    if not execution:
        return False
    return execution.get("status") in TERMINAL_BAD or execution.get("outcome_state") in OUTCOME_BAD


def delivery_of(execution: dict[str, Any] | None) -> str:
    """The delivery half of an execution, apart from its outcome."""
    if not execution:
        return "—"
    status = str(execution.get("status") or "")
    if status in ("skipped", "cancelled"):  # the cue's overlap policy: the reason is the status
        return status
    if execution.get("delivered_at"):
        code = execution.get("http_status")
        return f"delivered{f' (HTTP {code})' if code else ''}"
    if execution.get("claimed_by_worker"):
        return f"claimed by {execution['claimed_by_worker']}"
    if status in ("failed", "missed"):
        return "not delivered"
    return status or "—"


OVERLAP_WORDS = {
    "allow": "allow — every slot runs, even while the previous one is still running",
    "skip": "skip — a slot due while the previous one runs is recorded as skipped",
    "buffer_one": "buffer one — one slot waits for the previous one to finish; more are skipped",
    "cancel_previous": "cancel previous — a slot due cancels the one still running",
}


def overlap_words(policy: str | None) -> str:
    """A cue's overlap policy in words."""
    return OVERLAP_WORDS.get(policy or "allow", str(policy))


def evidence_checks(verification: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A cue's ``verification.checks`` as (words, code) pairs, code "" when the words say all."""
    checks = (verification or {}).get("checks") or {}
    out: list[tuple[str, str]] = []
    if checks.get("external_id_pattern"):
        out.append(("external id matches", str(checks["external_id_pattern"])))
    if checks.get("result_schema") is not None:
        out.append(("result satisfies a JSON Schema", ""))
    if checks.get("result_url_reachable"):
        out.append(("result URL answers a GET with 2xx", ""))
    return out


def outcome_of(execution: dict[str, Any] | None) -> str:
    """The outcome half: what the agent reported (or that it reported nothing yet)."""
    if not execution:
        return "—"
    state = execution.get("outcome_state")
    if state:
        return str(state)
    if execution.get("status") == "outcome_timeout":
        return "none (deadline passed)"
    return "none reported"
