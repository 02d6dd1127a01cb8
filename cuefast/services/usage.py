"""`GET /v1/usage` (CONTRACT.md §13.1), without HTTP.

The period is the UTC calendar month. Counters live in the account's monthly usage hash
(``executions`` — §13.2 — and the outcome counters ``reported``/``succeeded``/``failed``);
cue counts come from the status indexes; ``rate_limit.current_usage`` is the caller's
window as counted for this very request. Rounding is Python's ``round`` (half to even, as
the reference server), on exact fractions.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from datetime import date
from fractions import Fraction
from typing import Any

from cuefast.clock import Clock
from cuefast.models import Account
from cuefast.months import month_of, previous_month
from cuefast.services.accounts import current_window
from cuefast.store import Store
from cuefast.times import to_datetime

GRACE_US = 86_400_000_000
"""the monthly execution limit's grace period (CONTRACT.md §13.2): 24 h"""


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
        active, paused, counters = await self.store.usage.counts(account.id, month_of(now))
        window = current_window()
        return usage_report(
            account,
            active=active,
            paused=paused,
            counters=counters,
            window_count=window.requests if window is not None else 0,
            now_us=now,
        )


async def count_executions(store: Store, counts: Mapping[tuple[str, str], int]) -> None:
    """Add to monthly executions counters, {(account id, "YYYY-MM"): n}: one pipeline per month
    (the account hash's mirror of the counter drops the previous month's)."""
    by_month: dict[str, dict[str, int]] = {}
    for (account_id, month), n in counts.items():
        by_month.setdefault(month, {})[account_id] = n
    for month, per_account in by_month.items():
        await store.usage.count_executions(month, previous_month(month), per_account)


async def count_failed(store: Store, execution_ids: Sequence[str]) -> None:
    """Usage ``failed`` (§13.1) for executions that ended failed, missed or outcome_timeout: each
    one without an outcome adds 1 in its creation month. Two round trips (read, then count); not
    atomic with the status change (a crash in between loses the count, never a state)."""
    if not execution_ids:
        return
    counts: dict[tuple[str, str], int] = {}
    for row in await store.executions.fields(execution_ids, ("acct", "ca", "oc")):
        if row is not None and row["acct"] and row["ca"] and not row["oc"]:
            bucket = (row["acct"], month_of(int(row["ca"])))
            counts[bucket] = counts.get(bucket, 0) + 1
    await store.usage.add("failed", counts)


async def quota_blocked(store: Store, accounts: Sequence[str], now_us: int) -> set[str]:
    """Which of ``accounts`` are past their monthly execution limit's grace period (CONTRACT.md
    §13.2): the month's executions ≥ ``exec_limit`` and 24 h passed since the grace start. The
    first pass that finds an account at its limit starts the grace (racing schedulers agree on
    one start). One pipeline to the auth slot; a second one only when a grace period starts."""
    if not accounts:
        return set()
    month = month_of(now_us)
    blocked: set[str] = set()
    starting: list[str] = []
    for acct, state in zip(accounts, await store.accounts.quota_states(accounts, month), strict=True):
        if state.limit is None or state.used < state.limit:
            continue
        if state.grace_us is None:
            starting.append(acct)
        elif now_us >= state.grace_us + GRACE_US:
            blocked.add(acct)
    if starting:
        started = await store.accounts.start_grace(starting, month, previous_month(month), now_us)
        blocked.update(
            acct for acct, grace in zip(starting, started, strict=True) if now_us >= grace + GRACE_US
        )
    return blocked
