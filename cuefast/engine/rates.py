"""Rate caps per callback host: when an attempt under a cue's ``delivery.max_per_second`` may go."""

from __future__ import annotations

from cuefast.engine.webhooks import host_key
from cuefast.models import CueConfig
from cuefast.store import Store

MIN_WAIT_US = 1_000
"""a refused attempt waits at least this long"""
MAX_REMEMBERED = 10_000
"""(account, host) slots remembered; past ones are dropped beyond this"""


class HostRates:
    """Asks ``delivery_rate.lua`` for the send slot of an attempt's (account, callback host): one
    window on the account's slot, shared by every dispatcher, so the rate holds across processes.
    A refused attempt is told to come back at the next slot this process has not yet handed out,
    so attempts refused together come back spaced by the interval, not all at once (another
    process's may still collide: refused again, they move on)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._next: dict[tuple[str, str], int] = {}  # (account, host) → the next slot handed out

    async def wait_us(self, account: str, cfg: CueConfig, now_us: int) -> int:
        """0: the attempt may be sent now (its slot is taken); else µs to wait before it may."""
        per_second = cfg.delivery.max_per_second if cfg.delivery is not None else None
        if not per_second:
            return 0
        host = host_key(cfg.callback.url or "")
        ok, at = await self.store.delivery.rate(account, host, per_second, now_us)
        if ok:
            return 0
        key = (account, host)
        slot = max(at, self._next.get(key, 0))
        if len(self._next) >= MAX_REMEMBERED:
            self._next = {k: v for k, v in self._next.items() if v > now_us}
        self._next[key] = slot + 1_000_000 // per_second
        return max(slot - now_us, MIN_WAIT_US)
