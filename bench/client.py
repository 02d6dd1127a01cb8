"""Client CPU per Redis round trip: redis-py's pooled asyncio client against the store's wire.

``./dev bench client [--calls N] [--callers C]``: C concurrent loops make N calls in all of
each shape (one ``HGETALL`` of a 20-field hash, one ``EVALSHA``, a pipeline/batch of three),
first through ``cuefast.store.connect`` (redis-py, hiredis parser), then through
``cuefast.store.wire.Wire``; prints the process's CPU µs per call and calls/s. Keys go under
a fresh prefix that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable

import uvloop

from cuefast.store import connect
from cuefast.store.wire import Wire


async def _run(calls: int, callers: int, fn: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(CPU µs per call, calls/s) of ``calls`` calls of ``fn`` by ``callers`` concurrent loops."""
    per = calls // callers

    async def loop() -> None:
        for _ in range(per):
            await fn()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(callers)))
    done = per * callers
    return (time.process_time() - cpu) / done * 1e6, done / (time.perf_counter() - wall)


async def _main(url: str, calls: int, callers: int) -> None:
    client = connect(url)
    wire = Wire.of(client)
    key = f"bench-client-{uuid.uuid4().hex[:8]}:h"
    await client.hset(key, mapping={f"f{i}": "x" * 20 for i in range(20)})
    sha = await client.script_load("return redis.call('HGETALL', KEYS[1])")

    async def py_pipe() -> object:
        async with client.pipeline(transaction=False) as p:
            # one statement each: redis-py types an asyncio pipeline's commands as awaitables,
            # not as the pipeline they return
            p.hgetall(key)
            p.hgetall(key)
            p.evalsha(sha, 1, key)
            return await p.execute()

    async def wire_pipe() -> object:
        return await wire.pipeline().hgetall(key).hgetall(key).evalsha(sha, 1, key).execute()

    shapes: list[tuple[str, Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]] = [
        ("HGETALL", lambda: client.hgetall(key), lambda: wire.pipeline().hgetall(key).execute()),
        ("EVALSHA", lambda: client.evalsha(sha, 1, key), lambda: wire.call("EVALSHA", sha, 1, key)),
        (
            "3 commands",
            py_pipe,
            lambda: wire.pipeline().hgetall(key).hgetall(key).evalsha(sha, 1, key).execute(),
        ),
    ]
    try:
        print(f"{calls} calls per row, {callers} concurrent callers, pid {os.getpid()}")
        print("| round trip | redis-py CPU µs/call | calls/s | wire CPU µs/call | calls/s |")
        print("|---|---|---|---|---|")
        for name, py, wired in shapes:
            await _run(calls // 10, callers, py)  # warm both up
            await _run(calls // 10, callers, wired)
            a, b = await _run(calls, callers, py), await _run(calls, callers, wired)
            print(f"| {name} | {a[0]:.1f} | {a[1]:,.0f} | {b[0]:.1f} | {b[1]:,.0f} |")
    finally:
        await client.delete(key)
        await wire.aclose()
        await client.aclose()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench client")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--callers", type=int, default=50)
    args = parser.parse_args(argv)
    url = os.environ.get("CUEFAST_REDIS_URL", "redis://127.0.0.1:6379/0")
    uvloop.run(_main(url, args.calls, args.callers))
