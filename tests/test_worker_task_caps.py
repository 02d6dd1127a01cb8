"""The worker daemon under a task claim cap: two ``Worker`` daemons (the code ``cuefast worker``
runs) against the real server over HTTP never run more handlers of a capped task than its cap,
and every execution still finishes."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from cuefast import AsyncCueFast, Context, Worker
from cuefast.config import Settings
from tests.conftest import wait_for
from tests.procs import Processes, free_port, process_env, until_healthy
from tests.test_worker import Running, _worker_cue, client, finished, live  # noqa: F401  (fixtures)


class Gauge:
    """Handlers of task ``t`` held until ``gate`` opens: how many run now, and the most at once."""

    def __init__(self) -> None:
        self.running = self.peak = 0
        self.gate = asyncio.Event()

    def daemon(self, key: str, url: str, name: str) -> Worker:
        """A worker daemon on ``url`` whose handler of ``t`` is counted here."""
        worker = Worker(api_key=key, base_url=url, worker_id=name, concurrency=4, prefetch=4, wait_seconds=1)

        @worker.handler("t")
        async def handler(payload: dict[str, Any], ctx: Context) -> None:
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                await self.gate.wait()
            finally:
                self.running -= 1

        return worker


@pytest.mark.slow
async def test_two_daemons_share_the_cap(client: AsyncCueFast, live: Any) -> None:
    key = client._core.headers["Authorization"][7:]
    await client.workers.set_task_cap("t", 2)
    g = Gauge()
    cue = await _worker_cue(client, "t")
    ids = [(await client.cues.fire(cue, payload_override={"i": i})).id for i in range(10)]
    async with Running(g.daemon(key, live.url, "a")), Running(g.daemon(key, live.url, "b")):
        await wait_for(lambda: g.running == 2, what="two handlers running")
        delivering = await client.executions.list(status="delivering")
        assert delivering.total == 2  # the cap, over both daemons (prefetch included)
        assert (await client.workers.task_cap("t")).held == 2
        g.gate.set()
        await wait_for(lambda: finished(client, ids), timeout=60, what="all outcomes")
    assert g.peak == 2
    assert (await client.workers.task_cap("t")).held == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_two_api_processes_share_the_cap(settings: Settings, tmp_path: Path) -> None:
    """Issue 17 item 3: the cap holds across API processes, not only within one. Two ``cuefast
    api`` OS processes on one Redis, a daemon on each, a cap of 2: never more than 2 handlers run
    at once, and every execution finishes."""
    ports = [free_port(), free_port()]
    g = Gauge()
    async with Processes(tmp_path / "logs") as procs:
        urls = []
        for i, port in enumerate(ports):
            procs.start(f"api{i}", "api", "--port", str(port), env=process_env(settings))
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            async with httpx.AsyncClient(base_url=url) as probe:
                await until_healthy(probe)
        async with httpx.AsyncClient(base_url=urls[0]) as http:
            res = await http.post("/v1/auth/register", json={"email": f"caps-{uuid.uuid4().hex}@example.com"})
            assert res.status_code == 201, res.text
            key = str(res.json()["api_key"])
        async with AsyncCueFast(key, base_url=urls[1]) as client:
            await client.workers.set_task_cap("t", 2)
            cue = await _worker_cue(client, "t")
            ids = [(await client.cues.fire(cue, payload_override={"i": i})).id for i in range(10)]
            async with Running(g.daemon(key, urls[0], "a")), Running(g.daemon(key, urls[1], "b")):
                await wait_for(lambda: g.running == 2, what="two handlers running")
                assert (await client.executions.list(status="delivering")).total == 2
                assert (await client.workers.task_cap("t")).held == 2
                g.gate.set()
                await wait_for(lambda: finished(client, ids), timeout=60, what="all outcomes")
            assert g.peak == 2
            assert (await client.workers.task_cap("t")).held == 0
        assert procs.problems() == []
