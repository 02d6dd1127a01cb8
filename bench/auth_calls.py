"""Cost of the auth script: 10,000 calls of the pre-rate-limit ``accounts_authenticate.lua`` (lookup only) vs
the current one (lookup + sliding-window count), in the same run.

    .venv/bin/python -m bench.auth_calls [redis-url]     (default redis://127.0.0.1:6379/0)

Prints Redis's own time per EVALSHA (``INFO commandstats``; exact only on a Redis nobody
else uses) and the client-observed time per call (sequential, 64 concurrent). The key's
window is pre-filled with 60,000 entries and time advances 1 ms per call, i.e. the worst
steady state at the default 60,000/min: every call trims one entry and pushes one.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from cuefast.config import load_settings
from cuefast.ids import key_sha
from cuefast.months import month_of
from cuefast.runtime import Runtime
from cuefast.store.accounts import AUTHENTICATE

N = 10_000
OLD_AUTH = """
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {-2} end
  return {-1}
end
local acct = redis.call('HGETALL', ARGV[2] .. id)
if #acct == 0 then return {-1} end
local out = {1}
for i = 1, #acct do out[i + 1] = acct[i] end
return out
"""


async def main(url: str) -> None:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    rt = Runtime(load_settings({}, redis_url=url, key_prefix=prefix, partitions=4))
    await rt.start()
    r, k = rt.store.redis, rt.keys
    try:
        old = r.register_script(OLD_AUTH)
        await r.script_load(old.script)
        sha = key_sha((await rt.accounts.register({"email": "bench@example.com"}))["api_key"])
        res = await rt.store.accounts.authenticate(sha, count=False, now_us=0)
        assert res.account is not None
        await rt.store.accounts.set_fields(res.account.id, {"rate_limit": 10**9})
        clock = [time.time_ns() // 1000]

        def tick() -> int:
            clock[0] += 1000
            return clock[0]

        shard = k.key_shard(sha)
        window = k.key_window(shard, sha)
        for _ in range(60):
            await r.rpush(window, *[str(tick()) for _ in range(1000)])
        print(f"memory of a 60,000-entry window: {await r.memory_usage(window)} bytes")
        month = month_of(clock[0])

        async def call_old() -> Any:
            return await old(
                keys=[k.api_keys(shard), k.rotated_key(sha)], args=[sha, k.account_prefix(shard)]
            )

        async def call_new() -> Any:
            keys = [k.api_keys(shard), k.rotated_key(sha), window, f"{k.shard(shard)}:rl:ip:"]
            return await rt.store.scripts.run(
                AUTHENTICATE,
                keys,
                [
                    *(
                        tick(),
                        sha,
                        k.account_prefix(shard),
                        60,
                        month,
                        1,
                        k.cue_partitions_prefix(shard),
                        "",
                        0,
                    ),
                    *(k.names_prefix(shard), "", "", "", 0),  # no create's name to reserve
                ],
            )

        async def run(fn: Callable[[], Awaitable[Any]], concurrency: int) -> float:
            async def worker() -> None:
                for _ in range(N // concurrency):
                    await fn()

            t = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return (time.perf_counter() - t) * 1e6 / N

        await call_old()
        await call_new()
        for label, fn in (("old", call_old), ("new", call_new)) * 3:
            await r.config_resetstat()
            conc = await run(fn, 64)
            server = (await r.info("commandstats"))["cmdstat_evalsha"]["usec_per_call"]
            seq = await run(fn, 1)
            client = f"client {seq:.0f} µs/call sequential, {conc:.0f} concurrent"
            print(f"{label}: server {server:.1f} µs/call, {client}")
        assert await r.llen(window) == 60_000
    finally:
        keys = [key async for key in r.scan_iter(match=f"{prefix}:*")]
        if keys:
            await r.delete(*keys)
        await rt.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"))
