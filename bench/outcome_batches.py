"""Redis µs per outcome of ``outcomes_record.lua`` in calls of N outcomes (``Outcomes.record_many``).

    CUEFAST_REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python -m bench.outcome_batches \
        [--outcomes 4000] [--batch 16]

Seeds 50 worker cues of one account and ``--outcomes`` manual executions of them (round robin),
then records a success for each through the store's own ``record_many``, ``--batch`` per call
and partition — what a turn's outcomes of one account, or a worker's batch, cost Redis — and
prints the ``EVALSHA`` µs per outcome from ``INFO commandstats`` (with ``--callgrind``, on a
Redis under callgrind as for ``bench.engine_calls``: the recording alone is counted and
dumped). No HTTP, no auth. Exact only on a Redis nobody else uses (a private
``redis-server``); run it alternated with another checkout (``PYTHONPATH=<worktree>``) to
compare.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

import redis as sync_redis

from bench.engine import _url, cleanup, new_store, seed_cues
from bench.engine_calls import _callgrind
from cuefast.clock import SystemClock
from cuefast.ids import new_execution_id
from cuefast.store.outcomes import Outcome


async def run(outcomes: int, batch: int, callgrind: bool = False) -> float:
    """Redis µs per outcome over ``outcomes`` outcomes recorded ``batch`` per call."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    store = new_store(prefix, 16)
    try:
        await store.preload()
        now = SystemClock().now_us()
        acct, cues = await seed_cues(
            store, 50, cron="0 0 1 1 *", transport="worker", url="", due=now - 1_000_000
        )
        by_p: dict[int, list[str]] = {}
        for i in range(outcomes):
            cue = cues[i % len(cues)]
            eid = new_execution_id(store.keys.cue_byte(cue))
            await store.executions.create(
                execution_id=eid,
                cue_id=cue,
                account_id=acct,
                scheduled_us=now + i,
                payload_json="",
                triggered_by="manual_fire",
                now_us=now,
            )
            by_p.setdefault(store.keys.cue_partition(cue), []).append(eid)
        r = sync_redis.Redis.from_url(_url())
        pid = int(r.info("server")["process_id"])
        if callgrind:
            _callgrind(pid, "-i on")
        before = r.info("commandstats")["cmdstat_evalsha"]["usec"]
        for eids in by_p.values():
            for i in range(0, len(eids), batch):
                rows = [
                    Outcome(e, '{"success":true}', True, "reported_success", "") for e in eids[i : i + batch]
                ]
                await store.outcomes.record_many(acct, rows, now)
        spent = int(r.info("commandstats")["cmdstat_evalsha"]["usec"]) - int(before)
        if callgrind:
            _callgrind(pid, "-i off")
            _callgrind(pid, "-d")
        r.close()
        return spent / outcomes
    finally:
        await store.close()
        cleanup(prefix)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.outcome_batches")
    ap.add_argument("--outcomes", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=16, help="outcomes per call and partition")
    ap.add_argument(
        "--callgrind", action="store_true", help="the Redis runs under callgrind (bench.engine_calls)"
    )
    args = ap.parse_args()
    per = asyncio.run(run(args.outcomes, args.batch, args.callgrind))
    print(f"{args.outcomes} outcomes in calls of {args.batch}: Redis {per:.1f} µs per outcome (EVALSHA)")


if __name__ == "__main__":
    main()
