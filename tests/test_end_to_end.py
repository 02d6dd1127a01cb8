"""The real ``cuefast serve`` process: a per-second cron delivered to a real receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from cuefast.config import Settings
from tests.conftest import Api, Backend, delete_prefix
from tests.procs import process_env, until_healthy
from tests.test_dispatcher import Receiver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_per_second_cron_each_slot_once_and_signed(
    backend: Backend, database_url: str, pg_schema: str
) -> None:
    receiver = Receiver()
    await receiver.start()
    port = _free_port()
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
    env.update(
        CUEFAST_REDIS_URL=backend.url,
        CUEFAST_REDIS_CLUSTER=str(backend.cluster).lower(),
        CUEFAST_DATABASE_URL=database_url,
        CUEFAST_DATABASE_SCHEMA=pg_schema,
        CUEFAST_KEY_PREFIX=prefix,
        CUEFAST_PARTITIONS="4",
        CUEFAST_ALLOW_PRIVATE_CALLBACKS="true",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cuefast", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            await until_healthy(client)
            key = (await client.post("/v1/auth/register", json={"email": "e2e@example.com"})).json()[
                "api_key"
            ]
            auth = {"Authorization": f"Bearer {key}"}
            secret = (await client.get("/v1/auth/webhook-secret", headers=auth)).json()["webhook_secret"]
            res = await client.post(
                "/v1/cues",
                headers=auth,
                json={
                    "name": "every-second",
                    "schedule": {"type": "recurring", "cron": "* * * * * *"},
                    "callback": {"url": receiver.url},
                    "payload": {"task": "tick"},
                },
            )
            assert res.status_code == 201, res.text
            cue_id = res.json()["id"]
            async with asyncio.timeout(30):
                while len(receiver.requests) < 4:
                    await asyncio.sleep(0.05)
            await client.patch(f"/v1/cues/{cue_id}", headers=auth, json={"status": "paused"})
            async with asyncio.timeout(15):  # wait until every execution made so far is delivered
                while True:
                    listing = (
                        await client.get(f"/v1/executions?cue_id={cue_id}&limit=100", headers=auth)
                    ).json()
                    if {e["status"] for e in listing["executions"]} == {"success"}:
                        break
                    await asyncio.sleep(0.05)
            slots = []
            for req in receiver.requests:
                h = req["headers"]
                expected = hmac.new(
                    secret.encode(), h["X-CueAPI-Timestamp"].encode() + b"." + req["body"], hashlib.sha256
                ).hexdigest()
                assert h["X-CueAPI-Signature"] == "v1=" + expected
                slots.append(json.loads(req["body"])["scheduled_for"])
            assert len(slots) == len(set(slots)), slots  # each slot delivered once
            assert listing["total"] == len(slots) >= 4
            health = (await client.get("/health")).json()
            assert health["services"]["poller"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert receiver.runner is not None
        await receiver.runner.cleanup()
        delete_prefix(backend, prefix)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err


@pytest.mark.timeout(240)
async def test_killed_dispatcher_process_loses_nothing(api: Api, settings: Settings) -> None:
    """kill -9 mid-delivery → another dispatcher process delivers it once the attempt is stale."""
    receiver = Receiver()
    await receiver.start()
    receiver.mode = "block"
    env = process_env(settings, CUEFAST_WEBHOOK_TIMEOUT_SECONDS="2", CUEFAST_WEBHOOK_STALE_SECONDS="1")
    first = subprocess.Popen([sys.executable, "-m", "cuefast", "dispatcher"], env=env, cwd=ROOT)
    second: subprocess.Popen[bytes] | None = None
    try:
        key = await api.register()
        res = await api.request(
            "POST",
            "/v1/cues",
            key,
            json={
                "name": "c",
                "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
                "callback": {"url": receiver.url},
            },
        )
        cue_id = res.json()["id"]
        eid = (await api.request("POST", f"/v1/cues/{cue_id}/fire", key, json={})).json()["id"]
        async with asyncio.timeout(30):  # the first dispatcher is mid-delivery …
            while not receiver.requests:
                await asyncio.sleep(0.05)
        first.kill()  # … and dies with SIGKILL
        first.wait(10)
        receiver.mode = "ok"
        second = subprocess.Popen([sys.executable, "-m", "cuefast", "dispatcher"], env=env, cwd=ROOT)
        async with asyncio.timeout(100):  # stale after max(1 s, 2 s + 60 s); reclaimed within 5 s more
            while True:
                e = (await api.request("GET", f"/v1/executions/{eid}", key)).json()
                if e["status"] == "success":
                    break
                await asyncio.sleep(0.5)
        assert e["attempts"] == 1 and e["error_message"] is None
        bodies = [json.loads(r["body"]) for r in receiver.requests]
        assert [b["execution_id"] for b in bodies] == [eid, eid]  # at least once: sent again, same id
        assert [b["attempt"] for b in bodies] == [1, 1]  # the unfinished attempt is not counted
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        receiver.unblock.set()
        assert receiver.runner is not None
        await receiver.runner.cleanup()
