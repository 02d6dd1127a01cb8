"""Webhook delivery: the outbox streams and the leased attempts (start, extend, finish, release)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from cuefast.models import config_json
from cuefast.store.scripts import Arg, Call, Script
from cuefast.store.status import Status
from cuefast.store.streams import GroupStreams

_config_json = functools.lru_cache(maxsize=4096)(config_json)
"""``config_json`` memoised: the cues of a burst share few (stored config, schedule) pairs (~2.5 µs
each otherwise)"""
log = logging.getLogger(__name__)

START = Script(
    "delivery_start", keys=("leases",), argv=("now", "prefix", "timeout_s", "stale_s"), rest="execution_ids"
)
EXTEND = Script("delivery_extend", keys=("leases",), argv=("now",), rest="leases")
FINISH = Script(
    "delivery_finish", keys=("leases", "retries", "outbox"), argv=("now", "prefix", "group"), rest="attempts"
)
RELEASE = Script(
    "delivery_release", keys=("leases", "outbox", "delayed"), argv=("now", "prefix", "group"), rest="attempts"
)
RATE = Script("delivery_host_rate", keys=("window", "booked"), argv=("now", "book", "late"), rest="attempts")
HOST_TAKE = Script(
    "delivery_host_take", keys=("permits", "waiting"), argv=("now", "grant_until"), rest="attempts"
)
HOST_GIVE = Script(
    "delivery_host_give", keys=("permits", "waiting"), argv=("now", "grant_until"), rest="attempts"
)
WAKE = Script("delivery_wake", keys=("delayed", "outbox"), argv=("now",), rest="execution_ids")
HOST_GRANT_US = 60_000_000
"""a host permit reserved for a waiter expires after this if its attempt never comes"""
RATE_LATE_US = 100_000
"""a booked send slot (``max_per_second``) may still be taken this long after it (or one interval,
if longer): the way from the dispatcher's wake-up to its ask (a global slot, the lease check, a
round trip) must not cost an attempt its place; later than that (a dead holder's, taken over
after its lease) it is booked again behind the others"""


class Attempt(Protocol):
    """What the host caps need of a leased attempt (the dispatcher's)."""

    account: str
    p: int
    eid: str
    lease_until: int
    attempts: int


HostTake = tuple[int, Attempt]
"""an attempt asking for a host permit: (its cue's max_concurrency_per_host, the attempt)"""


class OutboxEntry(NamedTuple):
    partition: int
    entry_id: str
    execution_id: str


class Lease(NamedTuple):
    """An execution leased for one attempt: what the attempt needs, ``lease_until`` (the fencing
    token every later call presents) and the attempt's HTTP timeout (the script's rule)."""

    cue_id: str
    scheduled_for: int
    attempts: int
    payload: str
    config: str
    """the cue's full config JSON"""
    name: str
    account_id: str
    triggered_by: str
    lease_until: int
    timeout_s: int
    fire_at: int
    """when the attempt was due: the jittered fire time, else ``scheduled_for`` (lateness)"""


class BodyOutcome(NamedTuple):
    """The outcome a 2xx response body carried (CONTRACT.md §10.6)."""

    outcome_json: str
    success: bool
    state: str
    error: str


class AttemptResult(NamedTuple):
    """What one attempt got: ``next_retry_us`` None = no attempts left; ``deadline_us`` the
    outcome deadline to arm (None: none)."""

    execution_id: str
    ok: bool
    http_status: int | None
    error: str
    next_retry_us: int | None
    deadline_us: int | None
    entry_id: str
    lease_until: int
    outcome: BodyOutcome | None


class Finished(NamedTuple):
    """OK (``execution_status``: the execution's new status; ``outcome_recorded``: the body's
    outcome too) | CONFLICT (fenced out: the attempt had lost its lease, nothing recorded) |
    WRONG_STATE (no longer in flight)."""

    status: Status
    execution_status: str
    outcome_recorded: bool


class ReleasedAttempt(NamedTuple):
    """A leased attempt handed back unsent, re-queued at ``requeue_us`` (≤ now: at once)."""

    execution_id: str
    entry_id: str
    lease_until: int
    requeue_us: int


class Delivery(GroupStreams):
    SCRIPTS = (START, EXTEND, FINISH, RELEASE, RATE, HOST_TAKE, HOST_GIVE, WAKE)
    GROUP = "dispatchers"

    def streams(self) -> list[str]:
        return [self.keys.outbox(p) for p in range(self.keys.partitions)]

    async def read(self, consumer: str, count: int, block_ms: int | None) -> list[OutboxEntry]:
        """New outbox entries for this consumer (``block_ms`` None: no wait, as ``read_group``)."""
        return [
            OutboxEntry(p, entry_id, str(fields.get("e", "")))
            for p, entry_id, fields in await self.read_group(consumer, count, block_ms)
        ]

    async def settle(self) -> list[OutboxEntry]:
        """At a dispatcher's stop: the entries its blocking reads still in flight were handed
        (Redis Cluster), for the dispatcher to hand back."""
        return [
            OutboxEntry(p, entry_id, str(fields.get("e", "")))
            for p, entry_id, fields in await self.settle_reads()
        ]

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[OutboxEntry]:
        """Entries another consumer read but never finished (it died): take them over."""
        return [
            OutboxEntry(p, entry_id, str(fields["e"]))
            for p, entry_id, fields in await self.claim_group(consumer, min_idle_ms, count)
            if fields and "e" in fields
        ]

    async def ack(self, entries: Sequence[tuple[int, str]]) -> None:
        """Acknowledge and delete these (partition, stream entry id) outbox entries (one pipeline,
        one XACK and one XDEL per stream: XDEL rescans for the stream's first id once per call,
        lib/outbox_ack.lua)."""
        if not entries:
            return
        ids: dict[int, list[str]] = {}
        for p, entry_id in entries:
            ids.setdefault(p, []).append(entry_id)
        async with self.wire.pipeline() as pipe:
            for p, entry_ids in ids.items():
                pipe.xack(self.keys.outbox(p), self.GROUP, *entry_ids)
                pipe.xdel(self.keys.outbox(p), *entry_ids)
            await pipe.execute()

    async def start(
        self, batches: Mapping[int, Sequence[str]], now_us: int, *, timeout_s: int, stale_s: int
    ) -> dict[int, list[Lease | Status]]:
        """Lease each execution of these partitions' batches for one attempt (one script call per
        partition, one pipeline): its ``Lease``, or NOT_FOUND (drop its stream entry) or BUSY (a
        live attempt elsewhere holds it: leave the entry pending). ``timeout_s`` is the timeout of
        a cue without ``delivery``, ``stale_s`` the lease floor: each lease is max(stale_s, the
        attempt's own timeout + 60 s). A partition whose node could not be reached (Redis
        Cluster) is left out of the result: its entries stay pending (taken over as stale)."""
        k = self.keys
        parts = [p for p, eids in batches.items() if eids]
        replies = await self.scripts.run_many(
            [
                (START, [k.leases(p)], [now_us, k.part(p) + ":", timeout_s, stale_s, *batches[p]])
                for p in parts
            ],
            partial=True,
        )
        result: dict[int, list[Lease | Status]] = {p: [] for p in batches}
        for p, res in zip(parts, replies, strict=True):
            if isinstance(res, Exception):
                log.warning("partition %d: %d attempts not leased (%s)", p, len(batches[p]), res)
                del result[p]
                continue
            out = result[p]
            for i in range(0, len(res), 13):
                status = Status(int(res[i]))
                if status is not Status.OK:
                    out.append(status)
                    continue
                row = res[i + 1 : i + 13]
                cue_id, scheduled, attempts, payload, stored, name, account, tb, sch, lease, timeout = row[
                    :11
                ]
                fire = row[11]
                out.append(
                    Lease(
                        str(cue_id),
                        int(scheduled),
                        int(attempts or 0),
                        str(payload),
                        _config_json(stored, sch),  # the stored config + the cue's sch
                        str(name),
                        str(account),
                        str(tb),
                        int(lease),
                        int(timeout),
                        int(fire) if fire else int(scheduled),
                    )
                )
        return result

    async def extend(self, p: int, leases: Sequence[tuple[str, int, int]], now_us: int) -> list[int | None]:
        """Lengthen leased attempts' leases (one script call): each (execution id, lease expiry
        µs it holds, new expiry µs) → the lease it now holds, or None when it no longer held
        that lease (taken over or finished: it must not be sent)."""
        if not leases:
            return []
        args: list[Arg] = [now_us]
        for eid, held, new in leases:
            args += [eid, held, new]
        res = await self.scripts.run(EXTEND, [self.keys.leases(p)], args)
        return [int(v) if v else None for v in res]

    async def finish(
        self, batches: Mapping[int, Sequence[AttemptResult]], now_us: int
    ) -> dict[int, list[Finished] | Exception]:
        """Record attempt results, one ``delivery_finish`` script call per partition, all in one
        pipeline. A partition whose node could not be reached gets the error instead of its
        list (Redis Cluster; the others are recorded)."""
        return (await self.finish_with(batches, [], now_us))[0]

    async def finish_with(
        self, batches: Mapping[int, Sequence[AttemptResult]], before: Sequence[Call], now_us: int
    ) -> tuple[dict[int, list[Finished] | Exception], list[Any]]:
        """``finish``, with the ``before`` script calls (host permits given back: ``give_call``)
        first in the same pipeline; their replies (or errors) come second."""
        k = self.keys
        parts = [p for p, rows in batches.items() if rows]
        calls: list[Call] = list(before)
        for p in parts:
            args: list[Arg] = [now_us, k.part(p) + ":", self.GROUP]
            for r in batches[p]:
                body = r.outcome
                args += [
                    r.execution_id,
                    "ok" if r.ok else "fail",
                    "" if r.http_status is None else r.http_status,
                    r.error,
                    "" if r.next_retry_us is None else r.next_retry_us,
                    "" if r.deadline_us is None else r.deadline_us,
                    r.entry_id,
                    r.lease_until,
                    *(
                        ("", "", "", "")
                        if body is None
                        else (body.outcome_json, int(body.success), body.state, body.error)
                    ),
                ]
            calls.append((FINISH, [k.leases(p), k.retries(p), k.outbox(p)], args))
        replies = await self.scripts.run_many(calls, partial=True)
        result: dict[int, list[Finished] | Exception] = {p: [] for p in batches}
        for p, res in zip(parts, replies[len(before) :], strict=True):
            if isinstance(res, Exception):
                result[p] = res
                continue
            result[p] = [
                Finished(Status(int(res[i])), str(res[i + 1]), int(res[i + 2]) == 1)
                for i in range(0, len(res), 3)
            ]
        return result, replies[: len(before)]

    async def release(self, p: int, attempts: Sequence[ReleasedAttempt], now_us: int) -> list[str | None]:
        """Hand back leased attempts not sent (one script call): each goes back to pending /
        retry_ready with no attempt counted, re-queued at its time. Per attempt its restored
        status, or None when it no longer held that lease."""
        if not attempts:
            return []
        k = self.keys
        args: list[Arg] = [now_us, k.part(p) + ":", self.GROUP]
        for a in attempts:
            args += [a.execution_id, a.entry_id, a.lease_until, a.requeue_us]
        res = await self.scripts.run(RELEASE, [k.leases(p), k.outbox(p), k.delayed(p)], args)
        return [str(v) if v else None for v in res]

    def rate_call(
        self, account_id: str, host: str, rows: Sequence[tuple[int, str]], now_us: int, *, book: bool = False
    ) -> Call:
        """``host``'s send slots for this account, one per (cue's max_per_second, booking member
        ``<execution id>:<attempt number>``) in order: now, or a slot booked for it (``book``: only
        booked, none goes) (``delivery_host_rate``, on the account's slot; replies: ``rate_reply``)."""
        args: list[Arg] = [now_us, 1 if book else 0, RATE_LATE_US]
        for per_second, member in rows:
            args += [1_000_000 // per_second, member]
        return (RATE, list(self.keys.host_rate(account_id, host)), args)

    @staticmethod
    def rate_reply(res: Sequence[Any]) -> list[tuple[bool, int]]:
        """Per attempt: (True: it goes now, the next free slot) | (False, the slot booked for it)."""
        return [(int(res[i]) == 1, int(res[i + 1])) for i in range(0, len(res), 2)]

    def take_call(self, account_id: str, host: str, rows: Sequence[HostTake], now_us: int) -> Call:
        """Permits of the account's concurrency cap on ``host`` for these attempts, in order, each
        until its lease expires, or it joins the host's waiting list (``delivery_host_take``,
        on the account's slot; replies: ``take_reply``)."""
        args: list[Arg] = [now_us, now_us + HOST_GRANT_US]
        for cap, a in rows:
            args += [cap, a.lease_until, a.eid, a.p]
        return (HOST_TAKE, list(self.keys.host_permits(account_id, host)), args)

    @staticmethod
    def take_reply(res: Sequence[Any], n: int) -> tuple[list[bool], list[str]]:
        """(per attempt: taken, the waiters given a reserved permit meanwhile)."""
        return [int(v) == 1 for v in res[:n]], [str(w) for w in res[n:]]

    def give_call(self, account_id: str, host: str, rows: Sequence[tuple[int, str]], now_us: int) -> Call:
        """Give these (cap, execution id) attempts' host permits back; the oldest waiters they
        make room for get one reserved (``delivery_host_give``; replies: the waiters woken)."""
        args: list[Arg] = [now_us, now_us + HOST_GRANT_US]
        for cap, eid in rows:
            args += [cap, eid]
        return (HOST_GIVE, list(self.keys.host_permits(account_id, host)), args)

    async def rate(
        self,
        account_id: str,
        host: str,
        per_second: int,
        now_us: int,
        member: str = "x:1",
        *,
        book: bool = False,
    ) -> tuple[bool, int]:
        """A send slot of ``host`` for one attempt (``rate_call``)."""
        call = self.rate_call(account_id, host, [(per_second, member)], now_us, book=book)
        (res,) = self.rate_reply(await self.scripts.run(*call))
        return res

    async def host_take(self, a: Attempt, host: str, cap: int, now_us: int) -> bool:
        """A permit of ``host``'s cap for one attempt (True), or it is listed as waiting (False);
        waiters whose turn came meanwhile are moved to their outbox (``take_call``)."""
        res = await self.scripts.run(*self.take_call(a.account, host, [(cap, a)], now_us))
        (taken,), woken = self.take_reply(res, 1)
        await self.wake(woken, now_us)
        return taken

    async def host_give(self, account_id: str, host: str, cap: int, eid: str, now_us: int) -> None:
        """Give one attempt's host permit back; the waiters it makes room for get one reserved and
        are moved to their outbox (``give_call``)."""
        res = await self.scripts.run(*self.give_call(account_id, host, [(cap, eid)], now_us))
        await self.wake([str(w) for w in res], now_us)

    async def wake(self, waiters: Sequence[str], now_us: int) -> None:
        """Move ``<p>|<execution id>`` waiters from their partition's delayed zset to its outbox."""
        by_partition: dict[int, list[str]] = {}
        for w in waiters:
            p, _, eid = w.partition("|")
            by_partition.setdefault(int(p), []).append(eid)
        if by_partition:
            k = self.keys
            await self.scripts.run_many(
                [(WAKE, [k.delayed(p), k.outbox(p)], [now_us, *ids]) for p, ids in by_partition.items()]
            )

    async def cap_state(self, cue_id: str) -> tuple[int, int]:
        """A cue's ``delivery.max_concurrency`` now: (permits held, executions waiting for one)."""
        base = f"{self.keys.part(self.keys.cue_partition(cue_id))}:"
        async with self.wire.pipeline() as pipe:
            pipe.zcard(f"{base}cap:{cue_id}")
            pipe.execute_command("LLEN", f"{base}capq:{cue_id}")
            held, waiting = await pipe.execute()
        return int(held), int(waiting)

    async def stale_attempts(self, now_us: int) -> int:
        """Webhook attempts whose lease expired (a dispatcher died mid-delivery, §11.4)."""
        async with self.wire.pipeline() as pipe:  # follows ASK while a slot migrates
            for p in range(self.keys.partitions):
                pipe.zcount(self.keys.leases(p), "-inf", now_us)
            return sum(int(n) for n in await pipe.execute())
