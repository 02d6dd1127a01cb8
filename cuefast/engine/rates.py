"""Caps per (account, callback host): ``delivery.max_per_second`` and ``max_concurrency_per_host``."""

from __future__ import annotations

from cuefast.engine.webhooks import host_key
from cuefast.models import CueConfig
from cuefast.store import Store
from cuefast.store.delivery import Attempt

MIN_WAIT_US = 1_000
"""a refused attempt waits at least this long"""
MAX_REMEMBERED = 10_000
"""(account, host) slots remembered; past ones are dropped beyond this"""
HOST_FALLBACK_US = 30_000_000
"""an attempt waiting for a host permit is re-queued after this even if no permit frees for it
(a give lost to a crash): the waiting list is the wake-up, this only the safety net"""


class HostRates:
    """The two caps an attempt's cue may set on its callback host, checked just before sending,
    each on the account's slot and shared by every dispatcher (one account's cues are spread over
    partitions, so neither can live in a partition's script):

    * ``max_per_second``: ``delivery_rate.lua`` gives the attempt the host's next send slot. A
      refused attempt is told to come back at the next slot this process has not yet handed out,
      so attempts refused together come back spaced by the interval (another process's may still
      collide: refused again, they move on).
    * ``max_concurrency_per_host``: ``delivery_host_take.lua`` gives it a permit until its lease
      expires, or lists it as waiting (it is handed back, re-queued after ``HOST_FALLBACK_US``);
      ``after`` gives the permit back once the request is over, and the waiters it makes room for
      get a reserved permit and are moved to their outbox at once (``delivery_wake.lua``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._next: dict[tuple[str, str], int] = {}  # (account, host) → the next slot handed out

    async def before(self, a: Attempt, cfg: CueConfig, now_us: int) -> int:
        """0: the attempt may be sent now (its slot / permit taken); else µs before it may be."""
        d = cfg.delivery
        if d is None or not (d.max_per_second or d.max_concurrency_per_host):
            return 0
        host = host_key(cfg.callback.url or "")
        if d.max_per_second and (wait := await self._rate(a.account, host, d.max_per_second, now_us)):
            return wait
        cap = d.max_concurrency_per_host
        if cap and not await self.store.delivery.host_take(a, host, cap, now_us):
            return HOST_FALLBACK_US
        return 0

    async def after(self, account: str, eid: str, cfg: CueConfig, now_us: int) -> None:
        """The attempt's request is over (answered, failed or timed out): its host permit back."""
        cap = cfg.delivery.max_concurrency_per_host if cfg.delivery is not None else None
        if cap:
            await self.store.delivery.host_give(account, host_key(cfg.callback.url or ""), cap, eid, now_us)

    async def _rate(self, account: str, host: str, per_second: int, now_us: int) -> int:
        ok, at = await self.store.delivery.rate(account, host, per_second, now_us)
        if ok:
            return 0
        key = (account, host)
        slot = max(at, self._next.get(key, 0))
        if len(self._next) >= MAX_REMEMBERED:
            self._next = {k: v for k, v in self._next.items() if v > now_us}
        self._next[key] = slot + 1_000_000 // per_second
        return max(slot - now_us, MIN_WAIT_US)
