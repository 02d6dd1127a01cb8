"""Caps per (account, callback host): ``delivery.max_per_second`` and ``max_concurrency_per_host``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

from cuefast.clock import Clock
from cuefast.engine.webhooks import host_key
from cuefast.models import CueConfig
from cuefast.store import Store
from cuefast.store.delivery import Attempt, HostTake
from cuefast.store.scripts import Call

log = logging.getLogger(__name__)

MIN_WAIT_US = 1_000
"""a refused attempt waits at least this long"""
HOLD_US = 2_000_000
"""an attempt whose booked send slot is at most this far waits for it in memory (holding its
lease, which has far more than this left: dispatcher.SEND_MARGIN_US)"""
LEAD_US = 1_000_000
"""one whose slot is farther is handed back to come back this long before its slot (then waits
the rest in memory), so the trip through the delayed set, the scheduler and a new lease does not
make it late"""
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
    book: bool = False


class HostRates:
    """The two caps an attempt's cue may set on its callback host, checked just before sending,
    each on the account's slot and shared by every dispatcher (one account's cues are spread over
    partitions, so neither can live in a partition's script). The attempts that ask in one event
    loop turn (a leased batch starts together) are answered together: one script call per
    (account, host) for all of them, all calls in one round trip (a second one for the permits
    when rate slots were asked too).

    * ``max_per_second``: ``delivery_host_rate.lua`` books each attempt the host's next free slot
      (kept across asks, by execution id and attempt number): ``slot`` books and says how far it
      is (the dispatcher waits for one within ``HOLD_US`` holding no host or global slot, and
      hands back a later one to come back ``LEAD_US`` before it); ``before`` then asks to go,
      consuming the booking (one still ahead is waited for here). So a cap that binds sends at
      its rate, in the order attempts booked, whichever dispatcher holds them; a dispatcher that
      dies holding one leaves its booking to whoever takes the attempt over (lease expiry).
    * ``max_concurrency_per_host``: ``delivery_host_take.lua`` gives it a permit until its lease
      expires, or lists it as waiting (it is handed back, re-queued after ``HOST_FALLBACK_US``);
      the permit goes back with the attempt's result (``give``: the finish's round trip), and the
      waiters it makes room for get a reserved permit and are moved to their outbox at once
      (``delivery_wake.lua``)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock
        self._asks: list[_Ask] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def before(self, a: Attempt, cfg: CueConfig, now_us: int) -> int:
        """0: the attempt may be sent now (its slot / permit taken); else µs before it may be."""
        d = cfg.delivery
        if d is None or not (d.max_per_second or d.max_concurrency_per_host):
            return 0
        host = host_key(cfg.callback.url or "")
        if d.max_per_second:
            for _ in range(3):  # booked, waited for, asked again: it goes (else re-booked, rarely)
                wait = await self._ask(a, host, d.max_per_second, 0, now_us)
                if wait == 0:
                    break
                if wait > HOLD_US:
                    return max(wait - LEAD_US, MIN_WAIT_US)
                await asyncio.sleep(wait / 1e6)  # its own slot: no one else sends in it
                now_us = max(self.clock.now_us(), now_us + wait)
            else:
                return MIN_WAIT_US
        return (
            await self._ask(a, host, 0, d.max_concurrency_per_host, now_us)
            if d.max_concurrency_per_host
            else 0
        )

    async def slot(self, a: Attempt, cfg: CueConfig, now_us: int) -> int:
        """µs until the send slot booked for the attempt under its cue's ``max_per_second`` (0: it
        is due, or the cue has no rate cap): booked now if it has none, never taken — ``before``
        takes it. The dispatcher waits for a near one holding neither a host nor a global slot."""
        d = cfg.delivery
        if d is None or not d.max_per_second:
            return 0
        return await self._ask(a, host_key(cfg.callback.url or ""), d.max_per_second, 0, now_us, book=True)

    async def _ask(
        self, a: Attempt, host: str, per_second: int, cap: int, now_us: int, *, book: bool = False
    ) -> int:
        """One cap's answer for the attempt, asked with the others of this loop turn."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        if not self._asks:
            loop.call_soon(self._start_flush)
        self._asks.append(_Ask(a, host, per_second, cap, now_us, fut, book))
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
        """Each attempt's wait for its host's send slot (0: taken, or due if only booked), one call
        per (account, host, booking only)."""
        groups: dict[tuple[str, str, bool], list[_Ask]] = {}
        for q in asks:
            groups.setdefault((q.a.account, q.host, q.book), []).append(q)
        d = self.store.delivery
        calls = [
            d.rate_call(
                acct, host, [(q.per_second, f"{q.a.eid}:{q.a.attempts + 1}") for q in g], now_us, book=book
            )
            for (acct, host, book), g in groups.items()
        ]
        waits: dict[int, int | BaseException] = {}
        for g, res in zip(groups.values(), await self._run(calls), strict=True):
            if isinstance(res, Exception):
                waits.update((id(q), res) for q in g)
                continue
            for q, (ok, at) in zip(g, d.rate_reply(res), strict=True):
                waits[id(q)] = 0 if ok else max(at - now_us, 0 if q.book else MIN_WAIT_US)
        return [waits[id(q)] for q in asks]

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
