"""The scheduler role: due cues → executions, exactly one per (cue, scheduled_for).

Also: due webhook retries and delayed fires → back into the outbox; passed outcome deadlines →
``outcome_timeout``.

Each pass reads a bounded batch of due cues per partition, computes in Python which
slots fire and the new ``next_run`` (cron maths with zones stays out of Lua), and hands
the batch to ``schedule_materialize.lua``, which creates each execution under its deterministic
id only if it does not exist yet and moves ``next_run`` only if nobody moved it first and the
cue's schedule is the one planned with. So any number of schedulers, restarts and crashes
never create two executions for one slot, and a PATCH racing a pass wins.

One script call per batch: the call that materialises a batch also reads the next one. A cue
this scheduler moved is remembered with its new next run, schedule and account (``_expect``)
and, once due, planned without being read again: the script's compare-and-set on (next run,
schedule) is what makes such a plan valid, so a stale memory costs one skipped cue, which the
same call's read then returns as it really is.

Catch-up after downtime (per cue, ``catch_up``):

* ``latest`` (default) — one execution for the most recent missed slot;
* ``all`` — every missed slot, oldest first, at most ``MAX_CATCH_UP`` per pass;
* ``none`` — missed slots are skipped; the schedule continues at the next future slot.

A slot counts as missed when it is more than ``ON_TIME_US`` behind the pass.

Monthly execution limit (CONTRACT.md §13.2, ``enforce_quotas``): each batch's accounts are
checked with one pipeline to the auth slot (``services.usage.quota_blocked``; the answers are kept for
the rest of the pass, whose ``now`` is fixed); a blocked cue's plan line carries the flag "b"
and ``schedule_materialize.lua`` creates its executions directly as failed.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import random
import sys
import time
from collections.abc import Mapping

from cuefast import cron, tracing
from cuefast import metrics as m
from cuefast.clock import Clock
from cuefast.engine.reaper import WorkReaper
from cuefast.ids import scheduled_execution_id_member
from cuefast.months import month_of
from cuefast.services.usage import count_failed, quota_blocked
from cuefast.store import Store
from cuefast.store.outage import Outage, unavailable
from cuefast.store.schedule import STEPS, DueCue, Materialized
from cuefast.store.wake import MAX_SLEEP_S

log = logging.getLogger(__name__)

BATCH = 500
MAX_CATCH_UP = 1000
ON_TIME_US = 10_000_000
HEARTBEAT_S = 5.0
"""an idle scheduler writes its /health heartbeat this often (stale after 30 s)"""
LISTEN_BLOCK_S = 3.0
"""one blocking read of the wake stream (below redis-py's 5 s socket timeout)"""
MIN_READ_GAP_S = 0.01
"""signals never make a scheduler read the heads more often than this (timed wake-ups do not wait)"""
EXPECT_MAX = 250_000
"""at most this many expected next runs are remembered (``Scheduler._expect``, ~280 B each with
the schedule and account strings shared); beyond it cues are read before they are planned, as a
fresh scheduler reads them"""
STRAGGLER_S = 0.5
"""in the run loop a pass waits this long for each partition's share before the next pass goes
on without it (``Scheduler._fan_out``)"""
WARN_EVERY_S = 5.0
"""partition failures (a node down) are logged at most this often"""
PLAN_RETRY_US = 60_000_000
"""a cue whose schedule cannot be planned is tried again this much later (not every pass)"""


def latest_slot(expr: str, tz_name: str, first_due: int, now: int) -> int:
    """The most recent fire at or before ``now`` (``first_due`` is one such fire).

    Found by bisection over whole seconds — "is there a fire in [t, now]?" is
    ``next_fire(t - 1) <= now``, which only turns false as t grows — so it costs about
    log2(seconds since ``first_due``) bounded ``next_fire`` searches (≤ ~40), however many
    fires were missed: a per-second cron after a day away is not walked fire by fire."""
    tz = cron.resolve_timezone(tz_name)
    best = first_due
    following = cron.next_fire(expr, tz, best)
    if following is None or following > now:
        return best
    best = following
    lo, hi = best // 1_000_000, now // 1_000_000  # a fire ≥ second ``lo`` exists ≤ now
    while lo < hi:
        mid = (lo + hi + 1) // 2
        fire = cron.next_fire(expr, tz, mid * 1_000_000 - 1)
        if fire is not None and fire <= now:
            best, lo = fire, max(mid, fire // 1_000_000)
        else:
            hi = mid - 1
    return best


@functools.lru_cache(maxsize=4096)
def plan_cue(summary: str, due: int, now: int) -> tuple[tuple[int, ...], int | None]:
    """(slots to fire, new next_run) for a cue whose next_run ``due`` ≤ ``now``.

    ``summary`` is the cue's ``sch`` field (``<type>|<timezone>|<catch_up>|<at>|<cron>``);
    cues sharing a schedule and a due time share the answer (memoised).
    """
    kind, tz_name, catch_up, _at, expr, *_jitter = summary.split("|", 5)
    if kind != "recurring" or not expr:
        return (due,), None  # one-time: fires once, however late
    tz = cron.resolve_timezone(tz_name)
    following = cron.next_fire(expr, tz, due)
    if following is None or following > now:  # at most this one slot is due
        if catch_up == "none" and now - due > ON_TIME_US:
            return (), following
        return (due,), following
    if catch_up == "all":
        slots = (due, *cron.next_fires(expr, tz, due, now, MAX_CATCH_UP - 1))
        return slots, cron.next_fire(expr, tz, slots[-1])
    last = latest_slot(expr, tz_name, due, now)
    if catch_up == "none":
        return ((last,) if now - last <= ON_TIME_US else ()), cron.next_fire(expr, tz, max(last, now))
    return (last,), cron.next_fire(expr, tz, last)


@functools.lru_cache(maxsize=4096)
def jitter_of(summary: str) -> int:
    """A schedule summary's ``jitter_seconds`` (its optional sixth part; 0 = none)."""
    parts = summary.split("|", 5)
    return int(parts[5]) if len(parts) == 6 and parts[5] else 0


class Scheduler:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        batch: int = BATCH,
        work: WorkReaper | None = None,
        metrics: m.Metrics | None = None,
        enforce_quotas: bool = True,
    ) -> None:
        self.metrics = metrics or m.Metrics()
        self.store = store
        self.clock = clock
        self.outage = Outage(log, "scheduler")
        self.batch = batch
        self.work = work
        """worker transport steps (expired leases, unclaimed work); None: not run by this scheduler"""
        self.enforce_quotas = enforce_quotas
        self._running: dict[int, asyncio.Task[int]] = {}
        """partitions whose share of an earlier pass is still running (``_fan_out``)"""
        self._warned = -WARN_EVERY_S
        self.unclaimed_window_us = (
            None if work is None else work.settings.worker_unclaimed_seconds * 1_000_000
        )
        """CUEFAST_WORKER_UNCLAIMED_SECONDS in µs when this scheduler runs the worker steps (then
        ``due_work`` also wakes it for lease expiries and missed-claim timeouts)"""
        self._expected: dict[int, tuple[list[int], dict[int, list[DueCue]]]] = {}
        """per partition, the cues this scheduler moved, as they were planned, by next run: a heap
        of the next runs and each one's cues (a top-of-minute burst shares one next run: a heap of
        (next run, cue) compared the cues field by field, ~2.6 µs a cue); planned again without a
        read when due (``_cues``)"""
        self._expected_n = 0

    async def tick(
        self, due: Mapping[int, frozenset[str]] | None = None, *, wait_s: float | None = None
    ) -> int:
        """One pass; returns the number of executions created. ``due`` ({partition: steps}, from
        ``store.schedule.due_work``) limits it to the partitions and steps with something due; None runs
        every step of every partition. ``wait_s``: see ``_fan_out`` (None: the pass waits for
        every partition). A span ``scheduler.pass`` while tracing is on."""
        if tracing.tracer is None:
            return await self._tick(due, wait_s)
        with tracing.span(
            "scheduler.pass", {"cuefast.partitions": len(due) if due is not None else -1}
        ) as sp:
            created = await self._tick(due, wait_s)
            sp.set_attribute("cuefast.executions_created", created)
            return created

    async def _tick(self, due: Mapping[int, frozenset[str]] | None, wait_s: float | None) -> int:
        started = time.monotonic()
        now = self.clock.now_us()
        work = dict(due) if due is not None else dict.fromkeys(range(self.store.keys.partitions), STEPS)
        partitions = list(work)
        random.shuffle(partitions)  # several schedulers start on different partitions
        # Partitions run concurrently: Python plans one batch while Redis runs another's script.
        quota: dict[str, bool] = {}  # account → blocked, for this pass (one `now`)
        created = await self._fan_out(partitions, now, quota, work, wait_s)
        self.metrics.inc(m.EXECUTIONS_CREATED, ("scheduled",), created)
        try:
            await self.store.system.record_poller(now, created, int((time.monotonic() - started) * 1000))
        except Exception as exc:  # its node down or refusing writes: the next pass writes it
            if not (why := unavailable(exc)):
                raise
            self._warn("scheduler: /health heartbeat not written (%s)", why)
        return created

    async def _fan_out(
        self,
        partitions: list[int],
        now: int,
        quota: dict[str, bool],
        work: Mapping[int, frozenset[str]],
        wait_s: float | None,
    ) -> int:
        """Each partition's share of a pass as its own task (Python plans one batch while Redis
        runs another's script); the executions created. A partition that fails because its node
        cannot be reached or refuses writes (``unavailable``: a node down, full, busy…) is logged
        and the others' work stands; when every partition failed so, or any failed otherwise, the
        first error is raised once they are done (the loop's ``Outage`` logs it). With
        ``wait_s``, a partition still running after that long (its node failing over, its slot
        half-moved: the store retries) is left running and the pass ends without it; the passes
        leave it out until it ends."""
        tasks = {
            p: asyncio.create_task(self._drain(p, now, quota, work[p]))
            for p in partitions
            if p not in self._running
        }
        if not tasks:
            return 0
        await asyncio.wait(tasks.values(), timeout=wait_s)
        created = 0
        failed: list[tuple[int, BaseException]] = []
        for p, task in tasks.items():
            if not task.done():
                self._running[p] = task
                task.add_done_callback(functools.partial(self._ended, p))
            elif (exc := task.exception()) is not None:
                failed.append((p, exc))
            else:
                created += task.result()
        if failed:
            p, exc = failed[0]
            for _, other in failed:
                if not unavailable(other):
                    raise other  # not a node down: logged with its traceback (the loop backs off)
            if len(failed) == len(tasks):
                raise exc  # the whole store: the loop's outage log (one warning, retried)
            self._warn(
                "scheduler: %d of %d partitions failed this pass (partition %d: %s); the others "
                "are done", len(failed), len(tasks), p, unavailable(exc),
            )  # fmt: skip
        return created

    def _ended(self, p: int, task: asyncio.Task[int]) -> None:
        """A partition's share that outlived its pass has ended: counted, or its error logged."""
        self._running.pop(p, None)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None and (why := unavailable(exc)):
            self._warn("scheduler: partition %d failed (%s)", p, why)
        elif exc is not None:
            log.error("scheduler: partition %d failed", p, exc_info=exc)
        else:
            self.metrics.inc(m.EXECUTIONS_CREATED, ("scheduled",), task.result())

    def _warn(self, message: str, *args: object) -> None:
        """A warning, at most one per ``WARN_EVERY_S`` (a node down fails every pass until its
        replica takes over)."""
        at = time.monotonic()
        if at - self._warned >= WARN_EVERY_S:
            self._warned = at
            log.warning(message, *args)

    async def _drain(self, p: int, now: int, quota: dict[str, bool], steps: frozenset[str]) -> int:
        created = await self._cues(p, now, quota) if "cues" in steps else 0
        while "retries" in steps and await self.store.schedule.move_retries(p, now, self.batch) == self.batch:
            pass
        while "delayed" in steps and await self.store.schedule.move_delayed(p, now, self.batch) == self.batch:
            pass
        while "deadlines" in steps:
            timed_out = await self.store.schedule.expire_deadlines(p, now, self.batch)
            await count_failed(self.store, timed_out)  # usage `outcomes.failed`
            self.metrics.inc(m.OUTCOME_TIMEOUTS, (), len(timed_out))
            if len(timed_out) < self.batch:
                break
        if self.work is not None:
            if "leases" in steps:
                await self.work.reap_leases(p, now, self.batch)
            if "unclaimed" in steps:
                await self.work.expire_unclaimed(p, now, self.batch)
        return created

    async def _blocked(self, due: list[DueCue], now: int, quota: dict[str, bool]) -> set[str]:
        """The batch's accounts past their monthly limit's grace period (empty when quotas are
        off); accounts not yet seen in this pass are read in one pipeline."""
        if not self.enforce_quotas:
            return set()
        unseen = list({c.account_id for c in due if c.account_id and c.account_id not in quota})
        if unseen:
            try:
                blocked = await quota_blocked(self.store, unseen, now)
            except Exception as exc:  # an account's shard down (a cluster failing over): their
                if not unavailable(exc):
                    raise
                self._warn("scheduler: monthly limits not read; not enforced for this batch")
                blocked = set()  # limits are enforced again by the next batch that reads them
                unseen = []
            for acct in unseen:
                quota[acct] = acct in blocked
        return {c.account_id for c in due if quota.get(c.account_id)}

    def _expected_due(self, p: int, now: int) -> list[DueCue]:
        """The cues this scheduler moved to a next run ≤ ``now`` on partition ``p`` (popped: each
        is sent once; the script's CAS drops any that a PATCH or another scheduler moved since)."""
        expected = self._expected.get(p)
        if not expected:
            return []
        heap, by_run = expected
        rows: dict[str, DueCue] = {}
        while heap and heap[0] <= now:
            bucket = by_run.pop(heapq.heappop(heap))
            self._expected_n -= len(bucket)
            for row in bucket:  # the last one remembered for a cue wins
                rows[row.cue_id] = row
        return list(rows.values())

    def _expect(self, p: int, row: DueCue) -> None:
        if self._expected_n < EXPECT_MAX:
            expected = self._expected.get(p)
            if expected is None:
                expected = self._expected[p] = ([], {})
            bucket = expected[1].get(row.due_us)
            if bucket is None:
                expected[1][row.due_us] = [row]
                heapq.heappush(expected[0], row.due_us)
            else:
                bucket.append(row)
            self._expected_n += 1

    async def _cues(self, p: int, now: int, quota: dict[str, bool]) -> int:
        """Materialise partition ``p``'s due cues. Each ``schedule_materialize.lua`` call
        materialises one batch and reads the next: the cues this scheduler expects (it set their
        next run itself: no read needed to plan them) go first, then whatever the reads find
        due (new cues, PATCHed ones, a stale expectation's real state), until a read is short."""
        pending = self._expected_due(p, now)
        reading = True
        created = 0
        while pending or reading:
            chunk, pending = pending[: self.batch], pending[self.batch :]
            read = self.batch if reading and not pending else 0
            done = await self._materialize(p, now, quota, chunk, read)
            created += done.created
            if read:
                pending, reading = list(done.due), len(done.due) == self.batch
        return created

    async def _materialize(
        self, p: int, now: int, quota: dict[str, bool], due: list[DueCue], read: int
    ) -> Materialized:
        blocked = await self._blocked(due, now, quota)
        words: list[str] = []  # the plan: per cue, its words (schedule_materialize.lua's header)
        members: list[bytes] = []  # each slot's index member, in plan order
        for row in due:
            cue_id, due_at, summary, acct = row
            if not summary:
                words += [cue_id, str(due_at), "", "-", "0"]  # gone: the script drops the due entry
                continue
            try:
                slots, new_nr = plan_cue(summary, due_at, now)
            except Exception:  # a cue that cannot be planned must not stop the others
                log.exception("cannot plan cue; trying again in 60 s", extra={"cue_id": cue_id})
                words += [cue_id, str(due_at), summary, str(now + PLAN_RETRY_US), "0"]  # due again later
                continue
            count = f"{len(slots)}b" if blocked and acct in blocked else str(len(slots))
            jitter = jitter_of(summary)
            if jitter:  # jitter: every slot gets its fire_at as a third word (the "j" flag)
                count += "j"
            words += [cue_id, str(due_at), summary, "-" if new_nr is None else str(new_nr), count]
            if new_nr is not None:  # (the strings many cues share, once)
                self._expect(p, DueCue(cue_id, new_nr, sys.intern(summary), sys.intern(acct)))
            byte = self.store.keys.cue_byte(cue_id)
            for slot in slots:
                eid, member = scheduled_execution_id_member(cue_id, slot, byte)
                words += [str(slot), eid]
                if jitter:
                    words.append(str(slot + cron.jitter_offset_us(cue_id, slot, jitter)))
                members.append(member)
        done = await self.store.schedule.materialize_words(p, now, words, b"".join(members), read)
        if done.blocked:  # usage `outcomes.failed` (§13.1): created failed, without an outcome
            month = month_of(now)
            await self.store.usage.add("failed", {(acct, month): n for acct, n in done.blocked.items()})
        ended: dict[str, list[str]] = {}  # claims cancel_previous ended: their task cap permits back
        for acct, eid in done.ended:
            ended.setdefault(acct, []).append(eid)
        for acct, ids in ended.items():
            await self.store.task_caps.after_reap(acct, [], ids, now)
        return done

    async def run(self, stop: asyncio.Event, max_sleep: float = MAX_SLEEP_S) -> None:
        """Until ``stop`` is set: run a pass when something is due, otherwise sleep until the
        earliest head of the timed sets, at most ``max_sleep``, or until a writer signals that it
        made something due sooner (``store.wake``: a listener blocked on the wake stream). An
        idle scheduler thus reads the heads once per ``max_sleep``; the /health heartbeat is
        written every ``HEARTBEAT_S``. Errors are logged and back off."""
        nudge = asyncio.Event()
        stop_waiter = asyncio.create_task(stop.wait())
        stop_waiter.add_done_callback(lambda _: nudge.set())
        cursor = await self._wake_cursor(stop)
        listener = asyncio.create_task(self._listen(stop, cursor, nudge), name="scheduler-wake")
        try:
            await self._loop(stop, nudge, max_sleep)
        finally:
            for task in (listener, stop_waiter, *self._running.values()):
                task.cancel()
            await asyncio.gather(listener, stop_waiter, *self._running.values(), return_exceptions=True)

    async def _loop(self, stop: asyncio.Event, nudge: asyncio.Event, max_sleep: float) -> None:
        failures = 0
        last_beat = 0.0
        last_read = 0.0
        while not stop.is_set():
            nudge.clear()  # before the read: a signal sent from now on wakes the next sleep
            try:
                now = self.clock.now_us()
                last_read = time.monotonic()
                due, wait_us = await self.store.schedule.due_work(now, self.unclaimed_window_us)
                if due:
                    await self.tick(due, wait_s=STRAGGLER_S)
                    last_beat = time.monotonic()
                    wait_us = 0  # look again after the shortest pause: the next read says how long
                elif time.monotonic() - last_beat >= HEARTBEAT_S:
                    await self.store.system.record_poller(now, 0, 0)
                    last_beat = time.monotonic()
                failures = 0
                self.outage.ok()
                delay = max_sleep if wait_us is None else min(max_sleep, max(wait_us / 1e6, 0.001))
            except Exception as exc:
                self.outage.failed(exc, "scheduler pass failed")
                failures += 1
                delay = min(0.05 * 2**failures, 5.0)
            try:
                await asyncio.wait_for(nudge.wait(), delay)
            except TimeoutError:
                continue  # the time that was due: read at once
            gap = MIN_READ_GAP_S - (time.monotonic() - last_read)
            if gap > 0 and not stop.is_set():  # signals arriving meanwhile join the next read
                await asyncio.sleep(gap)

    async def _wake_cursor(self, stop: asyncio.Event) -> str:
        """The wake stream's newest id, read before the first look at the heads (retried while
        Redis is unreachable)."""
        failures = 0
        while True:
            try:
                cursor = await self.store.wake.cursor()
                self.outage.ok()
                return cursor
            except Exception as exc:
                if stop.is_set():
                    return "$"
                self.outage.failed(exc, "scheduler: cannot read the wake stream")
                failures += 1
                await asyncio.sleep(min(0.05 * 2**failures, 5.0))

    async def _listen(self, stop: asyncio.Event, cursor: str, nudge: asyncio.Event) -> None:
        """Block on the wake stream; every new entry wakes the run loop (after an error too,
        so a signal lost meanwhile costs at most one extra read)."""
        failures = 0
        while not stop.is_set():
            try:
                new = await self.store.wake.wait(cursor, LISTEN_BLOCK_S)
                failures = 0
            except Exception:
                log.warning("scheduler: wake stream read failed", exc_info=True)
                nudge.set()
                failures += 1
                await asyncio.sleep(min(0.05 * 2**failures, 5.0))
                continue
            if new != cursor:
                cursor = new
                nudge.set()
