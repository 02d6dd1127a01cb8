"""Worker transport (CONTRACT.md §9): claimable work, claims, leases and the batch pull API.

Neighbours: ``claim_input`` (request bodies), ``work_feed`` (long-poll wake-ups),
``engine/reaper`` (scheduler steps: expired leases, unclaimed work, on_failure) and
``worker_registry`` (worker heartbeats, list, delete).

Two doors, one state. The CueAPI endpoints (claimable / claim / claim-by-id / heartbeat) and
cuefast's batch pull (``/v1/worker/claim|outcomes|leases|release``) both go through the same
scripts — ``claims_claim.lua``, ``claims_heartbeat.lua``, ``claims_release.lua``,
``claims_reap_leases.lua`` — so their guarantees are identical: an execution is claimed by
exactly one worker, its lease is real (``lease_seconds``), heartbeats extend it, and only after
it expired (and its worker is not alive, §9.5) can anyone else get it.

Claimable work is indexed per partition in zsets scored by ``scheduled_for``: one per account
(all tasks) and one per task, per agent and per (task, agent), so a filtered claim reads an
index of exactly the matching work (filter before limit, never a scan). A claim peeks the
oldest entries of every partition in one pipelined read, then claims the chosen number from
each partition's index in one script call per partition, all pipelined in one round trip.

Long-polling claims wait on a per-process ``WorkFeed``: one blocking ``XREAD`` over the
partitions' capped signal streams (``worksig``), written by every script that makes work
claimable; a signal for an account wakes that account's waiters with its partition. Any
number of API processes each run their own feed (streams fan out). A long poll's work is
bounded and proportional to what changed: one full read (task filters × partitions) when it
starts, then one read of only the partitions signalled (or whose known future work — a
``send_at`` fire, which emits no signal — became available), at most one read per
``MIN_PASS_SECONDS``; an idle long poll reads nothing more until it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from cuefast import metrics as m
from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.errors import (
    ClaimFailed,
    CuefastError,
    ExecutionCancelled,
    ExecutionNotClaiming,
    ExecutionNotFound,
    NotExecutionOwner,
)
from cuefast.ids import is_execution_id
from cuefast.models import CONFIG_DECODER, Account
from cuefast.months import month_of
from cuefast.services.claim_caps import ClaimCaps
from cuefast.services.claim_input import BatchClaim, worker_id_field
from cuefast.services.outcomes import OutcomeService, ParsedOutcome, parse_outcome
from cuefast.services.usage import count_executions
from cuefast.services.validate import Checker, require_object
from cuefast.services.work_feed import Waiter, WorkFeed
from cuefast.store import Status, Store
from cuefast.store.claims import Claim, ClaimRequest, WorkIndex
from cuefast.times import fmt_offset, fmt_z

log = logging.getLogger(__name__)

MAX_BATCH_ITEMS = 500
MIN_PASS_SECONDS = 0.1
"""a long poll re-reads at most this often, whatever the rate of signals (they coalesce)"""
_CLAIMABLE = ("pending", "retry_ready")
_US = 1_000_000

Filter = tuple[str | None, str | None]
"""(task, agent) of a claim; None = any"""


def claim_wire(c: Claim) -> dict[str, Any]:
    """One claimed execution as ``POST /v1/worker/claim`` answers it."""
    return {
        "execution_id": c.execution_id,
        "cue_id": c.cue_id,
        "cue_name": c.cue_name,
        "task": c.task,
        "scheduled_for": fmt_z(c.scheduled_for),
        "payload": msgspec.Raw(c.payload),
        "attempt": c.attempt,
        "lease_expires_at": fmt_z(c.lease_until),
    }


class WorkService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        outcomes: OutcomeService,
        metrics: m.Metrics | None = None,
    ) -> None:
        self.metrics = metrics or m.Metrics()
        self.store = store
        self.settings = settings
        self.clock = clock
        self.outcomes = outcomes
        self.lease_us = settings.worker_lease_seconds * _US
        self.feed = WorkFeed(store)
        self.caps = ClaimCaps(store, clock)

    async def close(self) -> None:
        await self.feed.close()

    def _every(self, account: Account) -> Sequence[int]:
        """The partitions the account may have work on: those its bitmap names (work lives on its
        cue's partition, and the bit is set before a cue is written), else all."""
        if account.partitions is None:
            return range(self.store.keys.partitions)
        return account.partitions

    # ---- CueAPI door -------------------------------------------------------------
    async def claimable(
        self, account: Account, task: str | None, agent: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """§9.1: claimable now, filters before the limit, oldest ``scheduled_for`` first."""
        indexes = [WorkIndex(p, task, agent) for p in self._every(account)]
        peek = await self.store.claims.peek(account.id, indexes, self.clock.now_us(), limit)
        ids = [a.execution_id for a in peek.available]
        rows = await self.store.executions.fields(ids, ("st", "tr", "acct", "cue", "sf", "pl", "att", "tk"))
        live = [
            (eid, r)
            for eid, r in zip(ids, rows, strict=True)
            if r is not None and r["st"] in _CLAIMABLE and r["tr"] == "worker" and r["acct"] == account.id
        ]
        names = await self.store.cues.fields([str(r["cue"]) for _, r in live], ("name",))
        return [
            {
                "execution_id": eid,
                "cue_id": r["cue"],
                "cue_name": names.get(str(r["cue"]), {}).get("name"),
                "task": r["tk"] or None,
                "scheduled_for": fmt_z(int(r["sf"] or 0)),
                "payload": msgspec.Raw(r["pl"] or "{}"),
                "attempt": int(r["att"] or 0),
            }
            for eid, r in live
        ]

    async def claim_next(
        self, account: Account, worker_id: str, task: str | None, agent: str | None
    ) -> dict[str, Any]:
        """§9.2: the oldest claimable execution (across partitions) matching the filters."""
        claimed = await self.claim(account, worker_id, [(task, agent)], 1, self.lease_us)
        if not claimed:
            raise ClaimFailed("No executions available for claiming")
        return {
            "claimed": True,
            "execution_id": claimed[0].execution_id,
            "lease_seconds": self.settings.worker_lease_seconds,
        }

    async def claim_one(self, account: Account, execution_id: str, worker_id: str) -> dict[str, Any]:
        """§9.3: claim this execution."""
        p = self.store.keys.execution_partition(execution_id)
        if p is None:
            raise ExecutionNotFound()
        now = self.clock.now_us()
        held = self.caps.reservation(account, [(None, None)])
        budget = ""
        if held is not None:
            await held.take(1, now + self.lease_us, now)
            budget = held.budget(held.reserved)
        request = ClaimRequest(WorkIndex(p), 0, [execution_id], budget)
        ((claim,),) = await self.store.claims.claim(account.id, worker_id, self.lease_us, now, [request])
        if held is not None:
            await held.bind([claim] if claim.status is Status.OK else [], now)
        if claim.status is Status.NOT_FOUND:
            raise ExecutionNotFound()
        if claim.status is not Status.OK:
            raise ClaimFailed("Execution not available for claiming")
        await self._after_claim(account, [claim], now, self.lease_us)
        return {
            "claimed": True,
            "execution_id": execution_id,
            "lease_seconds": self.settings.worker_lease_seconds,
        }

    async def heartbeat(self, account: Account, execution_id: str, worker_id: str | None) -> dict[str, Any]:
        """§9.4: extend the lease (ownership checked only when ``X-Worker-Id`` is sent)."""
        p = self.store.keys.execution_partition(execution_id)
        if p is None:
            raise ExecutionNotFound()
        now = self.clock.now_us()
        (beat,) = await self.store.claims.heartbeat(
            p, account.id, worker_id or "", self.lease_us, now_us=now, ids=[execution_id]
        )
        if beat.status is Status.NOT_FOUND:
            raise ExecutionNotFound()
        if beat.cancelled:
            raise ExecutionCancelled()
        if beat.status is Status.WRONG_STATE:
            raise ExecutionNotClaiming()
        if beat.status is Status.CONFLICT:
            raise NotExecutionOwner()
        if beat.lease_until is not None:
            await self.caps.extend(account, [(execution_id, beat.lease_until, beat.task or "")])
        return {
            "execution_id": execution_id,
            "lease_extended_until": fmt_offset(beat.lease_until),
            "acknowledged": True,
        }

    # ---- the claim path shared by both doors ------------------------------------------
    async def claim(
        self, account: Account, worker_id: str, filters: list[Filter], n: int, lease_us: int
    ) -> list[Claim]:
        """Claim up to ``n`` of the oldest available executions matching any filter."""
        every = self._every(account)
        return (await self._claim(account, worker_id, filters, n, lease_us=lease_us, partitions=every))[0]

    async def _claim(
        self,
        account: Account,
        worker_id: str,
        filters: list[Filter],
        n: int,
        *,
        lease_us: int,
        partitions: Iterable[int],
    ) -> tuple[list[Claim], dict[int, int | None]]:
        """Claim up to ``n`` of the oldest available executions matching any filter in these
        partitions; and per partition, when its first matching work not yet available becomes
        available (µs; None: none seen).

        Peek (one pipelined read over every partition × filter index), then one ``claims_claim.lua``
        per chosen index with its count, pipelined; entries lost to a concurrent claimer are
        made up for by another round (bounded)."""
        indexes = [WorkIndex(p, task, agent) for p in partitions for task, agent in filters]
        later: dict[int, int | None] = {w.partition: None for w in indexes}
        out: list[Claim] = []
        now = self.clock.now_us()
        held = self.caps.reservation(account, filters)
        for round_ in range(4):
            want = n - len(out)
            entries, heads = await self.store.claims.peek(account.id, indexes, now, want)
            if round_ == 0:
                for w, head in zip(indexes, heads, strict=True):
                    known = later[w.partition]
                    if head is not None and (known is None or head < known):
                        later[w.partition] = head
            if not entries:
                break
            counts = Counter(e.source for e in entries)
            budgets: dict[int, str] = {}
            if held is not None:  # permits of the capped tasks first (claim_caps)
                await held.take(len(entries), now + lease_us, now)
                if held.blocked and all(t in held.caps for t, _ in filters):
                    break  # every filter names a full capped task: nothing to claim
                budgets = held.split(entries, indexes)
            requests = [ClaimRequest(indexes[i], c, (), budgets.get(i, "")) for i, c in counts.items()]
            res = await self.store.claims.claim(account.id, worker_id, lease_us, now, requests)
            got = [c for claims in res for c in claims if c.status is Status.OK]
            if held is not None:
                await held.bind(got, now)
            out.extend(got)
            if len(out) >= n or len(got) == len(entries) or (not got and len(entries) < want):
                break
        out.sort(key=lambda it: (it.scheduled_for, it.execution_id))
        if out:
            await self._after_claim(account, out, now, lease_us)
        return out, later

    async def _after_claim(self, account: Account, items: list[Claim], now: int, lease_us: int) -> None:
        """First claims count in the monthly executions counter (§13.2) and arm the cue's
        outcome deadline (§11.5). A lease or deadline ending soon wakes the schedulers."""
        await self.store.wake.due(now + lease_us, now)
        self.metrics.inc(m.WORKER_CLAIMS, (), len(items))
        self.metrics.inc(m.EXECUTIONS_DELIVERED, ("worker",), len(items))
        first = [it for it in items if it.attempt == 1]
        for it in first:
            self.metrics.observe_us(m.LATENESS, ("worker",), now - it.fire_at)
        if not first:
            return
        _, cfgs = await asyncio.gather(
            count_executions(self.store, {(account.id, month_of(now)): len(first)}),
            self.store.cues.fields([it.cue_id for it in first], ("cfg",)),
        )
        arm: dict[int, list[tuple[str, int]]] = {}
        for it in first:
            raw = cfgs.get(it.cue_id, {}).get("cfg")
            if not raw:
                continue
            cfg = CONFIG_DECODER.decode(raw)
            if cfg.delivery is not None and cfg.delivery.outcome_deadline_seconds is not None:
                p = self.store.keys.execution_partition(it.execution_id)
                assert p is not None
                arm.setdefault(p, []).append(
                    (it.execution_id, now + cfg.delivery.outcome_deadline_seconds * _US)
                )
        for p, pairs in arm.items():
            await self.store.claims.arm_deadlines(p, pairs, now)
        if arm:
            await self.store.wake.due(min(at for pairs in arm.values() for _, at in pairs), now)

    # ---- batch door (cuefast extension) --------------------------------------------
    async def batch_claim(self, account: Account, req: BatchClaim) -> dict[str, Any]:
        lease_s = req.lease_seconds or self.settings.worker_lease_seconds
        filters: list[Filter] = (
            [(t, req.agent) for t in req.tasks] if req.tasks is not None else [(None, req.agent)]
        )

        def answer(claimed: list[Claim]) -> dict[str, Any]:
            return {"executions": [claim_wire(c) for c in claimed], "lease_seconds": lease_s}

        if not filters:  # an empty task list matches nothing
            return answer([])
        if req.wait_seconds <= 0:
            return answer(await self.claim(account, req.worker_id, filters, req.max, lease_s * _US))
        waiter = await self.feed.subscribe(account.id)
        try:
            return answer(await self._long_poll(account, req, filters, lease_s * _US, waiter))
        finally:
            self.feed.unsubscribe(account.id, waiter)

    async def _long_poll(
        self, account: Account, req: BatchClaim, filters: list[Filter], lease_us: int, waiter: Waiter
    ) -> list[Claim]:
        """Claim, then wait for work until ``req.wait_seconds`` pass. The first pass reads every
        partition; each later pass only the partitions signalled since the previous one (all of
        them when the feed may have lost signals) and those whose earliest not-yet-available
        work (seen by an earlier pass) is available now; at most one pass per MIN_PASS_SECONDS."""
        loop = asyncio.get_running_loop()
        end = loop.time() + req.wait_seconds
        every = self._every(account)
        read: Iterable[int] = every
        waiter.take()
        due: dict[int, int] = {}  # partition → µs its earliest matching work becomes available
        started = loop.time()
        while True:
            if read:
                started = loop.time()
                claimed, later = await self._claim(
                    account, req.worker_id, filters, req.max, lease_us=lease_us, partitions=read
                )
                if claimed:
                    return claimed
                for p, at in later.items():
                    if at is None:
                        due.pop(p, None)
                    else:
                        due[p] = at
            left = end - loop.time()
            if left <= 0:
                return []
            soonest = min(due.values(), default=None)
            if soonest is not None:
                left = min(left, max(0.0, (soonest - self.clock.now_us()) / _US))
            try:
                await asyncio.wait_for(waiter.event.wait(), left)
            except TimeoutError:
                pass
            pause = min(started + MIN_PASS_SECONDS, end) - loop.time()
            if pause > 0:  # signals arriving meanwhile join this pass
                await asyncio.sleep(pause)
            changed = waiter.take()
            now = self.clock.now_us()
            ready = {p for p, at in due.items() if at <= now}
            read = every if changed is None else sorted(changed | ready)

    async def batch_outcomes(self, account: Account, body: Any) -> dict[str, Any]:
        obj = require_object(body)
        c = Checker()
        worker_id_field(c, obj)
        raw = obj.get("outcomes")
        if raw is None:
            c.add("body.outcomes", "Field required")
        elif not isinstance(raw, list):
            c.add("body.outcomes", "Input should be a valid list")
        elif not 1 <= len(raw) <= MAX_BATCH_ITEMS:
            c.add("body.outcomes", f"List should have between 1 and {MAX_BATCH_ITEMS} items")
        c.raise_if_any()
        assert isinstance(raw, list)
        items: list[tuple[str, ParsedOutcome | CuefastError]] = []
        for i, item in enumerate(raw):
            loc = f"body.outcomes.{i}"
            eid = item.get("execution_id") if isinstance(item, dict) else None
            try:
                if not isinstance(eid, str) or not eid:
                    ic = Checker()
                    ic.add(
                        f"{loc}.execution_id",
                        "Field required" if eid is None else "Input should be a valid string",
                    )
                    ic.raise_if_any()
                parsed = parse_outcome(item, loc)
                if self.store.keys.execution_partition(str(eid)) is None:
                    raise ExecutionNotFound()
                items.append((str(eid), parsed))
            except CuefastError as err:  # echoed back only when well-formed (always encodable)
                items.append((eid if is_execution_id(eid) else "", err))
        results = await self.outcomes.report_many(account, items)
        return {
            "results": [
                {
                    "execution_id": eid or None,
                    "outcome_recorded": err is None,
                    "outcome_state": state or None,
                    "error": None if err is None else {"code": err.code, "message": err.message},
                }
                for (eid, _), (state, err) in zip(items, results, strict=True)
            ]
        }

    async def extend_leases(self, account: Account, worker_id: str, ids: list[str]) -> dict[str, Any]:
        by_p, lost = self._by_partition(ids)
        now = self.clock.now_us()
        parts = list(by_p.items())
        results = await asyncio.gather(
            *(
                self.store.claims.heartbeat(p, account.id, worker_id, self.lease_us, now_us=now, ids=pids)
                for p, pids in parts
            )
        )
        extended: list[dict[str, Any]] = []
        cancelled: list[str] = []
        moved: list[tuple[str, int, str]] = []
        for (_, pids), res in zip(parts, results, strict=True):
            for eid, beat in zip(pids, res, strict=True):
                if beat.status is Status.OK:
                    moved.append((eid, beat.lease_until or 0, beat.task or ""))
                    extended.append({"execution_id": eid, "lease_expires_at": fmt_z(beat.lease_until)})
                elif beat.cancelled:  # the overlap policy cancelled it: the worker stops its handler
                    cancelled.append(eid)
                else:
                    lost.append(eid)
        await self.caps.extend(account, moved)
        return {"extended": extended, "lost": lost, "cancelled": cancelled}

    async def release(self, account: Account, worker_id: str, ids: list[str]) -> dict[str, Any]:
        by_p, _ = self._by_partition(ids)
        now = self.clock.now_us()
        released = await asyncio.gather(
            *(self.store.claims.release(p, account.id, worker_id, now, pids) for p, pids in by_p.items())
        )
        ids_back = [eid for got in released for eid in got]
        await self.caps.give(account, ids_back)
        return {"released": len(ids_back)}

    def _by_partition(self, ids: list[str]) -> tuple[dict[int, list[str]], list[str]]:
        by_p: dict[int, list[str]] = {}
        bad: list[str] = []
        for eid in ids:
            p = self.store.keys.execution_partition(eid)
            if p is None:
                bad.append(eid)
            else:
                by_p.setdefault(p, []).append(eid)
        return by_p, bad
