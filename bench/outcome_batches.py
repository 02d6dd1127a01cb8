"""Redis µs per outcome of ``outcomes_record.lua`` in calls of N outcomes (``Outcomes.record_many``).

    CUEFAST_REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python -m bench.outcome_batches \
        [--outcomes 4000] [--batch 16]

Seeds 50 worker cues of one account and ``--outcomes`` manual executions of them (round robin),
then records a success for each through the store's own ``record_many``, ``--batch`` per call
and partition — what a turn's outcomes of one account, or a worker's batch, cost Redis — and
prints the script µs per outcome from ``INFO commandstats`` (with ``--callgrind``, on a
Redis under callgrind as for ``bench.engine_calls``: the recording alone is counted and
dumped). No HTTP, no auth. Exact only on a Redis nobody else uses (a private
``redis-server``); run it alternated with another checkout (``PYTHONPATH=<worktree>``) to
compare.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

from bench.engine import cleanup, new_store
from bench.script_batches import script_us, seed_worker_executions
from cuefast.clock import SystemClock
from cuefast.store.outcomes import Outcome


async def run(outcomes: int, batch: int, callgrind: bool = False) -> float:
    """Redis µs per outcome over ``outcomes`` outcomes recorded ``batch`` per call."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    store = new_store(prefix, 16)
    try:
        await store.preload()
        now = SystemClock().now_us()
        acct, by_p = await seed_worker_executions(store, outcomes, now)
        with script_us(callgrind) as spent:
            for eids in by_p.values():
                for i in range(0, len(eids), batch):
                    rows = [
                        Outcome(e, '{"success":true}', True, "reported_success", "")
                        for e in eids[i : i + batch]
                    ]
                    await store.outcomes.record_many(acct, rows, now)
        return spent[0] / outcomes
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
    print(f"{args.outcomes} outcomes in calls of {args.batch}: Redis {per:.1f} µs per outcome (FCALL)")


if __name__ == "__main__":
    main()
