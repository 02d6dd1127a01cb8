"""Redis µs (or instructions) per worker claim of ``claims_claim.lua`` in calls of N claims.

    CUEFAST_REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python -m bench.claim_batches \\
        [--executions 4000] [--batch 16] [--callgrind]

Seeds 50 worker cues of one account and ``--executions`` manual executions of them (round
robin), then claims them the way the batch pull does — per partition, ``--batch`` at a time
from the account's work index (count mode) — through the store's own ``Claims.claim``, and
prints the ``EVALSHA`` µs per claim from ``INFO commandstats`` (with ``--callgrind``, on a Redis
under callgrind as for ``bench.engine_calls``: the claims alone are counted and dumped). No
HTTP, no auth. Exact only on a Redis nobody else uses; run it alternated with another checkout
(``PYTHONPATH=<worktree>``) to compare.
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
from cuefast.store.claims import ClaimRequest, WorkIndex


async def run(executions: int, batch: int, callgrind: bool = False) -> tuple[int, float]:
    """(executions claimed, Redis µs per claim) over ``executions`` claimed ``batch`` per call."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    store = new_store(prefix, 16)
    try:
        await store.preload()
        now = SystemClock().now_us()
        acct, cues = await seed_cues(
            store, 50, cron="0 0 1 1 *", transport="worker", url="", due=now - 1_000_000
        )
        parts: set[int] = set()
        for i in range(executions):
            cue = cues[i % len(cues)]
            await store.executions.create(
                execution_id=new_execution_id(store.keys.cue_byte(cue)),
                cue_id=cue,
                account_id=acct,
                scheduled_us=now - executions + i,
                payload_json="",
                triggered_by="manual_fire",
                now_us=now,
            )
            parts.add(store.keys.cue_partition(cue))
        r = sync_redis.Redis.from_url(_url())
        pid = int(r.info("server")["process_id"])
        if callgrind:
            _callgrind(pid, "-i on")
        before = r.info("commandstats")["cmdstat_evalsha"]["usec"]
        claimed = 0
        for p in sorted(parts):
            while True:
                (got,) = await store.claims.claim(
                    acct, "bench-worker", 300_000_000, now, [ClaimRequest(WorkIndex(p), batch)]
                )
                if not got:
                    break
                claimed += len(got)
        spent = int(r.info("commandstats")["cmdstat_evalsha"]["usec"]) - int(before)
        if callgrind:
            _callgrind(pid, "-i off")
            _callgrind(pid, "-d")
        r.close()
        return claimed, spent / max(claimed, 1)
    finally:
        await store.close()
        cleanup(prefix)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.claim_batches")
    ap.add_argument("--executions", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=16, help="claims per call and partition")
    ap.add_argument(
        "--callgrind", action="store_true", help="the Redis runs under callgrind (bench.engine_calls)"
    )
    args = ap.parse_args()
    claimed, per = asyncio.run(run(args.executions, args.batch, args.callgrind))
    print(f"{claimed} claims in calls of {args.batch}: Redis {per:.1f} µs per claim (EVALSHA)")


if __name__ == "__main__":
    main()
