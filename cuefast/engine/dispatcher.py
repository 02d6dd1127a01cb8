"""The dispatcher role: outbox stream → signed webhook deliveries, results in Lua.

Each process is one consumer of the ``dispatchers`` group on every partition's outbox.
An attempt is leased (``delivery_start.lua``) before the request and recorded with its
next state (``delivery_finish.lua``: success, pending_outcome, retrying with backoff, or
failed) before the stream entry is acknowledged — so a dispatcher killed mid-delivery
leaves a pending entry that another dispatcher takes over with XAUTOCLAIM once the
attempt is stale (at-least-once; the execution id lets receivers dedupe).

Leases follow each attempt's own timeout: max(``CUEFAST_WEBHOOK_STALE_SECONDS``, the cue's
``delivery.timeout_seconds`` (else ``CUEFAST_WEBHOOK_TIMEOUT_SECONDS``) + 60 s), computed by
the script from the cue's config. An attempt is sent only with its timeout plus
``SEND_MARGIN_US`` of lease left (one that waited behind a busy host is extended first,
fenced), so no other dispatcher can take an execution over while its request may be open.
The lease expiry is the attempt's fencing token: a result is recorded, and a hand-back
applied, only while the leases zset holds exactly that token. An attempt that lost its
lease (it outlived it, and another dispatcher leased the execution again) records
nothing — no status, no usage count, no on_failure — and leaves the stream entry to the
current holder (``cuefast_webhook_attempts_total{status="superseded"}``).

Every attempt reads the cue's current URL, method, headers, timeout and retry policy and the
account's webhook secret; its request is built, SSRF-checked and sent by the process's
``Webhooks`` (engine/webhooks.py, shared with the notice sender). Lateness: from ``fire_at``.

Concurrency (``CUEFAST_DELIVERY_CONCURRENCY`` global, ``CUEFAST_DELIVERY_PER_HOST`` per
callback ``host:port``). A leased attempt first takes a slot of its host; when the host
is saturated it waits in that host's queue holding no global slot, so a host that hangs
holds at most its own bound of requests. Reads are sized so that attempts in memory stay
within the global bound. When queued attempts leave no room to read (other hosts' work
would wait) and a host's oldest queued attempt has waited longer than ``HOST_WAIT_S``, the
host cannot keep up: that host's queue is handed back, and for ``HOST_WAIT_S`` more new
attempts for it are handed back at once. Handing back (``delivery_release.lua``) removes
the lease, acknowledges the stream entry, puts the status back (pending / retry_ready,
no attempt counted) and re-queues the execution through the delayed zset after the time
the host has been congested (1–30 s). So a stuck host costs Redis round trips at a
decreasing rate, never the dispatcher's capacity, and its work is not lost if this
process dies (the lease would expire as usual).

A cue's ``delivery.max_concurrency`` is enforced in the scripts (lib/cue_cap.lua: over it,
QUEUED); its ``max_per_second`` and ``max_concurrency_per_host``, per (account, host), just
before sending, for a batch's attempts together (engine/rates.py; permits given back with the
results, engine/finishes.py).

Graceful stop (``close``). Attempts leased but not sent (queued behind a host, or not
started) are released at once with a fresh outbox entry: another dispatcher delivers them
immediately. Requests already sent are awaited for ``CUEFAST_DELIVERY_SHUTDOWN_GRACE_SECONDS``;
those still running then are cancelled and released the same way. Such a request may have
reached the receiver, so it can be delivered twice — same execution id and attempt number,
as stale recovery would; at-least-once allows it. A release only applies while the attempt
still holds the very lease it took (checked in the script).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid

from cuefast import metrics as m
from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.engine.finishes import Finishes
from cuefast.engine.hosts import HOST_WAIT_S, Host
from cuefast.engine.rates import HOLD_US, LEAD_US, HostRates
from cuefast.engine.webhooks import Webhooks, delivery_request, host_key
from cuefast.models import CONFIG_DECODER, CueConfig
from cuefast.months import month_of
from cuefast.services.outcomes import OutcomeService
from cuefast.services.usage import count_executions, count_failed
from cuefast.store import Status, Store
from cuefast.store.connect import UNREACHABLE
from cuefast.store.delivery import AttemptResult, Lease, OutboxEntry, ReleasedAttempt
from cuefast.store.outage import Outage, unavailable
from cuefast.times import fmt_offset

log = logging.getLogger(__name__)

decode_config = functools.lru_cache(maxsize=4096)(CONFIG_DECODER.decode)
"""a lease's config JSON → CueConfig, memoised (~0.3 µs instead of ~3.5 µs); shared, never changed"""


QUEUED, WAITING, SENDING, FINISHING = range(4)
"""Phases of a leased attempt: behind its host's bound; waiting for a global slot; request
sent (or being sent); result being recorded."""

SEND_MARGIN_US = 30_000_000
"""An attempt is sent only with its timeout plus this much lease left (else it gets a fresh lease
first): no request is still open when another dispatcher may take the execution over."""

UNSIGNED_RETRY_US = 1_000_000  # an attempt that cannot be signed (its shard is down) waits this long


class _Attempt:
    """One leased delivery attempt (what ``delivery_start.lua`` returned for it)."""

    __slots__ = (
        "account",
        "attempts",
        "cfg",
        "config",
        "cue_id",
        "eid",
        "entry_id",
        "fire_at",
        "lease_until",
        "lease_us",
        "name",
        "p",
        "payload",
        "phase",
        "queued_at",
        "scheduled_for",
        "secret",
        "timeout_s",
        "triggered_by",
    )

    def __init__(self, p: int, entry_id: str, eid: str, lease: Lease, now_us: int) -> None:
        self.p, self.entry_id, self.eid, self.cue_id = p, entry_id, eid, lease.cue_id
        self.scheduled_for, self.fire_at = lease.scheduled_for, lease.fire_at  # lateness: from fire_at
        self.attempts = lease.attempts
        self.payload = lease.payload
        self.cfg = lease.config
        self.name = lease.name
        self.account = lease.account_id
        self.triggered_by = lease.triggered_by
        self.secret = ""
        self.lease_until = lease.lease_until  # the fencing token: the exact lease the script stored
        self.lease_us = self.lease_until - now_us  # the lease's length (for an extension)
        self.timeout_s = lease.timeout_s  # this attempt's HTTP timeout (the script's rule)
        self.config: CueConfig | None = None
        self.phase = WAITING
        self.queued_at = 0.0


class Dispatcher:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        webhooks: Webhooks,
        *,
        concurrency: int | None = None,
        per_host: int | None = None,
        batch: int = 1000,
        metrics: m.Metrics | None = None,
    ) -> None:
        self.metrics = metrics or m.Metrics()
        self.store = store
        self.outage = Outage(log, "dispatcher")
        self.usage_outage = Outage(log, "dispatcher: execution counters (kept)")
        self.settings = settings
        self.clock = clock
        self.webhooks = webhooks
        self.concurrency = concurrency or settings.delivery_concurrency
        self.per_host = per_host or settings.delivery_per_host
        self.batch = batch
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.outcomes = OutcomeService(store, clock, self.metrics)
        self.rates = HostRates(store, clock)
        self._slots = asyncio.Semaphore(self.concurrency)
        self._hosts: dict[str, Host] = {}
        self._tasks: dict[asyncio.Task[None], _Attempt] = {}  # attempts past their host's bound
        self._parked = 0  # attempts queued behind a saturated host
        self._room = asyncio.Event()
        self._usage: dict[tuple[str, str], int] = {}
        self.finishes = Finishes(store, clock, self.rates)  # group commit of results (and permits)
        self._sweeper: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()  # hand-backs being written
        self.host_wait_s = HOST_WAIT_S

    async def start(self) -> None:
        await self.store.delivery.ensure_groups()

    async def close(self) -> None:
        """Graceful stop: release attempts not sent, let sent ones finish within the grace
        period, cut off and release the rest, write the counters (the runtime closes the
        process's ``Webhooks``: its notice sender may still be sending)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await asyncio.gather(*self._releases, return_exceptions=True)
        unsent: list[_Attempt] = []
        for host in self._hosts.values():
            unsent.extend(host.queue)
            host.queue.clear()
        self._parked = 0
        for task, a in list(self._tasks.items()):
            if a.phase == WAITING:
                task.cancel()
                unsent.append(a)
        await self._release_safely(unsent)
        running = [t for t, a in self._tasks.items() if a.phase != WAITING]
        if running:
            _, late = await asyncio.wait(running, timeout=self.settings.delivery_shutdown_grace_seconds)
            cut = [self._tasks[t] for t in late if t in self._tasks and self._tasks[t].phase == SENDING]
            for task in late:
                if task not in self._tasks or self._tasks[task].phase == SENDING:
                    task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if cut:
                log.warning("shutdown: %d requests cut off after the grace period, released", len(cut))
            await self._release_safely(cut)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.flush_usage()
        except Exception:
            log.exception("could not write execution counters at shutdown")

    async def run(self, stop: asyncio.Event, *, block_ms: int = 1000, reclaim_every: float = 5.0) -> None:
        from cuefast.engine.notices import NoticeSender  # alert webhooks and on_failure e-mails

        notices = asyncio.create_task(
            NoticeSender(self.store, self.settings, self.clock, self.webhooks).run(stop)
        )
        loop = asyncio.get_running_loop()
        self._sweeper = asyncio.create_task(self._sweep_hosts())
        next_reclaim = loop.time()
        next_flush = loop.time() + 1.0
        started = False  # the groups made: retried with the passes (Redis may be down at start)
        try:
            while not stop.is_set():
                try:
                    if not started:
                        await self.start()
                        started = True
                    if loop.time() >= next_flush:
                        next_flush = loop.time() + 1.0
                        await self.flush_usage(quiet=True)  # a node down: kept, not a loop error
                    if not await self._wait_for_room(stop):
                        break
                    if loop.time() >= next_reclaim:
                        next_reclaim = loop.time() + reclaim_every
                        await self._spawn(
                            await self.store.delivery.reclaim(
                                self.consumer, self._min_idle_ms(), self._per_stream()
                            )
                        )
                        if not await self._wait_for_room(stop):
                            break
                    entries = await self.store.delivery.read(self.consumer, self._per_stream(), block_ms)
                    await self._spawn(entries)  # even when stopping: close() releases them
                    self.outage.ok()
                except Exception as exc:
                    self.outage.failed(exc, "dispatcher loop error")
                    await asyncio.sleep(1.0)
        finally:
            await asyncio.gather(notices, return_exceptions=True)
            with contextlib.suppress(*UNREACHABLE):  # reads still blocking at the stop (a cluster):
                await self._spawn(await self.store.delivery.settle())  # their entries, released by close
            await self.close()  # graceful: queued attempts released, sent ones awaited (see close)

    def _min_idle_ms(self) -> int:
        """XAUTOCLAIM's min idle: the lease at the default timeout (a longer attempt's entry claimed
        earlier is "busy" and stays pending with its new owner; docs/DESIGN.md "Leases")."""
        return max(self.settings.webhook_stale_seconds, self.settings.webhook_timeout_seconds + 60) * 1000

    def _room_left(self) -> int:
        """How many more entries to read: attempts in memory stay within the global bound
        (plus at most one per partition; those queued behind a saturated host are handed
        back within ``host_wait_s``, so a stuck host cannot keep this at zero)."""
        return min(self.batch, self.concurrency - len(self._tasks) - self._parked)

    def _per_stream(self) -> int:
        """The room left spread over the partitions' streams (a count is per stream)."""
        return max(1, -(-self._room_left() // self.store.keys.partitions))

    def _low_water(self) -> int:
        """Read only once this much room is free: fewer, larger batches per script call."""
        return max(1, min(self.batch, self.concurrency // 2))

    async def _wait_for_room(self, stop: asyncio.Event) -> bool:
        """Until there is room to read a batch (True) or ``stop`` is set (False)."""
        while self._room_left() < self._low_water():
            if stop.is_set():
                return False
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), 0.2)
            except TimeoutError:
                pass
        return not stop.is_set()

    async def _spawn(self, entries: list[OutboxEntry]) -> None:
        """Lease a batch (one pipeline of one script per partition), then admit each attempt
        to its host."""
        attempts = await self.start_batch(entries)
        loop = asyncio.get_running_loop()
        back: list[tuple[_Attempt, int]] = []
        for a in attempts:
            delay = self._admit(a, loop.time())
            if delay is not None:
                back.append((a, self.clock.now_us() + delay))
        await self._release(back)

    def _admit(self, a: _Attempt, now: float) -> int | None:
        """Start the attempt if its host has a free slot, else queue it behind the host;
        returns the hand-back delay (µs) when the host is congested instead."""
        try:
            a.config = decode_config(a.cfg)
        except Exception:  # left leased: recovered as stale, like a crash mid-attempt
            log.exception("cannot decode cue config", extra={"execution_id": a.eid})
            return None
        key = host_key(a.config.callback.url or "")
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = Host(key)
        if host.active < self.per_host:
            host.congested_since = 0.0
            self._launch(a, host)
            return None
        if now < host.congested_until:
            return host.hand_back_delay_us(now)
        a.phase, a.queued_at = QUEUED, now
        host.queue.append(a)
        self._parked += 1
        return None

    def _launch(self, a: _Attempt, host: Host) -> None:
        host.active += 1
        a.phase = WAITING
        task = asyncio.create_task(self._guarded(a, host))
        self._tasks[task] = a
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not self._room.is_set() and self._room_left() >= self._low_water():
            self._room.set()  # wake the reader only when a batch fits (not per attempt)

    async def _guarded(self, a: _Attempt, host: Host) -> None:
        held: bool | None = True  # None: queued again behind its host (it holds no place)
        try:
            if held := await self._rate_slot(a, host):
                async with self._slots:
                    await self.attempt(a)
        except Exception:
            log.exception("delivery failed unexpectedly", extra={"execution_id": a.eid})
        finally:
            if held is not None:
                self._leave(host)

    def _leave(self, host: Host) -> None:
        """An attempt gives its place at its host back: the next queued one takes it."""
        host.active -= 1
        if host.queue:
            self._parked -= 1
            self._launch(host.queue.popleft(), host)
        elif host.idle(asyncio.get_running_loop().time()):
            self._hosts.pop(host.key, None)

    async def _rate_slot(self, a: _Attempt, host: Host) -> bool | None:
        """A rate-capped attempt's send slot is booked (engine/rates.py ``slot``); it waits for a
        near one holding neither its host's place nor a global slot (the attempts behind it book
        theirs meanwhile: in order), then takes a place again — or, the host full, goes back to
        the front of its queue (None); a far one is handed back to come back before it (False)."""
        now = self.clock.now_us()
        wait = await self.rates.slot(a, a.config, now) if a.config and a.config.delivery else 0
        if wait > HOLD_US:
            await self._release([(a, now + wait - LEAD_US)])
            return False
        if not wait:
            return True
        host.waiting += 1
        self._leave(host)
        try:
            await asyncio.sleep(wait / 1e6)
        except asyncio.CancelledError:
            host.active += 1  # (given back by the caller: a stop released it)
            raise
        finally:
            host.waiting -= 1
        if host.active < self.per_host:
            host.active += 1
            return True
        a.phase, a.queued_at = QUEUED, asyncio.get_running_loop().time()
        host.queue.appendleft(a)
        self._parked += 1
        return None

    async def _sweep_hosts(self) -> None:
        """Twice per ``host_wait_s``: while attempts queued behind saturated hosts leave no room
        to read (so other hosts' work would wait), hand back the queue of every host whose
        oldest attempt waited longer than ``host_wait_s``. A host that is merely busy while
        there is room keeps its queue: it is served in order, without re-leasing churn."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.host_wait_s / 2)
            now = loop.time()
            back: list[tuple[_Attempt, int]] = []
            starved = self._room_left() < self._low_water()  # queues keep the reader from reading
            for host in list(self._hosts.values()):
                if starved and host.queue and now - host.queue[0].queued_at > self.host_wait_s:
                    host.congested_since = host.congested_since or host.queue[0].queued_at
                    host.congested_until = now + self.host_wait_s
                    at = self.clock.now_us() + host.hand_back_delay_us(now)
                    back.extend((a, at) for a in host.queue)
                    self._parked -= len(host.queue)
                    host.queue.clear()
                elif host.idle(now):
                    self._hosts.pop(host.key, None)
            if back:
                log.info("handing back %d attempts queued behind congested hosts", len(back))
                self._room.set()
                release = asyncio.create_task(self._release(back))
                self._releases.add(release)
                release.add_done_callback(self._released)
                await asyncio.shield(release)  # a stop meanwhile does not cut it short

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releases.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hand-back failed (the leases expire and are recovered)", exc_info=task.exception())

    async def _release_safely(self, attempts: list[_Attempt]) -> None:
        try:
            await self._release([(a, 0) for a in attempts])
        except Exception:  # their leases expire and are recovered as stale
            log.exception("shutdown: could not release %d attempts", len(attempts))

    async def _release(self, items: list[tuple[_Attempt, int]]) -> None:
        """Hand leased, unsent attempts back (``delivery_release.lua``, one call per
        partition): no attempt counted, re-queued at the given µs (0: at once)."""
        if not items:
            return
        by_partition: dict[int, list[ReleasedAttempt]] = {}
        for a, at in items:
            by_partition.setdefault(a.p, []).append(ReleasedAttempt(a.eid, a.entry_id, a.lease_until, at))
        now = self.clock.now_us()
        await asyncio.gather(*(self.store.delivery.release(p, rows, now) for p, rows in by_partition.items()))
        later = [at for _, at in items if at > now]  # re-queued in `delayed`
        if later:
            await self.store.wake.due(min(later), now)

    async def start_batch(self, entries: list[OutboxEntry]) -> list[_Attempt]:
        """Lease the executions of these (partition, stream entry, execution id) entries: one
        script call per partition, all in one pipeline, then one pipeline for the secrets.
        Entries of gone executions are acked."""
        now = self.clock.now_us()
        by_partition: dict[int, list[tuple[str, str]]] = {}
        for p, entry_id, eid in entries:
            if eid:
                by_partition.setdefault(p, []).append((entry_id, eid))
            else:
                await self.store.delivery.ack([(p, entry_id)])
        started = await self.store.delivery.start(
            {p: [eid for _, eid in items] for p, items in by_partition.items()},
            now,
            timeout_s=self.settings.webhook_timeout_seconds,
            stale_s=self.settings.webhook_stale_seconds,
        )
        attempts: list[_Attempt] = []
        drop: list[tuple[int, str]] = []  # gone, or QUEUED behind its cue's cap (a permit re-queues it)
        for p, items in by_partition.items():
            if p not in started:  # its node is down: the entries stay pending (taken over as stale)
                continue
            for (entry_id, eid), res in zip(items, started[p], strict=True):
                if isinstance(res, Lease):
                    attempts.append(_Attempt(p, entry_id, eid, res, now))
                elif res is Status.NOT_FOUND or res is Status.QUEUED:
                    drop.append((p, entry_id))
                # BUSY: a live attempt elsewhere holds it; the entry stays pending
        await self.store.delivery.ack(drop)
        secrets = await self.store.accounts.webhook_secrets([a.account for a in attempts])
        unsigned = [a for a in attempts if a.account in secrets and secrets[a.account] is None]
        if unsigned:  # its account's shard is down (Redis Cluster): handed back for a second
            await self._release([(a, now + UNSIGNED_RETRY_US) for a in unsigned])
            attempts = [a for a in attempts if a not in unsigned]
        for a in attempts:
            a.secret = secrets.get(a.account) or ""
        return attempts

    async def deliver(self, p: int, entry_id: str, eid: str) -> str | None:
        """One attempt for one execution; returns its new status (None if not deliverable)."""
        attempts = await self.start_batch([OutboxEntry(p, entry_id, eid)])
        return await self.attempt(attempts[0]) if attempts else None

    async def attempt(self, a: _Attempt) -> str | None:
        """Send one leased attempt and record its result with the next state."""
        cfg = a.config or decode_config(a.cfg)
        a.phase = SENDING
        if not await self._lease_covers(a):
            self.metrics.inc(m.WEBHOOK_ATTEMPTS, ("superseded",))
            return None  # taken over while it waited: the current holder sends it
        now = self.clock.now_us()  # its host's caps (engine/rates.py): refused, handed back until its turn
        if cfg.delivery and (wait := await self.rates.before(a, cfg, now)):
            await self._release([(a, self.clock.now_us() + wait)])
            return None
        attempt = a.attempts + 1
        body, headers = delivery_request(
            cfg,
            secret=a.secret,
            ts=self.clock.now_us() // 1_000_000,
            cue_id=a.cue_id,
            execution_id=a.eid,
            name=a.name,
            payload=a.payload,
            scheduled_for=fmt_offset(a.scheduled_for) or "",
            attempt=attempt,
        )
        if attempt == 1:
            self.metrics.observe_us(m.LATENESS, ("webhook",), self.clock.now_us() - a.fire_at)
        started = time.perf_counter_ns()
        status, error, response = await self.webhooks.send(
            cfg.callback.url or "", cfg.callback.method, body, headers, a.timeout_s
        )
        a.phase = FINISHING
        self.metrics.observe_us(m.WEBHOOK_LATENCY, (), (time.perf_counter_ns() - started) // 1000)
        ok = status is not None and 200 <= status < 300
        done_at = self.clock.now_us()
        delay = None if ok else cfg.retry.delay_after_us(attempt)
        deadline = None
        if ok and cfg.delivery is not None and cfg.delivery.outcome_deadline_seconds is not None:
            deadline = done_at + cfg.delivery.outcome_deadline_seconds * 1_000_000
        body_outcome = None
        if ok and response and self.settings.response_body_outcomes:
            mode = cfg.verification.mode if cfg.verification else None
            body_outcome = self.outcomes.from_response(response, mode, done_at)
        finished = await self.finishes.finish(  # the host permit back (the request is over), one trip
            a.p,
            AttemptResult(
                a.eid,
                ok,
                status,
                "" if ok else error,
                None if delay is None else done_at + delay,
                deadline,
                a.entry_id,
                a.lease_until,
                body_outcome,
            ),
            self.rates.give(a, cfg) if cfg.delivery else None,
        )
        new_status = finished.execution_status if finished.status is Status.OK else None
        if new_status in ("retrying", "pending_outcome"):  # a retry or a deadline due soon: wake up
            await self.store.wake.due(deadline if delay is None else done_at + delay, done_at)
        if finished.status is Status.CONFLICT:  # fenced out: another dispatcher took it over; not recorded
            self.metrics.inc(m.WEBHOOK_ATTEMPTS, ("superseded",))
            return None
        self.metrics.inc(m.WEBHOOK_ATTEMPTS, (new_status or "none",))
        if ok and new_status:  # delivered (a body outcome may have ended it as failed)
            self.metrics.inc(m.EXECUTIONS_DELIVERED, ("webhook",))
            month = (a.account, month_of(done_at))
            self._usage[month] = self._usage.get(month, 0) + 1
            if finished.outcome_recorded and body_outcome is not None:  # usage counted by the script
                self.metrics.inc(m.OUTCOMES, ("true" if body_outcome.success else "false",))
        elif new_status == "failed":
            self.metrics.inc(m.EXECUTIONS_FAILED, ("webhook", "delivery"))
            try:  # usage `outcomes.failed` (§13.1): a final delivery failure, no outcome reported
                await count_failed(self.store, [a.eid])
            except Exception:
                log.warning("usage counter not written", extra={"execution_id": a.eid})
        return new_status

    async def _lease_covers(self, a: _Attempt) -> bool:
        """Whether the attempt may be sent now: its lease must outlast the request by
        ``SEND_MARGIN_US``. One that waited too long (behind a busy host, or for a global slot)
        gets a fresh lease of its length first, fenced (``delivery_extend.lua``); False when it
        no longer holds its lease (taken over as stale meanwhile: it must not be sent)."""
        now = self.clock.now_us()
        if a.lease_until - now >= a.timeout_s * 1_000_000 + SEND_MARGIN_US:
            return True
        (held,) = await self.store.delivery.extend(a.p, [(a.eid, a.lease_until, now + a.lease_us)], now)
        if held is None:
            log.info("attempt taken over while it waited; not sent", extra={"execution_id": a.eid})
            return False
        a.lease_until = held
        return True

    async def flush_usage(self, *, quiet: bool = False) -> None:
        """Write the aggregated monthly execution counts (every second, and at shutdown); with
        ``quiet``, a Redis (node) down or refusing writes is logged by ``usage_outage`` — once
        when it starts, not every second — instead of raised (the counts are kept for the next
        flush)."""
        if not self._usage:
            return
        counts, self._usage = self._usage, {}
        try:
            await count_executions(self.store, counts)
        except Exception as exc:
            for key, n in counts.items():  # keep them for the next flush
                self._usage[key] = self._usage.get(key, 0) + n
            if not (quiet and unavailable(exc)):
                raise
            self.usage_outage.failed(exc, "execution counters not written (kept)")
        else:
            self.usage_outage.ok()
