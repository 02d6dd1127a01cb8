"""Consumer groups come back on their own (issue 12 A4): a group read whose stream or group is
gone (Redis lost its data, FLUSHDB, ``cuefast restore``) recreates it (MKSTREAM, from the
stream's start) and reads again — outbox and notices, new entries and XAUTOCLAIM — so delivery
never stops until a restart. The FLUSHDB test runs against a redis-server it starts itself."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from cuefast.config import Settings
from cuefast.durability.schema import drop_schema
from cuefast.engine.notices import NoticeSender
from cuefast.store.delivery import Delivery
from cuefast.store.notices import Notices
from cuefast.times import parse_datetime
from tests.conftest import wait_for
from tests.procs import Processes, cuefast_command, process_env
from tests.test_client import free_port
from tests.test_dispatcher import Receiver, drain, env, webhook_cue
from tests.test_fire import fire


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


__all__ = ["env"]


async def test_outbox_group_recreated_on_every_read(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    store, k = api.rt.store, api.rt.keys
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url)
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    assert await sched.tick() == 1
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    for p in range(k.partitions):  # the groups are gone, the entry is still in its stream
        await store.redis.xgroup_destroy(k.outbox(p), Delivery.GROUP)
    assert await store.delivery.reclaim(dispatcher.consumer, 0, 10) == []  # recreated, nothing pending
    for p in range(k.partitions):
        await store.redis.xgroup_destroy(k.outbox(p), Delivery.GROUP)
    assert await drain(dispatcher) == ["success"]  # read from the recreated group's start
    for p in range(k.partitions):  # streams and groups gone altogether
        await store.redis.delete(k.outbox(p))
    assert await store.delivery.read(dispatcher.consumer, 10, 10) == []
    await fire(api, key, cue["id"])
    assert await drain(dispatcher) == ["success"]
    assert len(receiver.requests) == 2


async def test_notice_group_recreated_on_every_read(env: Any) -> None:
    api, clock, _, dispatcher, receiver = env
    store, k = api.rt.store, api.rt.keys
    key = await api.register()
    receiver.mode = "500"
    cue = await webhook_cue(api, key, receiver.url, retry={"max_attempts": 1}, on_failure={"email": False})
    await api.request(
        "PATCH",
        f"/v1/cues/{cue['id']}",
        key,
        json={"on_failure": {"webhook": receiver.url.replace("/hook", "/f")}},
    )
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    for p in range(k.partitions):
        await store.redis.delete(k.notices(p))  # no stream, no group (never created here)
    sender = NoticeSender(store, api.rt.settings, clock, api.rt.webhooks)
    assert await sender.step(reclaim=True, idle_ms=0) == 0  # recreated
    await fire(api, key, cue["id"])
    assert await drain(dispatcher) == ["failed"]  # queues the on_failure webhook
    for p in range(k.partitions):
        await store.redis.xgroup_destroy(k.notices(p), Notices.GROUP)
    receiver.mode = "ok"
    assert await sender.step() == 1
    assert [r["path"] for r in receiver.requests] == ["/hook", "/f"]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_flushdb_then_restore_while_serving_keeps_delivering(
    settings: Settings, tmp_path: Path
) -> None:
    """Server running → FLUSHDB → ``cuefast restore --force`` → a fired cue is delivered within
    10 s, nothing restarted. Its own redis-server on a free loopback port (never the shared one)."""
    if settings.redis_cluster:
        pytest.skip("FLUSHDB of its own single redis-server; a cluster's restore: tests/test_restore.py")
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed")
    rport, hport = free_port(), free_port()
    server = subprocess.Popen(
        [redis_server, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    schema = f"{settings.database_schema}_{uuid.uuid4().hex[:8]}"  # restore reads a whole schema
    own = settings.replace(redis_url=f"redis://127.0.0.1:{rport}/0", database_schema=schema)
    environ = process_env(own, CUEFAST_PORT=str(hport), CUEFAST_SNAPSHOT_INTERVAL="0.2")
    receiver = Receiver()
    await receiver.start()
    r = redis.Redis(port=rport)
    try:
        await wait_for(lambda: _pings(r), 10, "redis-server")
        async with Processes(tmp_path / "logs", lifetime=150) as procs:
            procs.start("serve", "serve", env=environ)
            base = f"http://127.0.0.1:{hport}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                await wait_for(lambda: _answers(http), 60, "the server")
                res = await http.post("/v1/auth/register", json={"email": "flush@example.com"})
                auth = {"Authorization": f"Bearer {res.json()['api_key']}"}
                body = {
                    "name": "hook",
                    "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
                    "callback": {"url": receiver.url},
                }
                cue = (await http.post("/v1/cues", json=body, headers=auth)).json()
                res = await http.post(f"/v1/cues/{cue['id']}/fire", json={}, headers=auth)
                assert res.status_code == 200, res.text
                await wait_for(lambda: len(receiver.requests) == 1, 10, "the first delivery")
                await wait_for(lambda: _snapshotted(own, cue["id"]), 30, "the snapshot of the cue")

                assert r.flushdb()  # this test's own server
                restore = await asyncio.create_subprocess_exec(
                    *cuefast_command(), "restore", "--force", env=environ, stdout=-1, stderr=-1
                )
                out, err = await asyncio.wait_for(restore.communicate(), 60)
                assert restore.returncode == 0, (out, err)
                fired_at = time.monotonic()
                res = await http.post(f"/v1/cues/{cue['id']}/fire", json={}, headers=auth)
                assert res.status_code == 200, res.text
                await wait_for(lambda: len(receiver.requests) == 2, 10, "a delivery after the restore")
                assert time.monotonic() - fired_at < 10
                eid = res.json()["id"]
                assert receiver.requests[1]["headers"]["X-CueAPI-Execution-Id"] == eid
            assert not procs.problems(), procs.problems()
    finally:
        r.close()
        server.kill()
        server.wait(10)
        assert receiver.runner is not None
        await receiver.runner.cleanup()
        await drop_schema(own.database_url, schema)


def _pings(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.ConnectionError:
        return False


async def _answers(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/health")).status_code == 200
    except httpx.HTTPError:
        return False


async def _snapshotted(settings: Settings, cue_id: str) -> bool:
    conn = await asyncpg.connect(settings.database_url)
    try:
        n = await conn.fetchval(
            f'SELECT count(*) FROM "{settings.database_schema}".cues WHERE id = $1', cue_id
        )
    except asyncpg.UndefinedTableError:
        return False
    finally:
        await conn.close()
    return bool(n)
