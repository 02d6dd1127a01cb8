"""The install itself: Redis health, partition count, scheduler heartbeat, metrics and backlog."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from cuefast.errors import ConfigError
from cuefast.store.repository import Repository

LAYOUT = "layout"
"""the meta hash's field: the data layout version (1: the execution listing indexes of
``lua/lib/exec_index.lua``; 2: their members are the ids' 16 bytes and ``ix`` holds a claimed
flag, not the claimed_at; absent: written before the indexes; an older layout is upgraded at
start by ``Executions.upgrade_indexes``; 3: accounts on the auth shards ``{aNN}``, each with its
cue-partition bitmap — ``AccountLayout.upgrade``; 4: each account's cue-names hash on its
auth shard, not its ``{a:<id>}`` slot — ``AccountLayout.move_names``; 5: the account and worker
listing registries' bounds zsets — ``Executions.upgrade_bounds``)"""
CURRENT_LAYOUT = 5
PROCESS_ALIVE_US = 30_000_000
"""a process that flushed metrics within this long counts as running (``metrics``, ``repartition``)"""
REPARTITION = "repartition"
"""the meta hash's field while ``cuefast repartition`` runs: "<from>><to>" (start-up refuses)"""


class Poller(NamedTuple):
    """The scheduler's last cycle."""

    last_run_us: int
    cues_last_cycle: int
    cycle_duration_ms: int


class Backlog(NamedTuple):
    """The install's queues summed over partitions, and what /metrics shows beside them."""

    outbox: int
    outbox_oldest_ms: int | None
    """the stream time of the oldest outbox entry (None: empty)"""
    retries: int
    delayed: int
    leases: int
    claimable: int
    claims: int
    deadlines: int
    overdue_cues: int
    """cues whose next run is more than ``overdue_us`` in the past"""
    snapshot_us: int | None
    """when the last complete snapshot began (None: never)"""
    poller_us: int | None
    """the scheduler's last cycle (None: never)"""
    processes: list[str]
    """"<roles>|<host>-<pid>" of the processes that flushed metrics within ``alive_us``"""


class System(Repository):
    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def listpack_value_limit(self) -> int | None:
        """The server's ``hash-max-listpack-value`` (None: CONFIG is not allowed)."""
        try:
            found = await self.redis.config_get("hash-max-listpack-value")
        except Exception:  # CONFIG disabled or renamed (managed Redis)
            return None
        try:
            return int(str(found["hash-max-listpack-value"]))
        except (KeyError, TypeError, ValueError):
            return None

    async def eviction_policies(self) -> set[str]:
        """The ``maxmemory-policy`` of the server(s) (every node of a cluster): ``CONFIG GET``
        where allowed, else ``INFO memory``; empty when neither answers."""
        found: set[str] = set()

        def collect(value: Any, key: str) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    if k == key and isinstance(v, str | bytes):
                        found.add(v.decode() if isinstance(v, bytes) else v)
                    else:
                        collect(v, key)

        try:
            collect(await self.redis.config_get("maxmemory-policy"), "maxmemory-policy")
        except Exception:  # CONFIG disabled or renamed (managed Redis)
            pass
        if not found:
            try:
                collect(await self.redis.info("memory"), "maxmemory_policy")
            except Exception:
                pass
        return found

    async def check_partitions(self, *, explicit: bool = True) -> bool:
        """Run with the partition count this Redis was set up with; True when this call set it up
        (a new install: its data is in the current layout). ``explicit`` (CUEFAST_PARTITIONS set):
        a different stored count stops start-up; else ``keys.partitions`` becomes the stored count.
        An unfinished ``cuefast repartition`` stops start-up either way."""
        k = self.keys
        moving = str(await self.redis.hget(k.meta, REPARTITION) or "")
        if moving:
            raise ConfigError(
                f"a `cuefast repartition` ({moving} partitions) did not finish; run it again "
                "(with every cuefast process stopped) before starting cuefast"
            )
        created = bool(await self.redis.hsetnx(k.meta, "partitions", k.partitions))
        if created:
            await self.redis.hset(k.meta, LAYOUT, CURRENT_LAYOUT)
        stored = int(await self.redis.hget(k.meta, "partitions") or 0)
        if stored != k.partitions:
            if explicit:
                raise ConfigError(
                    f"CUEFAST_PARTITIONS={k.partitions} but this Redis holds data for {stored} "
                    "partitions; unset CUEFAST_PARTITIONS (or set it to the stored value), or "
                    "change the count with `cuefast repartition --to N`"
                )
            k.partitions = stored
        return created

    async def layout(self) -> int:
        """The data layout this install's Redis is in (``CURRENT_LAYOUT`` once upgraded)."""
        return int(await self.redis.hget(self.keys.meta, LAYOUT) or 0)

    async def set_layout(self, layout: int) -> None:
        await self.wire.call("HSET", self.keys.meta, LAYOUT, layout)

    async def record_poller(self, now_us: int, cues: int, duration_ms: int) -> None:
        await self.wire.call(
            "HSET",
            self.keys.poller,
            "last_run",
            now_us,
            "cues_last_cycle",
            cues,
            "cycle_duration_ms",
            duration_ms,
        )

    async def poller(self) -> Poller | None:
        """The scheduler's last cycle (None: no scheduler ever ran)."""
        data = await self.redis.hgetall(self.keys.poller)
        if not data:
            return None
        return Poller(
            int(data["last_run"]), int(data.get("cues_last_cycle", 0)), int(data.get("cycle_duration_ms", 0))
        )

    # ---- metrics (cuefast/metrics.py) ---------------------------------------------------------
    async def add_metrics(self, counts: Mapping[str, int], process: str, now_us: int) -> None:
        """Add a process's deltas to the install's hash and note the process as alive, one pipeline."""
        k = self.keys
        async with self.wire.pipeline() as pipe:
            for field, n in counts.items():
                pipe.hincrby(k.metrics_data, field, n)
            pipe.zadd(k.metrics_processes, {process: now_us})
            await pipe.execute()

    async def drop_process(self, process: str) -> None:
        await self.wire.call("ZREM", self.keys.metrics_processes, process)

    async def metrics(self) -> dict[str, int]:
        """The install's counters and histogram buckets."""
        raw = await self.redis.hgetall(self.keys.metrics_data)
        return {str(k): int(v) for k, v in raw.items()}

    async def backlog(self, now_us: int, *, overdue_us: int, alive_us: int) -> Backlog:
        """The backlog over every partition, the snapshot and scheduler times and the live
        processes: one pipelined read (processes silent for 10 × ``alive_us`` are dropped)."""
        k = self.keys
        async with self.wire.pipeline() as pipe:  # follows ASK while a slot migrates
            for p in range(k.partitions):
                pipe.xlen(k.outbox(p))
                pipe.xrange(k.outbox(p), "-", "+", count=1)
                pipe.zcard(k.retries(p))
                pipe.zcard(k.delayed(p))
                pipe.zcard(k.leases(p))
                pipe.zcard(k.unclaimed(p))
                pipe.zcard(k.claims(p))
                pipe.zcard(k.deadlines(p))
                pipe.zcount(k.due(p), "-inf", now_us - overdue_us)
            pipe.hget(k.snapshot, "last_ok_us")
            pipe.hget(k.poller, "last_run")
            pipe.zrangebyscore(k.metrics_processes, now_us - alive_us, "+inf")
            pipe.zremrangebyscore(k.metrics_processes, "-inf", f"({now_us - 10 * alive_us}")
            res = await pipe.execute()
        width = 9
        sums = [0] * width
        oldest_ms: int | None = None
        for p in range(k.partitions):
            row = res[p * width : (p + 1) * width]
            for i in (0, 2, 3, 4, 5, 6, 7, 8):
                sums[i] += int(row[i])
            if row[1]:
                ms = int(str(row[1][0][0]).split("-")[0])
                oldest_ms = ms if oldest_ms is None else min(oldest_ms, ms)
        snapshot, last_run, procs = res[-4], res[-3], res[-2]
        outbox, _, retries, delayed, leases, claimable, claims, deadlines, overdue = sums
        return Backlog(
            outbox,
            oldest_ms,
            retries,
            delayed,
            leases,
            claimable,
            claims,
            deadlines,
            overdue,
            None if snapshot is None else int(snapshot),
            None if last_run is None else int(last_run),
            [str(m) for m in procs],
        )
