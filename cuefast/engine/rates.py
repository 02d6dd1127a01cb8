"""Caps per (account, callback host): ``delivery.max_per_second`` and ``max_concurrency_per_host``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

from cuefast.engine.webhooks import host_key
from cuefast.models import CueConfig
from cuefast.store import Store
from cuefast.store.delivery import Attempt, HostTake
from cuefast.store.scripts import Call

log = logging.getLogger(__name__)

MIN_WAIT_US = 1_000
"""a refused attempt waits at least this long"""
MAX_REMEMBERED = 10_000
"""(account, host) slots remembered; past ones are dropped beyond this"""
HOST_FALLBACK_US = 30_000_000
"""an attempt waiting for a host permit is re-queued after this even if no permit frees for it
(a give lost to a crash): the waiting list is the wake-up, this only the safety net"""


class Give(NamedTuple):
    """A host permit to give back (with the attempt's result: engine/finishes.py)."""

    account: str
    host: str
    cap: int
    eid: str


class _Ask(NamedTuple):
    a: Attempt
    host: str
    per_second: int
    cap: int
    now_us: int
    fut: asyncio.Future[int]


class HostRates:
    """The two caps an attempt's cue may set on its callback host, checked just before sending,
    each on the account's slot and shared by every dispatcher (one account's cues are spread over
    partitions, so neither can live in a partition's script). The attempts that ask in one event
    loop turn (a leased batch starts together) are answered together: one script call per
    (account, host) for all of them, all calls in one round trip (a second one for the permits
    when rate slots were asked too).

    * ``max_per_second``: ``delivery_rate.lua`` gives each attempt the host's next send slot. A
      refused attempt is told to come back at the next slot this process has not yet handed out,
      so attempts refused together come back spaced by the interval (another process's may still
      collide: refused again, they move on).
    * ``max_concurrency_per_host``: ``delivery_host_take.lua`` gives it a permit until its lease
      expires, or lists it as waiting (it is handed back, re-queued after ``HOST_FALLBACK_US``);
      the permit goes back with the attempt's result (``give``: the finish's round trip), and the
      waiters it makes room for get a reserved permit and are moved to their outbox at once
      (``delivery_wake.lua``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._next: dict[tuple[str, str], int] = {}  # (account, host) → the next slot handed out
        self._asks: list[_Ask] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def before(self, a: Attempt, cfg: CueConfig, now_us: int) -> int:
        """0: the attempt may be sent now (its slot / permit taken); else µs before it may be."""
        d = cfg.delivery
        if d is None or not (d.max_per_second or d.max_concurrency_per_host):
            return 0
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        if not self._asks:
            loop.call_soon(self._start_flush)
        host = host_key(cfg.callback.url or "")
        self._asks.append(_Ask(a, host, d.max_per_second or 0, d.max_concurrency_per_host or 0, now_us, fut))
        return await fut

    @staticmethod
    def give(a: Attempt, cfg: CueConfig) -> Give | None:
        """The permit to give back once the attempt's request is over (None: its cue has no cap)."""
        cap = cfg.delivery.max_concurrency_per_host if cfg.delivery is not None else None
        return Give(a.account, host_key(cfg.callback.url or ""), cap, a.eid) if cap else None

    def give_calls(self, gives: list[Give], now_us: int) -> list[Call]:
        """One ``delivery_host_give`` call per (account, host) for these permits."""
        by_host: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for g in gives:
            by_host.setdefault((g.account, g.host), []).append((g.cap, g.eid))
        return [
            self.store.delivery.give_call(acct, host, rows, now_us) for (acct, host), rows in by_host.items()
        ]

    def _start_flush(self) -> None:
        task = asyncio.create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        asks, self._asks = self._asks, []
        now = max(q.now_us for q in asks)
        answers: dict[int, int | BaseException] = {}  # id(ask) → wait µs, or the error
        try:
            rated = [q for q in asks if q.per_second]
            for q, got in zip(rated, await self._rates(rated, now), strict=True):
                if got:
                    answers[id(q)] = got
            await self._takes([q for q in asks if q.cap and id(q) not in answers], now, answers)
        except Exception as exc:
            for q in asks:
                answers.setdefault(id(q), exc)
        for q in asks:
            got = answers.get(id(q), 0)
            if not q.fut.done():
                q.fut.set_exception(got) if isinstance(got, BaseException) else q.fut.set_result(got)

    async def _run(self, calls: list[Call]) -> list[Any]:
        return await self.store.scripts.run_many(calls, partial=True) if calls else []

    async def _rates(self, asks: list[_Ask], now_us: int) -> list[int | BaseException]:
        """Each attempt's wait for its host's send slot (0: taken), one call per (account, host)."""
        groups: dict[tuple[str, str], list[_Ask]] = {}
        for q in asks:
            groups.setdefault((q.a.account, q.host), []).append(q)
        d = self.store.delivery
        calls = [
            d.rate_call(acct, host, [q.per_second for q in g], now_us) for (acct, host), g in groups.items()
        ]
        waits: dict[int, int | BaseException] = {}
        for ((acct, host), g), res in zip(groups.items(), await self._run(calls), strict=True):
            if isinstance(res, Exception):
                waits.update((id(q), res) for q in g)
                continue
            for q, (ok, at) in zip(g, d.rate_reply(res), strict=True):
                waits[id(q)] = 0 if ok else self._refused(acct, host, q.per_second, at, now_us)
        return [waits[id(q)] for q in asks]

    def _refused(self, account: str, host: str, per_second: int, at: int, now_us: int) -> int:
        key = (account, host)
        slot = max(at, self._next.get(key, 0))
        if len(self._next) >= MAX_REMEMBERED:
            self._next = {k: v for k, v in self._next.items() if v > now_us}
        self._next[key] = slot + 1_000_000 // per_second
        return max(slot - now_us, MIN_WAIT_US)

    async def _takes(self, asks: list[_Ask], now_us: int, answers: dict[int, int | BaseException]) -> None:
        """Host permits for these attempts, one call per (account, host); refused ones wait for
        ``HOST_FALLBACK_US`` (their turn wakes them earlier), waiters woken are moved."""
        groups: dict[tuple[str, str], list[_Ask]] = {}
        for q in asks:
            groups.setdefault((q.a.account, q.host), []).append(q)
        d = self.store.delivery
        calls = []
        for (acct, host), g in groups.items():
            rows: list[HostTake] = [(q.cap, q.a) for q in g]
            calls.append(d.take_call(acct, host, rows, now_us))
        woken: list[str] = []
        for g, res in zip(groups.values(), await self._run(calls), strict=True):
            if isinstance(res, Exception):
                answers.update((id(q), res) for q in g)
                continue
            taken, waiters = d.take_reply(res, len(g))
            woken += waiters
            answers.update((id(q), 0 if ok else HOST_FALLBACK_US) for q, ok in zip(g, taken, strict=True))
        if woken:
            try:
                await d.wake(woken, now_us)
            except Exception:  # they come back at their safety-net time, meeting their permit
                log.warning("could not wake %d host-cap waiters", len(woken), exc_info=True)
