"""The worker daemon under a task claim cap: two ``Worker`` daemons (the code ``cuefast worker``
runs) against the real server over HTTP never run more handlers of a capped task than its cap,
and every execution still finishes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cuefast import AsyncCueFast, Context, Worker
from tests.conftest import wait_for
from tests.test_worker import Running, _worker_cue, client, finished, live  # noqa: F401  (fixtures)


@pytest.mark.slow
async def test_two_daemons_share_the_cap(client: AsyncCueFast, live: Any) -> None:
    key = client._core.headers["Authorization"][7:]
    await client.workers.set_task_cap("t", 2)
    running = peak = 0
    gate = asyncio.Event()

    def daemon(name: str) -> Worker:
        worker = Worker(
            api_key=key, base_url=live.url, worker_id=name, concurrency=4, prefetch=4, wait_seconds=1
        )

        @worker.handler("t")
        async def handler(payload: dict[str, Any], ctx: Context) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await gate.wait()
            finally:
                running -= 1

        return worker

    cue = await _worker_cue(client, "t")
    ids = [(await client.cues.fire(cue, payload_override={"i": i})).id for i in range(10)]
    async with Running(daemon("a")), Running(daemon("b")):
        await wait_for(lambda: running == 2, what="two handlers running")
        delivering = await client.executions.list(status="delivering")
        assert delivering.total == 2  # the cap, over both daemons (prefetch included)
        assert (await client.workers.task_cap("t")).held == 2
        gate.set()
        await wait_for(lambda: finished(client, ids), timeout=60, what="all outcomes")
    assert peak == 2
    assert (await client.workers.task_cap("t")).held == 0
