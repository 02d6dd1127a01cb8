"""`GET /v1/usage` (CONTRACT.md §13.1), without HTTP.

The period is the UTC calendar month. Counters live in the account's monthly usage hash
(``executions`` — §13.2 — and the outcome counters ``reported``/``succeeded``/``failed``);
cue counts come from the status indexes; ``rate_limit.current_usage`` is the caller's
window as counted for this very request. Rounding is Python's ``round`` (half to even, as
the reference server), on exact fractions.
"""

from __future__ import annotations

import calendar
from datetime import date
from fractions import Fraction
from typing import Any

from cuefast.clock import Clock
from cuefast.models import Account
from cuefast.services.accounts import current_window
from cuefast.store import Store, month_of
from cuefast.times import to_datetime


def _percent(used: int, limit: int) -> Fraction:
    return Fraction(used * 100, limit) if limit > 0 else Fraction(0)


def usage_report(
    account: Account, *, active: int, paused: int, counters: dict[str, int], window_count: int, now_us: int
) -> dict[str, Any]:
    today = to_datetime(now_us).date()
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    start = date(today.year, today.month, 1).isoformat()
    end = date(today.year, today.month, days_in_month).isoformat()
    cues_used, cue_limit = active + paused, account.cue_limit
    used, limit = counters.get("executions", 0), account.exec_limit
    projected = round(Fraction(used * days_in_month, today.day))
    return {
        "plan": account.plan,
        "billing_period": {"start": start, "end": end, "days_remaining": days_in_month - today.day},
        "period": {"start": start, "end": end},
        "cues": {
            "used": cues_used,
            "active": active,
            "limit": cue_limit,
            "remaining": max(0, cue_limit - cues_used),
            "percent_used": round(_percent(cues_used, cue_limit)),
        },
        "executions": {
            "used": used,
            "limit": limit,
            "remaining": max(0, limit - used),
            "percent_used": round(_percent(used, limit)),
            "percentage": float(round(_percent(used, limit), 1)),
            "projected_month_end": projected,
            "will_exceed_limit": projected >= limit,
        },
        "outcomes": {
            "reported": counters.get("reported", 0),
            "succeeded": counters.get("succeeded", 0),
            "failed": counters.get("failed", 0),
        },
        "rate_limit": {
            "requests_per_minute": account.rate_limit,
            "limit": account.rate_limit,
            "current_usage": window_count,
        },
        "upgrade_url": None,
    }


class UsageService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def usage(self, account: Account) -> dict[str, Any]:
        now = self.clock.now_us()
        active, paused, counters = await self.store.usage_counts(account.id, month_of(now))
        window = current_window()
        return usage_report(
            account,
            active=active,
            paused=paused,
            counters=counters,
            window_count=window.requests if window is not None else 0,
            now_us=now,
        )
