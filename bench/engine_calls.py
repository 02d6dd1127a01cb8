"""Redis work per scheduled execution: ``INFO commandstats`` (and optionally callgrind) around passes.

    CUEFAST_REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python -m bench.engine_calls [--cues N] [--overlap P]

Seeds ``N`` webhook cues as ``./dev bench engine materialize`` does (cron ``*/5``, all due at one
instant), then runs a cold pass (the scheduler has never seen the cues) and a warm pass (the same
scheduler, the next slot five minutes later), and prints per execution for each: Redis calls and
µs per command (nested script commands included), ``EVALSHA`` µs, and the pass's wall rate.
With ``--callgrind`` the Redis must run under ``valgrind --tool=callgrind --instr-atstart=no``:
instructions are counted only during each pass (``callgrind_control -i on|off``) and a dump is
written after each (``callgrind_annotate`` reads it), deterministic to ~0.1 % on a shared machine.

Exact only on a Redis nobody else uses (a private ``redis-server``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
import uuid

import redis as sync_redis

from bench.engine import _url, cleanup, new_store, seed_cues
from cuefast.clock import FrozenClock
from cuefast.engine.scheduler import Scheduler

DUE = 1_900_000_000_000_000
STEP = 300_000_000  # */5 * * * *


def _stats(r: sync_redis.Redis) -> dict[str, tuple[int, int]]:
    info = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in info.items()}


def _callgrind(pid: int, what: str) -> None:
    subprocess.run(["callgrind_control", *what.split(), str(pid)], check=True, capture_output=True)


async def run(args: argparse.Namespace) -> None:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    r = sync_redis.Redis.from_url(_url())
    pid = int(r.info("server")["process_id"])
    store = new_store(prefix, args.partitions)
    await store.preload()
    clock = FrozenClock(DUE + 100_000)
    try:
        await seed_cues(
            store,
            args.cues,
            cron="*/5 * * * *",
            transport="webhook",
            url="http://127.0.0.1:9/h",
            due=DUE,
            overlap=args.overlap,
        )
        sched = Scheduler(store, clock, batch=args.batch)
        for name, at in (("cold", DUE + 100_000), ("warm", DUE + STEP + 100_000)):
            clock.set(at)
            before = _stats(r)
            if args.callgrind:
                _callgrind(pid, "-i on")
            t0 = time.perf_counter()
            created = await sched.tick()
            dt = time.perf_counter() - t0
            if args.callgrind:
                _callgrind(pid, "-i off")
                _callgrind(pid, "-d")
            after = _stats(r)
            rows = []
            for cmd, (calls, usec) in after.items():
                c0, u0 = before.get(cmd, (0, 0))
                if calls - c0:
                    rows.append((cmd, (calls - c0) / created, (usec - u0) / created))
            rows.sort(key=lambda row: -row[2])
            total = sum(u for _, _, u in rows)
            print(f"{name}: {created} executions in {dt:.3f} s = {created / dt:,.0f}/s")
            for cmd, per_calls, per_us in rows:
                print(f"  {cmd:<18} {per_calls:7.3f} calls  {per_us:6.2f} µs per execution")
            print(f"  (commandstats µs summed, scripts include their commands: {total:.2f})")
    finally:
        await store.close()
        cleanup(prefix)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cues", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, default=int(os.environ.get("CUEFAST_PARTITIONS", "16")))
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--callgrind", action="store_true", help="the Redis runs under callgrind")
    ap.add_argument(
        "--overlap",
        default="allow",
        choices=("allow", "skip", "buffer_one", "cancel_previous"),
        help="the cues' overlap policy (the warm pass finds each cold execution still pending)",
    )
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
