"""Worker transport (CONTRACT.md §9): claimable work, claims, leases, the worker registry, the
batch pull API, and the scheduler steps that reap expired leases and unclaimed work.

Two doors, one state. The CueAPI endpoints (claimable / claim / claim-by-id / heartbeat) and
cuefast's batch pull (``/v1/worker/claim|outcomes|leases|release``) both go through the same
scripts — ``claim.lua``, ``heartbeat.lua``, ``release.lua``, ``lease_reap.lua`` — so their
guarantees are identical: an execution is claimed by exactly one worker, its lease is real
(``lease_seconds``), heartbeats extend it, and only after it expired (and its worker is not
alive, §9.5) can anyone else get it.

Claimable work is indexed per partition in zsets scored by ``scheduled_for``: one per account
(all tasks) and one per task, per agent and per (task, agent), so a filtered claim reads an
index of exactly the matching work (filter before limit, never a scan). A claim peeks the
oldest entries of every partition in one pipelined read, then claims the chosen number from
each partition's index in one script call per partition, all pipelined in one round trip.

Long-polling claims wait on a per-process ``WorkFeed``: one blocking ``XREAD`` over the
partitions' capped signal streams (``worksig``), written by every script that makes work
claimable; a signal for an account wakes that account's waiters, which then claim again.
Any number of API processes each run their own feed (streams fan out), and a waiter also
re-checks at least once a second (work whose ``send_at`` time arrives emits no signal).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import msgspec

from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.errors import (
    ClaimFailed,
    CuefastError,
    ExecutionNotClaiming,
    ExecutionNotFound,
    NotExecutionOwner,
    WorkerNotFound,
)
from cuefast.models import CONFIG_DECODER, Account, CueConfig
from cuefast.outcomes import OutcomeService, ParsedOutcome, parse_outcome
from cuefast.signing import canonical_json, sign
from cuefast.store import Store, month_of
from cuefast.times import fmt_offset, fmt_z
from cuefast.validate import MISSING, Checker, require_object

log = logging.getLogger(__name__)

BATCH = 500
MAX_BATCH_CLAIM = 500
MAX_BATCH_ITEMS = 500
MAX_WAIT_SECONDS = 30.0
RECHECK_SECONDS = 1.0
STALE_SECONDS = 900
_CLAIMABLE = ("pending", "retry_ready")
_US = 1_000_000

Filter = tuple[str | None, str | None]
"""(task, agent) of a claim; None = any"""


class ClaimedItem(msgspec.Struct, kw_only=True):
    """One claimed execution (what ``claim.lua`` returned for it)."""

    execution_id: str
    cue_id: str
    cue_name: str
    scheduled_for: int
    attempt: int
    payload: str
    task: str | None
    lease_expires_at: int

    def wire(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "cue_id": self.cue_id,
            "cue_name": self.cue_name,
            "task": self.task,
            "scheduled_for": fmt_z(self.scheduled_for),
            "payload": msgspec.Raw(self.payload),
            "attempt": self.attempt,
            "lease_expires_at": fmt_z(self.lease_expires_at),
        }


def _item(row: list[Any]) -> ClaimedItem:
    return ClaimedItem(
        execution_id=str(row[1]),
        cue_id=str(row[2]),
        cue_name=str(row[3]),
        scheduled_for=int(row[4]),
        attempt=int(row[5]),
        payload=str(row[6]) or "{}",
        task=str(row[7]) or None,
        lease_expires_at=int(row[8]),
    )


def worker_id_field(c: Checker, obj: dict[str, Any], loc: str = "body.worker_id") -> Any:
    if obj.get("worker_id") is None:
        c.add(loc, "Field required")
        return MISSING
    return c.string(loc, obj["worker_id"], min_len=1, max_len=255)


def _optional_text(c: Checker, obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    checked = c.string(f"body.{name}", value, min_len=1, max_len=255)
    return None if checked is MISSING else str(checked)


def _id_list(c: Checker, obj: dict[str, Any], name: str, max_items: int) -> list[str]:
    value = obj.get(name)
    if value is None:
        c.add(f"body.{name}", "Field required")
        return []
    if not isinstance(value, list):
        c.add(f"body.{name}", "Input should be a valid list")
        return []
    if len(value) > max_items:
        c.add(f"body.{name}", f"List should have at most {max_items} items")
        return []
    out: list[str] = []
    for i, v in enumerate(value):
        checked = c.string(f"body.{name}.{i}", v, max_len=64)
        if checked is not MISSING:
            out.append(str(checked))
    return list(dict.fromkeys(out))


class BatchClaim(msgspec.Struct, kw_only=True):
    worker_id: str
    tasks: list[str] | None = None
    agent: str | None = None
    max: int = 50
    wait_seconds: float = 0.0
    lease_seconds: int | None = None


def parse_batch_claim(body: Any, max_lease: int) -> BatchClaim:
    obj = require_object(body)
    c = Checker()
    worker = worker_id_field(c, obj)
    tasks: list[str] | None = None
    if obj.get("tasks") is not None:
        raw = obj["tasks"]
        if not isinstance(raw, list):
            c.add("body.tasks", "Input should be a valid list")
        elif len(raw) > 100:
            c.add("body.tasks", "List should have at most 100 items")
        else:
            tasks = []
            for i, t in enumerate(raw):
                checked = c.string(f"body.tasks.{i}", t, min_len=1, max_len=255)
                if checked is not MISSING:
                    tasks.append(str(checked))
            tasks = list(dict.fromkeys(tasks))
    agent = _optional_text(c, obj, "agent")
    n = 50 if obj.get("max") is None else c.integer("body.max", obj["max"], ge=1, le=MAX_BATCH_CLAIM)
    wait: Any = 0.0
    if obj.get("wait_seconds") is not None:
        w = obj["wait_seconds"]
        if isinstance(w, bool) or not isinstance(w, int | float):
            c.add("body.wait_seconds", "Input should be a valid number")
        elif not 0 <= w <= MAX_WAIT_SECONDS:
            c.add("body.wait_seconds", "Input should be between 0 and 30")
        else:
            wait = float(w)
    lease: Any = None
    if obj.get("lease_seconds") is not None:
        lease = c.integer("body.lease_seconds", obj["lease_seconds"], ge=1, le=max_lease)
    c.raise_if_any()
    return BatchClaim(
        worker_id=worker, tasks=tasks, agent=agent, max=n, wait_seconds=wait, lease_seconds=lease
    )


class WorkFeed:
    """Wakes long-polling claimers of this process when work becomes claimable.

    One listener task (only while someone waits) blocks on ``XREAD`` over every partition's
    signal stream and sets the events of the accounts named in new entries.
    """

    def __init__(self, store: Store, block_ms: int = 1000) -> None:
        self.store = store
        self.block_ms = block_ms
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def subscribe(self, account_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._waiters.setdefault(account_id, set()).add(ev)
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._listen())
        await self._ready.wait()
        return ev

    def unsubscribe(self, account_id: str, ev: asyncio.Event) -> None:
        waiters = self._waiters.get(account_id)
        if waiters is not None:
            waiters.discard(ev)
            if not waiters:
                del self._waiters[account_id]

    async def _listen(self) -> None:
        positions: list[str] | None = None
        while True:
            try:
                if positions is None:
                    positions = await self.store.signal_positions()
                    self._ready.set()
                if not self._waiters:
                    return
                for p, entry_id, account_id in await self.store.read_signals(positions, self.block_ms):
                    positions[p] = entry_id
                    for ev in self._waiters.get(account_id, ()):
                        ev.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("work feed read failed")
                self._ready.set()  # waiters fall back to their periodic re-check
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None


class WorkService:
    def __init__(self, store: Store, settings: Settings, clock: Clock, outcomes: OutcomeService) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.outcomes = outcomes
        self.lease_us = settings.worker_lease_seconds * _US
        self.feed = WorkFeed(store)
        self._sender: Any = None
        self._notices: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        await self.feed.close()
        await self.flush_notices()
        if self._sender is not None:
            await self._sender.close()
            self._sender = None

    # ---- CueAPI door -------------------------------------------------------------
    async def claimable(
        self, account: Account, task: str | None, agent: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """§9.1: claimable now, filters before the limit, oldest ``scheduled_for`` first."""
        k = self.store.keys
        keys = [k.work_filtered(p, account.id, task, agent) for p in range(k.partitions)]
        entries = await self.store.peek_claimable(keys, self.clock.now_us(), limit)
        ids = [eid for _, eid, _ in entries]
        rows = await self.store.execution_fields(ids, ("st", "tr", "acct", "cue", "sf", "pl", "att", "tk"))
        live = [
            (eid, r)
            for eid, r in zip(ids, rows, strict=True)
            if r is not None and r[0] in _CLAIMABLE and r[1] == "worker" and r[2] == account.id
        ]
        names = await self.store.cue_fields([str(r[3]) for _, r in live], ("name",))
        return [
            {
                "execution_id": eid,
                "cue_id": r[3],
                "cue_name": names.get(str(r[3]), [None])[0],
                "task": r[7] or None,
                "scheduled_for": fmt_z(int(r[4] or 0)),
                "payload": msgspec.Raw(r[5] or "{}"),
                "attempt": int(r[6] or 0),
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
        k = self.store.keys
        p = k.execution_partition(execution_id)
        if p is None:
            raise ExecutionNotFound()
        now = self.clock.now_us()
        res = await self.store.claim(
            [(p, k.work(p, account.id), 0, [execution_id])], account.id, worker_id, self.lease_us, now
        )
        row = res[0][0]
        if int(row[0]) == -1:
            raise ExecutionNotFound()
        if int(row[0]) != 1:
            raise ClaimFailed("Execution not available for claiming")
        await self._after_claim(account, [_item(row)], now)
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
        (code, lx), *_ = await self.store.heartbeat(
            p, account.id, worker_id or "", self.lease_us, now, [execution_id]
        )
        if code == -1:
            raise ExecutionNotFound()
        if code == -2:
            raise ExecutionNotClaiming()
        if code == -3:
            raise NotExecutionOwner()
        return {"execution_id": execution_id, "lease_extended_until": fmt_offset(lx), "acknowledged": True}

    # ---- the claim path shared by both doors ------------------------------------------
    async def claim(
        self, account: Account, worker_id: str, filters: list[Filter], n: int, lease_us: int
    ) -> list[ClaimedItem]:
        """Claim up to ``n`` of the oldest available executions matching any filter.

        Peek (one pipelined read over every partition × filter index), then one ``claim.lua``
        per chosen index with its count, pipelined; entries lost to a concurrent claimer are
        made up for by another round (bounded)."""
        k = self.store.keys
        keys = [
            (p, k.work_filtered(p, account.id, task, agent))
            for task, agent in filters
            for p in range(k.partitions)
        ]
        out: list[ClaimedItem] = []
        now = self.clock.now_us()
        for _ in range(4):
            want = n - len(out)
            entries = await self.store.peek_claimable([key for _, key in keys], now, want)
            if not entries:
                break
            counts = Counter(i for _, _, i in entries)
            requests = [(keys[i][0], keys[i][1], c, ()) for i, c in counts.items()]
            res = await self.store.claim(requests, account.id, worker_id, lease_us, now)
            got = [_item(row) for rows in res for row in rows if int(row[0]) == 1]
            out.extend(got)
            if len(out) >= n or len(got) == len(entries) or (not got and len(entries) < want):
                break
        out.sort(key=lambda it: (it.scheduled_for, it.execution_id))
        if out:
            await self._after_claim(account, out, now)
        return out

    async def _after_claim(self, account: Account, items: list[ClaimedItem], now: int) -> None:
        """First claims count in the monthly executions counter (§13.2) and arm the cue's
        outcome deadline (§11.5)."""
        first = [it for it in items if it.attempt == 1]
        if not first:
            return
        await self.store.count_executions({(account.id, month_of(now)): len(first)})
        cfgs = await self.store.cue_fields([it.cue_id for it in first], ("cfg",))
        arm: dict[int, list[tuple[str, int]]] = {}
        for it in first:
            raw = cfgs.get(it.cue_id, [None])[0]
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
            await self.store.arm_deadlines(p, pairs, now)

    # ---- batch door (cuefast extension) --------------------------------------------
    async def batch_claim(self, account: Account, req: BatchClaim) -> dict[str, Any]:
        lease_s = req.lease_seconds or self.settings.worker_lease_seconds
        filters: list[Filter] = (
            [(t, req.agent) for t in req.tasks] if req.tasks is not None else [(None, req.agent)]
        )
        if not filters:  # an empty task list matches nothing
            return {"executions": [], "lease_seconds": lease_s}
        loop = asyncio.get_running_loop()
        end = loop.time() + req.wait_seconds
        ev: asyncio.Event | None = None
        try:
            while True:
                if req.wait_seconds > 0 and ev is None:
                    ev = await self.feed.subscribe(account.id)
                if ev is not None:
                    ev.clear()
                claimed = await self.claim(account, req.worker_id, filters, req.max, lease_s * _US)
                left = end - loop.time()
                if claimed or ev is None or left <= 0:
                    return {"executions": [it.wire() for it in claimed], "lease_seconds": lease_s}
                try:
                    await asyncio.wait_for(ev.wait(), min(left, RECHECK_SECONDS))
                except TimeoutError:
                    pass
        finally:
            if ev is not None:
                self.feed.unsubscribe(account.id, ev)

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
            except CuefastError as err:
                items.append((str(eid) if isinstance(eid, str) else "", err))
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
            *(self.store.heartbeat(p, account.id, worker_id, self.lease_us, now, pids) for p, pids in parts)
        )
        extended: list[dict[str, Any]] = []
        for (_, pids), res in zip(parts, results, strict=True):
            for eid, (code, lx) in zip(pids, res, strict=True):
                if code == 1:
                    extended.append({"execution_id": eid, "lease_expires_at": fmt_z(lx)})
                else:
                    lost.append(eid)
        return {"extended": extended, "lost": lost}

    async def release(self, account: Account, worker_id: str, ids: list[str]) -> dict[str, Any]:
        by_p, _ = self._by_partition(ids)
        now = self.clock.now_us()
        counts = await asyncio.gather(
            *(self.store.release(p, account.id, worker_id, now, pids) for p, pids in by_p.items())
        )
        return {"released": sum(counts)}

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

    # ---- worker registry (§9.6–§9.8) -------------------------------------------------
    async def worker_heartbeat(self, account: Account, body: Any) -> dict[str, Any]:
        obj = require_object(body)
        c = Checker()
        worker = worker_id_field(c, obj)
        handlers = obj.get("handlers")
        if handlers is not None:
            if not isinstance(handlers, list):
                c.add("body.handlers", "Input should be a valid list")
            else:
                for i, h in enumerate(handlers):
                    c.string(f"body.handlers.{i}", h, max_len=255)
        c.raise_if_any()
        now = self.clock.now_us()
        await self.store.worker_heartbeat(account.id, worker, msgspec.json.encode(handlers).decode(), now)
        return {"acknowledged": True, "server_time": fmt_z(now)}

    async def list_workers(self, account: Account) -> dict[str, Any]:
        now = self.clock.now_us()
        out: list[dict[str, Any]] = []
        for worker_id, last, since, handlers in await self.store.list_workers(account.id):
            age = max(0, (now - last) // _US)
            status = (
                "active"
                if age < self.settings.worker_alive_seconds
                else "stale"
                if age < STALE_SECONDS
                else "dead"
            )
            out.append(
                {
                    "worker_id": worker_id,
                    "last_heartbeat": fmt_z(last),
                    "seconds_since_heartbeat": age,
                    "heartbeat_status": status,
                    "handlers": msgspec.Raw(handlers if handlers != "null" else "[]"),
                    "registered_since": fmt_z(since),
                }
            )
        return {"workers": out}

    async def delete_worker(self, account: Account, worker_id: str) -> None:
        if not await self.store.delete_worker(account.id, worker_id):
            raise WorkerNotFound()

    # ---- scheduler steps ------------------------------------------------------------------
    async def reap_leases(self, p: int, now: int, batch: int = BATCH) -> int:
        """Expired leases of partition ``p`` (§9.5): renewed while the worker is alive and under
        the ceiling; otherwise re-offered as ``retry_ready``, or ``failed`` (+ on_failure) when
        its attempts are exhausted. Returns the number of claims judged."""
        alive_us = self.settings.worker_alive_seconds * _US
        ceiling_us = self.settings.worker_max_claim_seconds * _US
        judged = 0
        for _ in range(100):  # bounded: each round removes or renews what it judged
            rows = await self.store.lease_due(p, batch, now)
            if not rows:
                break
            seen = await self.store.worker_last_seen([(r[1], r[2]) for r in rows])
            cfgs = await self._configs([r[6] for r in rows])
            decisions: list[tuple[str, str, str]] = []
            for eid, acct, worker, cla, lh, att, cue_id, lx, _tb, ls in rows:
                last = seen.get((acct, worker))
                start = max(int(cla or 0), int(lh or 0))
                if last is not None and last >= now - alive_us and now < start + ceiling_us:
                    decisions.append((eid, lx, f"renew:{now + (int(ls) if ls else self.lease_us)}"))
                    continue
                cfg = cfgs.get(cue_id)
                attempts_left = cfg is not None and int(att) < cfg.retry.max_attempts
                decisions.append((eid, lx, "reoffer" if attempts_left else "fail"))
            results = await self.store.lease_reap(p, decisions, now)
            failed = [
                (row[0], row[6], row[1], int(row[5]), "Worker lease expired; max attempts exhausted")
                for row, res in zip(rows, results, strict=True)
                if res == "failed"
            ]
            self._on_failure(failed, cfgs, now)
            judged += len(rows)
            if len(rows) < batch:
                break
        return judged

    async def expire_unclaimed(self, p: int, now: int, batch: int = BATCH) -> int:
        """Claimable executions nobody claimed within CUEFAST_WORKER_UNCLAIMED_SECONDS → missed."""
        cutoff = now - self.settings.worker_unclaimed_seconds * _US
        missed = 0
        for _ in range(100):
            taken, rows = await self.store.missed(p, cutoff, batch, now)
            if rows:
                cfgs = await self._configs([r[1] for r in rows])
                self._on_failure(
                    [
                        (
                            eid,
                            cue_id,
                            acct,
                            int(att),
                            "No worker claimed this execution within timeout window",
                        )
                        for eid, cue_id, acct, att in rows
                    ],
                    cfgs,
                    now,
                )
            missed += len(rows)
            if taken < batch:
                break
        return missed

    async def _configs(self, cue_ids: list[str]) -> dict[str, CueConfig]:
        rows = await self.store.cue_fields(cue_ids, ("cfg",))
        return {c: CONFIG_DECODER.decode(r[0]) for c, r in rows.items() if r[0]}

    # ---- on_failure (§12.1) for worker final failures -----------------------------------
    def _on_failure(
        self, failed: list[tuple[str, str, str, int, str]], cfgs: dict[str, CueConfig], now: int
    ) -> None:
        if failed:
            task = asyncio.create_task(self._escalate(failed, cfgs, now))
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)

    async def flush_notices(self) -> None:
        """Wait for on_failure work started so far (tests; shutdown)."""
        while self._notices:
            await asyncio.gather(*list(self._notices), return_exceptions=True)

    async def _escalate(
        self, failed: list[tuple[str, str, str, int, str]], cfgs: dict[str, CueConfig], now: int
    ) -> None:
        try:
            k = self.store.keys
            pause: dict[int, list[str]] = {}
            for _, cue_id, _, _, _ in failed:
                cfg = cfgs.get(cue_id)
                if cfg is not None and cfg.on_failure.pause and cfg.schedule.type == "recurring":
                    pause.setdefault(k.cue_partition(cue_id), []).append(cue_id)
            for p, ids in pause.items():
                await self.store.pause_cues(p, list(dict.fromkeys(ids)))
            hooks = [f for f in failed if (cfg := cfgs.get(f[1])) is not None and cfg.on_failure.webhook]
            names = await self.store.cue_fields([f[1] for f in hooks], ("name",))
            secrets = await self.store.webhook_secrets([f[2] for f in hooks]) if hooks else {}
            for eid, cue_id, acct, attempts, error in failed:
                cfg = cfgs.get(cue_id)
                if cfg is None:
                    continue
                if cfg.on_failure.email:
                    log.warning(
                        "cue %s failed (execution %s): %s; on_failure e-mail to the account owner",
                        cue_id,
                        eid,
                        error,
                        extra={"cue_id": cue_id, "execution_id": eid, "account_id": acct},
                    )
                if cfg.on_failure.webhook:
                    notice = {
                        "attempts": attempts,
                        "cue_id": cue_id,
                        "cue_name": names.get(cue_id, [None])[0],
                        "dashboard_url": self.settings.dashboard_url or None,
                        "event": "cue.failed",
                        "execution_id": eid,
                        "failed_at": fmt_offset(now),
                        "last_error": error[:500],
                        "last_http_status": None,
                    }
                    await self._notify(cfg.on_failure.webhook, canonical_json(notice), secrets.get(acct, ""))
        except Exception:
            log.exception("on_failure escalation failed")

    async def _notify(self, url: str, body: bytes, secret: str) -> None:
        if self._sender is None:
            from cuefast.dispatcher import Dispatcher  # the SSRF-checked sender

            sender = Dispatcher(self.store, self.settings, self.clock, concurrency=16, per_host=4)
            await sender.start()
            self._sender = sender
        ts = self.clock.now_us() // _US
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "CueAPI/1.0",
            "X-CueAPI-Signature": sign(secret, ts, body),
            "X-CueAPI-Timestamp": str(ts),
        }
        status, error, _ = await self._sender.send(
            url, "POST", body, headers, self.settings.notify_timeout_seconds
        )
        if status is None or not 200 <= status < 300:
            log.warning("on_failure webhook not accepted: %s", error or status)
