"""Redis µs (or instructions) per worker claim of ``claims_claim.lua`` in calls of N claims.

    CUEFAST_REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python -m bench.claim_batches \\
        [--executions 4000] [--batch 16] [--callgrind]

Seeds 50 worker cues of one account and ``--executions`` manual executions of them (round
robin), then claims them the way the batch pull does — per partition, ``--batch`` at a time
from the account's work index (count mode) — through the store's own ``Claims.claim``, and
prints the script µs per claim from ``INFO commandstats`` (with ``--callgrind``, on a Redis
under callgrind as for ``bench.engine_calls``: the claims alone are counted and dumped). No
HTTP, no auth. Exact only on a Redis nobody else uses; run it alternated with another checkout
(``PYTHONPATH=<worktree>``) to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

from bench.engine import cleanup, new_store
from bench.script_batches import script_us, seed_worker_executions
from cuefast.clock import SystemClock
from cuefast.store.claims import ClaimRequest, WorkIndex


async def run(executions: int, batch: int, callgrind: bool = False) -> tuple[int, float]:
    """(executions claimed, Redis µs per claim) over ``executions`` claimed ``batch`` per call."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    store = new_store(prefix, 16)
    try:
        await store.preload()
        now = SystemClock().now_us()
        acct, by_p = await seed_worker_executions(store, executions, now)
        claimed = 0
        with script_us(callgrind) as spent:
            for p in sorted(by_p):
                request = [ClaimRequest(WorkIndex(p), batch)]
                while got := (await store.claims.claim(acct, "bench-worker", 300_000_000, now, request))[0]:
                    claimed += len(got)
        return claimed, spent[0] / max(claimed, 1)
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
    print(f"{claimed} claims in calls of {args.batch}: Redis {per:.1f} µs per claim (FCALL)")


if __name__ == "__main__":
    main()
