"""Redis script time of an execution listing over an account's partitions, per filter.

    CUEFAST_REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python -m bench.listing_calls [SIZE] [N]

Seeds one account of ``SIZE`` executions (1,000) as ``./dev bench scale`` does (its cues over 8
of 16 partitions, the same mix of states), then calls ``store.executions.listing`` (limit 21,
what a page of 20 asks for) ``N`` times (1,000) per filter and prints, per listing, the time
Redis spent in the scripts (``INFO commandstats`` ``fcall``/``fcall_ro`` usec: the commands' own
time, without networking or the event loop), the server's whole CPU (``INFO cpu``), the wall
time and the commands it ran (calls per listing, and their own µs: a script's nested commands
count apart). Exact only
on a Redis nobody else uses: it resets the server's statistics.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import time
import uuid

import httpx

from bench.__main__ import ROOT, _cleanup, _free_port, _server_env
from bench.cpu import redis_seconds_async
from bench.scale import PARTITIONS, WORKERS, Seeder, register, wait_healthy
from cuefast.store import Store, connect
from cuefast.store.keys import Keys

FILTERS: tuple[tuple[str, list[str] | None, str | None, str | None], ...] = (
    # label, statuses, triggered_by, worker_id
    ("none", None, None, None),
    ("status=pending", ["pending"], None, None),
    ("status__in=success,failed", ["failed", "success"], None, None),
    ("triggered_by=manual_fire", None, "manual_fire", None),
    ("worker_id=<w0>", None, None, WORKERS[0]),
)
FCALLS = ("cmdstat_fcall", "cmdstat_fcall_ro")


async def run(redis_url: str, size: int, n: int) -> None:
    prefix = f"blist{uuid.uuid4().hex[:8]}"
    env = {**_server_env(prefix), "CUEFAST_REDIS_URL": redis_url, "CUEFAST_PARTITIONS": str(PARTITIONS)}
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cuefast", "api", "--port", str(port)], env=env, cwd=ROOT
    )
    store = Store(connect(redis_url, max_connections=16), Keys(prefix, PARTITIONS))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            await wait_healthy(client, server)
            await store.preload()
            await store.delivery.ensure_groups()
            acct = await register(client, store)
            await Seeder(store, acct).grow(size)
        k = store.keys
        parts = [p for p in range(PARTITIONS) if await store.redis.exists(k.ix_account(p, acct.account_id))]
        print(f"{size:,} executions on partitions {parts}; {n} listings of 21 per filter")
        print("| filter | Redis script µs per listing | Redis CPU µs | wall µs | commands per listing (µs) |")
        print("|---|---|---|---|---|")
        for label, statuses, triggered_by, worker_id in FILTERS:
            listing = functools.partial(
                store.executions.listing,
                acct.account_id,
                offset=0,
                limit=21,
                partitions=parts,
                statuses=statuses,
                triggered_by=triggered_by,
                worker_id=worker_id,
            )
            await listing()
            await store.redis.config_resetstat()
            cpu0 = await redis_seconds_async(store.redis)
            t = time.perf_counter()
            for _ in range(n):
                await listing()
            wall = (time.perf_counter() - t) / n * 1e6
            cpu = (await redis_seconds_async(store.redis) - cpu0) / n * 1e6
            info = await store.redis.info("commandstats")
            script = sum(v["usec"] for name, v in info.items() if name in FCALLS)
            calls = {
                name[8:]: (v["calls"] / n, v["usec"] / n)
                for name, v in info.items()
                if name.startswith("cmdstat_") and v["calls"] >= n // 10 and "resetstat" not in name
            }
            spelled = ", ".join(
                f"{c} {x:.0f} ({us:.0f} µs)" for c, (x, us) in sorted(calls.items(), key=lambda i: -i[1][0])
            )
            print(f"| {label} | {script / n:.0f} | {cpu:.0f} | {wall:.0f} | {spelled} |", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        _cleanup(redis_url, prefix)


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    asyncio.run(run(os.environ["CUEFAST_REDIS_URL"], size, n))


if __name__ == "__main__":
    main()
