"""Worker claims: the claimable indexes, claims and their leases, expiry, missed work, wake-ups."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from cuefast.store.connect import UNREACHABLE
from cuefast.store.repository import Repository
from cuefast.store.scripts import Arg, Script
from cuefast.store.status import Status

CLAIM = Script(
    "claims_claim",
    keys=("index", "claims"),
    argv=("now", "prefix", "account_id", "worker_id", "lease_us", "count", "budget"),
    rest="execution_ids",
)
HEARTBEAT = Script(
    "claims_heartbeat",
    keys=("claims",),
    argv=("now", "prefix", "account_id", "worker_id", "lease_us"),
    rest="execution_ids",
)
RELEASE = Script(
    "claims_release",
    keys=("claims",),
    argv=("now", "prefix", "account_id", "worker_id"),
    rest="execution_ids",
)
EXPIRED_LEASES = Script("claims_expired_leases", keys=("claims",), argv=("now", "prefix", "batch"))
REAP_LEASES = Script("claims_reap_leases", keys=("claims",), argv=("now", "prefix"), rest="decisions")
EXPIRE_UNCLAIMED = Script(
    "claims_expire_unclaimed", keys=("unclaimed",), argv=("now", "prefix", "cutoff", "batch")
)
ARM_DEADLINES = Script("claims_arm_deadlines", keys=("deadlines",), argv=("now", "prefix"), rest="deadlines")


class WorkIndex(NamedTuple):
    """One claimable index: a partition's work of an account, of one task and/or agent (None: any)."""

    partition: int
    task: str | None = None
    agent: str | None = None


class Available(NamedTuple):
    """An available entry of the peek's ``WorkIndex`` number ``source``."""

    scheduled_for: float
    execution_id: str
    source: int


class Peek(NamedTuple):
    """The oldest available entries over the indexes (oldest first, ties: id ascending) and, per
    index, the score of its first entry not yet available (None: none, or the index has the
    limit of available entries)."""

    available: list[Available]
    later: list[int | None]


class ClaimRequest(NamedTuple):
    """Claim up to ``take`` of the oldest available entries of ``work`` (0: the ``ids`` instead).
    ``budget``: the permits this call may use per capped task (``claim_caps.Reservation.split``;
    "" = no task cap reachable)."""

    work: WorkIndex
    take: int
    ids: Sequence[str] = ()
    budget: str = ""


class Claim(NamedTuple):
    """OK (the claimed execution's facts follow) | NOT_FOUND (no such execution of the account)
    | WRONG_STATE (not claimable now)."""

    status: Status
    execution_id: str
    cue_id: str
    cue_name: str
    scheduled_for: int
    attempt: int
    payload: str
    task: str | None
    lease_until: int
    fire_at: int
    """when it became claimable: the jittered fire time, else ``scheduled_for`` (lateness)"""


class Heartbeat(NamedTuple):
    """OK (``lease_until``: the new lease expiry µs) | NOT_FOUND | WRONG_STATE (not a claimed
    worker execution; ``cancelled`` when its cue's overlap policy cancelled it) | CONFLICT
    (another worker's claim). ``task``: an OK one's task (its claim cap's permit follows the
    lease: ``task_caps.extend``)."""

    status: Status
    lease_until: int | None
    cancelled: bool = False
    task: str | None = None


class ExpiredClaim(NamedTuple):
    execution_id: str
    account_id: str
    worker_id: str
    claimed_at: int
    heartbeat_at: int | None
    attempts: int
    cue_id: str
    lease_until: str
    """the judged lease expiry, as stored (the reaper hands it back as its compare-and-set token)"""
    triggered_by: str
    lease_us: int | None


class Missed(NamedTuple):
    execution_id: str
    cue_id: str
    account_id: str
    attempts: int


class Signal(NamedTuple):
    """Worker work became claimable for ``account_id`` (``entry_id`` on partition ``partition``'s
    signal stream)."""

    partition: int
    entry_id: str
    account_id: str
    anywhere: bool = False
    """a permit of a task cap freed: the work it lets through may be on any partition"""


class Claims(Repository):
    SCRIPTS = (CLAIM, HEARTBEAT, RELEASE, EXPIRED_LEASES, REAP_LEASES, EXPIRE_UNCLAIMED, ARM_DEADLINES)

    def _index(self, account_id: str, index: WorkIndex) -> str:
        return self.keys.work_filtered(index.partition, account_id, index.task, index.agent)

    async def peek(self, account_id: str, indexes: Sequence[WorkIndex], now_us: int, limit: int) -> Peek:
        """The oldest ``limit`` available entries over ``indexes``: one command per index (its
        oldest ``limit`` entries, whatever their score), one round trip. An index whose node
        could not be reached (Redis Cluster, a primary down) offers nothing this time."""
        async with self.wire.pipeline() as pipe:  # follows ASK while a slot migrates
            for index in indexes:
                pipe.zrangebyscore(
                    self._index(account_id, index), "-inf", "+inf", start=0, num=limit, withscores=True
                )
            res = await pipe.execute(raise_on_error=False)
        merged: list[Available] = []
        later: list[int | None] = []
        for i, got in enumerate(res):
            if isinstance(got, Exception) and not isinstance(got, UNREACHABLE):
                raise got
            first_later: int | None = None
            for eid, score in [] if isinstance(got, Exception) else got:
                if score <= now_us:
                    merged.append(Available(float(score), str(eid), i))
                else:
                    first_later = int(score)
                    break
            later.append(first_later)
        merged.sort()
        return Peek(merged[:limit], later)

    async def claim(
        self,
        account_id: str,
        worker_id: str,
        lease_us: int,
        now_us: int,
        requests: Sequence[ClaimRequest],
    ) -> list[list[Claim]]:
        """One ``claims_claim.lua`` call per request, all in one round trip; per request the
        claimed executions (count mode) or a result per id (ids mode)."""
        k = self.keys
        res = await self.scripts.run_many(
            [
                (
                    CLAIM,
                    [
                        self._index(account_id, r.work),
                        k.claims(r.work.partition),
                    ],
                    [
                        now_us,
                        k.part(r.work.partition) + ":",
                        account_id,
                        worker_id,
                        lease_us,
                        r.take,
                        r.budget,
                        *r.ids,
                    ],
                )
                for r in requests
            ]
        )
        return [[_claim(rows[i : i + 10]) for i in range(0, len(rows), 10)] for rows in res]

    async def heartbeat(
        self,
        p: int,
        account_id: str,
        worker_id: str,
        default_lease_us: int,
        *,
        now_us: int,
        ids: Sequence[str],
    ) -> list[Heartbeat]:
        """Extend leases (``worker_id`` "": no ownership check); a result per id."""
        k = self.keys
        res = await self.scripts.run(
            HEARTBEAT, [k.claims(p)], [now_us, k.part(p) + ":", account_id, worker_id, default_lease_us, *ids]
        )
        out: list[Heartbeat] = []
        for i in range(0, len(res), 3):
            code, value, task = Status(int(res[i])), str(res[i + 1] or ""), str(res[i + 2] or "")
            if value == "cancelled":
                out.append(Heartbeat(code, None, cancelled=True))
            else:
                out.append(Heartbeat(code, int(value) if value else None, task=task or None))
        return out

    async def release(
        self, p: int, account_id: str, worker_id: str, now_us: int, ids: Sequence[str]
    ) -> list[str]:
        """Give claims back (claimable again at once); the ids released."""
        k = self.keys
        res = await self.scripts.run(
            RELEASE, [k.claims(p)], [now_us, k.part(p) + ":", account_id, worker_id, *ids]
        )
        return [str(v) for v in res]

    async def expired_leases(self, p: int, batch: int, now_us: int) -> list[ExpiredClaim]:
        k = self.keys
        res = await self.scripts.run(EXPIRED_LEASES, [k.claims(p)], [now_us, k.part(p) + ":", batch])
        out: list[ExpiredClaim] = []
        for i in range(0, len(res), 10):
            eid, acct, worker, cla, lh, att, cue_id, lx, tb, ls = (str(v) for v in res[i : i + 10])
            out.append(
                ExpiredClaim(
                    eid,
                    acct,
                    worker,
                    int(cla or 0),
                    int(lh) if lh else None,
                    int(att),
                    cue_id,
                    lx,
                    tb,
                    int(ls) if ls else None,
                )
            )
        return out

    async def reap_leases(self, p: int, decisions: Sequence[tuple[str, str, str]], now_us: int) -> list[str]:
        """Apply (execution id, judged lease expiry, "renew:<µs>" | "reoffer" | "fail") to each
        expired claim still as judged: per claim its status now ("" = changed meanwhile)."""
        if not decisions:
            return []
        k = self.keys
        args: list[Arg] = [now_us, k.part(p) + ":"]
        for row in decisions:
            args.extend(row)
        return [str(v) for v in await self.scripts.run(REAP_LEASES, [k.claims(p)], args)]

    async def expire_unclaimed(
        self, p: int, cutoff_us: int, batch: int, now_us: int
    ) -> tuple[int, list[Missed]]:
        """(entries taken, the executions that became missed)."""
        k = self.keys
        res = await self.scripts.run(
            EXPIRE_UNCLAIMED, [k.unclaimed(p)], [now_us, k.part(p) + ":", cutoff_us, batch]
        )
        missed = [
            Missed(str(res[i]), str(res[i + 1]), str(res[i + 2]), int(res[i + 3] or 0))
            for i in range(1, len(res), 4)
        ]
        return int(res[0]), missed

    async def arm_deadlines(self, p: int, deadlines: Sequence[tuple[str, int]], now_us: int) -> int:
        """Arm the outcome deadline (execution id, µs) of first claims; the number armed."""
        if not deadlines:
            return 0
        k = self.keys
        args: list[Arg] = [now_us, k.part(p) + ":"]
        for eid, od in deadlines:
            args += [eid, od]
        return int(await self.scripts.run(ARM_DEADLINES, [k.deadlines(p)], args))

    async def signal_positions(self) -> list[str]:
        """The last entry id of every partition's work signal stream ("0-0" when empty)."""
        async with self.wire.pipeline() as pipe:  # follows ASK while a slot migrates
            for p in range(self.keys.partitions):
                pipe.xrevrange(self.keys.work_signal(p), count=1)
            rows = await pipe.execute()
        return [str(r[0][0]) if r else "0-0" for r in rows]

    async def read_signals(self, positions: list[str], block_ms: int, count: int = 1000) -> list[Signal]:
        """Work signals after ``positions`` (blocking up to ``block_ms``), at most ``count`` per
        stream."""
        k = self.keys
        streams: dict[Any, Any] = {k.work_signal(p): positions[p] for p in range(k.partitions)}
        index = {k.work_signal(p): p for p in range(k.partitions)}
        replies: list[Any]
        if self.cluster:  # one XREAD per stream (each its own slot): fanout.Fanout

            def one(key: str, start: str) -> Callable[[], Awaitable[Any]]:
                return lambda: self.redis.xread({key: start}, count=count, block=block_ms)

            reads = {(s, i): one(s, i) for s, i in streams.items()}
            replies = [res for _, res in await self.fanout.read(reads)]
        else:
            replies = [await self.redis.xread(streams, count=count, block=block_ms)]
        return [
            Signal(index[str(stream)], str(entry_id), str(fields.get("a", "")), fields.get("w") == "*")
            for res in replies
            for stream, entries in res or []
            for entry_id, fields in entries
        ]


def _claim(row: Sequence[Any]) -> Claim:
    status = Status(int(row[0]))
    if status is not Status.OK:
        return Claim(status, str(row[1]), "", "", 0, 0, "{}", None, 0, 0)
    _, eid, cue_id, name, sf, att, payload, task, lx, fire = row
    return Claim(
        status,
        str(eid),
        str(cue_id),
        str(name),
        int(sf),
        int(att),
        str(payload) or "{}",
        str(task) or None,
        int(lx),
        int(fire) if fire else int(sf),
    )
