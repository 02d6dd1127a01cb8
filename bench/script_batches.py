"""Shared by outcome_batches and claim_batches: worker executions to act on, the Redis they cost."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis as sync_redis

from bench.engine import _url, seed_cues
from bench.engine_calls import _callgrind
from cuefast.ids import new_execution_id
from cuefast.store import Store


async def seed_worker_executions(store: Store, n: int, now: int) -> tuple[str, dict[int, list[str]]]:
    """50 worker cues of one account and ``n`` manual executions of them (round robin), created
    1 µs apart before ``now``: (account id, partition → its execution ids, oldest first)."""
    acct, cues = await seed_cues(store, 50, cron="0 0 1 1 *", transport="worker", url="", due=now - 1_000_000)
    by_p: dict[int, list[str]] = {}
    for i in range(n):
        cue = cues[i % len(cues)]
        eid = new_execution_id(store.keys.cue_byte(cue))
        await store.executions.create(
            execution_id=eid,
            cue_id=cue,
            account_id=acct,
            scheduled_us=now - n + i,
            payload_json="",
            triggered_by="manual_fire",
            now_us=now,
        )
        by_p.setdefault(store.keys.cue_partition(cue), []).append(eid)
    return acct, by_p


def _script_usec(r: sync_redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in ("fcall", "evalsha"))


@contextlib.contextmanager
def script_us(callgrind: bool) -> Iterator[list[int]]:
    """The script µs (``FCALL`` + ``EVALSHA``) the block spends (``INFO commandstats``), in the
    yielded list once it exits; ``callgrind``: the Redis runs under callgrind
    (bench/engine_calls.py), which counts the block alone and dumps it."""
    r = sync_redis.Redis.from_url(_url())
    pid = int(r.info("server")["process_id"])
    spent: list[int] = []
    try:
        if callgrind:
            _callgrind(pid, "-i on")
        before = _script_usec(r)
        yield spent
        spent.append(_script_usec(r) - before)
        if callgrind:
            _callgrind(pid, "-i off")
            _callgrind(pid, "-d")
    finally:
        r.close()
