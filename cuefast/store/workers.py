"""The worker registry: each account's pull workers with their last heartbeat and handlers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from cuefast.store.repository import Repository
from cuefast.store.scripts import Script
from cuefast.store.status import Status

HEARTBEAT = Script(
    "workers_heartbeat",
    keys=("workers", "info"),
    argv=("now", "worker_id", "handlers", "limit", "expire_us", "alive_us"),
)

SEEN_DAY_US = 86_400_000_000
"""the install-wide view keeps a worker this long after its last heartbeat"""


class Worker(NamedTuple):
    worker_id: str
    last_heartbeat_us: int
    registered_us: int
    handlers_json: str


class WorkersAlive(NamedTuple):
    """Pull workers of every account alive now, and the latest heartbeat µs (None: none)."""

    alive: int
    latest_us: int | None


class Workers(Repository):
    SCRIPTS = (HEARTBEAT,)

    async def heartbeat(
        self,
        account_id: str,
        worker_id: str,
        handlers_json: str,
        now_us: int,
        *,
        limit: int,
        expire_us: int,
        alive_us: int,
    ) -> int | None:
        """Upsert a registry entry; its registration µs, or None when the worker is new and the
        account already has ``limit`` workers, all alive."""
        k = self.keys
        res = await self.scripts.run(
            HEARTBEAT,
            [k.workers(account_id), k.worker_info(account_id)],
            [now_us, worker_id, handlers_json, limit, expire_us, alive_us],
        )
        if Status(int(res[0])) is not Status.OK:
            return None
        async with self.wire.pipeline() as pipe:  # the install-wide view (/health)
            pipe.zadd(k.workers_seen, {f"{account_id}|{worker_id}": now_us})
            pipe.zremrangebyscore(k.workers_seen, "-inf", f"({now_us - SEEN_DAY_US}")
            await pipe.execute()
        return int(res[1])

    async def last_seen(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Last registry heartbeat µs of (account, worker id) pairs that are registered."""
        pairs = list(dict.fromkeys(pairs))
        if not pairs:
            return {}
        async with self.wire.pipeline() as pipe:
            for account_id, worker_id in pairs:
                pipe.zscore(self.keys.workers(account_id), worker_id)
            rows = await pipe.execute()
        return {pair: int(score) for pair, score in zip(pairs, rows, strict=True) if score is not None}

    async def any_alive(self, account_id: str, now_us: int, alive_seconds: int) -> bool:
        alive: int = await self.redis.zcount(
            self.keys.workers(account_id), now_us - alive_seconds * 1_000_000, "+inf"
        )
        return alive > 0

    async def alive(self, now_us: int, alive_seconds: int) -> WorkersAlive:
        """Pull workers of every account alive now, and the latest heartbeat."""
        k = self.keys
        async with self.wire.pipeline() as pipe:
            pipe.zcount(k.workers_seen, now_us - alive_seconds * 1_000_000, "+inf")
            pipe.zrevrange(k.workers_seen, 0, 0, withscores=True)
            alive, latest = await pipe.execute()
        return WorkersAlive(int(alive), int(latest[0][1]) if latest else None)

    async def seen(self, account_id: str, since_us: int) -> list[Worker]:
        """The workers seen at or after ``since_us``, latest heartbeat first."""
        k = self.keys
        res: Any = await self.redis.zrevrangebyscore(k.workers(account_id), "+inf", since_us, withscores=True)
        ranked = [(str(worker_id), score) for worker_id, score in res]
        if not ranked:
            return []
        info = await self.redis.hmget(k.worker_info(account_id), [worker_id for worker_id, _ in ranked])
        out: list[Worker] = []
        for (worker_id, score), held in zip(ranked, info, strict=True):
            since, _, handlers = str(held or "").partition("|")
            out.append(Worker(worker_id, int(score), int(since or score), handlers or "null"))
        return out

    async def delete(self, account_id: str, worker_id: str) -> bool:
        k = self.keys
        async with self.wire.pipeline() as pipe:  # one slot, in order on one connection
            pipe.zrem(k.workers(account_id), worker_id)
            pipe.hdel(k.worker_info(account_id), worker_id)
            removed, _ = await pipe.execute()
        await self.wire.call("ZREM", k.workers_seen, f"{account_id}|{worker_id}")
        return bool(removed)
