"""kill -9 of a Redis Cluster primary under per-second cues: its replica takes over, delivery resumes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from aiohttp import web

from tests.cluster import local_cluster
from tests.procs import cluster_env, free_port, until_healthy
from tests.test_dispatcher import Receiver

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parent.parent
FIRST_PORT = 7106
"""its own cluster (the first free block from 7106): the session's keeps its primaries"""
CUES = 8
RESUME_S = 20.0
"""the bound asserted on the delivery stall (cluster-node-timeout is 2 s)"""


class TimedReceiver(Receiver):
    """A ``Receiver`` that notes when each request arrived (``at``, monotonic)."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        res = await super().handle(request)  # "ok" mode: no await between its append and here
        self.requests[-1]["at"] = time.monotonic()
        return res


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[str]:
    with local_cluster(FIRST_PORT) as url:
        yield url


async def test_a_killed_primary_is_replaced_and_delivery_resumes(
    own_cluster: str, database_url: str, pg_schema: str, tmp_path: Path
) -> None:
    receiver = TimedReceiver()
    await receiver.start()
    port = free_port()
    prefix = f"fo{uuid.uuid4().hex[:8]}"
    env = cluster_env(own_cluster, database_url, pg_schema, prefix)
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "cuefast", "serve", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stderr=log.open("wb"))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await until_healthy(client)
            res = await client.post("/v1/auth/register", json={"email": f"{prefix}@example.com"})
            auth = {"Authorization": f"Bearer {res.json()['api_key']}"}
            for i in range(CUES):
                body = {
                    "name": f"s{i}",
                    "schedule": {"type": "recurring", "cron": "* * * * * *"},
                    "callback": {"url": receiver.url},
                }
                assert (await client.post("/v1/cues", headers=auth, json=body)).status_code == 201
            async with asyncio.timeout(30):
                while len(receiver.requests) < 3 * CUES:
                    await asyncio.sleep(0.05)

            # the primary of the first partition's slot dies
            seed = redis.RedisCluster.from_url(own_cluster)
            node = seed.get_node_from_key(f"{prefix}:{{p00}}")
            seed.close()
            assert node is not None
            victim = redis.Redis(host=node.host, port=int(node.port))
            pid = int(victim.info("server")["process_id"])
            victim.close()
            before = len(receiver.requests)
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            async with asyncio.timeout(RESUME_S + 30):
                while len(receiver.requests) < before + 3 * CUES:  # three more seconds' worth
                    await asyncio.sleep(0.05)
            stalled = [r["at"] for r in receiver.requests[before:]]
            print(f"\ndelivery resumed {stalled[0] - killed:.2f} s after kill -9 of {node.name}")
            assert stalled[0] - killed < RESUME_S

            bodies = [json.loads(r["body"]) for r in receiver.requests]
            ids: dict[tuple[str, str], set[str]] = {}
            for b in bodies:
                ids.setdefault((b["cue_id"], b["scheduled_for"]), set()).add(b["execution_id"])
            assert all(len(v) == 1 for v in ids.values())  # one execution per due slot
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
            assert receiver.runner is not None
            await receiver.runner.cleanup()
            print(log.read_text()[-6000:])
    assert proc.returncode == 0  # the errors logged while the primary was down are expected
