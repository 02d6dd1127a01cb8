"""No secret in any log line: a real ``cuefast serve`` at DEBUG, driven with every kind of secret.

API keys (current, rotated, wrong), webhook and alert secrets (read, regenerated, used to sign
deliveries), the passwords in the Redis (a private ``redis-server`` with ``requirepass``),
PostgreSQL and SMTP URLs, the metrics token, the key-reveal and session secrets: none may appear in what
the process writes, whatever the level (issue 16 item 6).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from cuefast.config import Settings
from tests.procs import Processes, free_port, process_env, until_healthy
from tests.test_dispatcher import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

REDIS_PASSWORD = "redis-pw-Zq81xWv0"
PG_PASSWORD = "pg-pw-Kd72hLq5"
SMTP_PASSWORD = "smtp-pw-Tn44pRe9"
METRICS_TOKEN = "metrics-token-Yb55gHs2"
REVEAL_SECRET = "reveal-secret-Uc39vNm6"
SESSION_SECRET = "session-secret-Wp61aLk8-0123456789abcdef"


@pytest.fixture
async def private_redis() -> AsyncIterator[str]:
    """A redis-server of this test's own that asks for a password (the URL to reach it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--requirepass", REDIS_PASSWORD, "--maxmemory-policy", "noeviction"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        yield f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` for its user (PostgreSQL here trusts local users: it is ignored)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or "postgres"
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


async def test_no_secret_reaches_the_log(settings: Settings, private_redis: str, tmp_path: Path) -> None:
    if not urlsplit(settings.database_url).hostname:
        pytest.skip("needs PostgreSQL over TCP")
    receiver = Receiver()
    await receiver.start()
    port = free_port()
    env = process_env(
        settings.replace(
            redis_url=private_redis, database_url=with_password(settings.database_url, PG_PASSWORD)
        ),
        CUEFAST_PORT=str(port),
        CUEFAST_LOG_LEVEL="DEBUG",
        CUEFAST_LOG_FORMAT="json",
        CUEFAST_SMTP_URL=f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:{free_port()}",
        CUEFAST_METRICS_TOKEN=METRICS_TOKEN,
        CUEFAST_KEY_REVEAL_SECRET=REVEAL_SECRET,
        CUEFAST_SESSION_SECRET=SESSION_SECRET,
        CUEFAST_SNAPSHOT_INTERVAL="0.5",
    )
    secrets = [REDIS_PASSWORD, PG_PASSWORD, SMTP_PASSWORD, METRICS_TOKEN, REVEAL_SECRET, SESSION_SECRET]
    try:
        async with (
            Processes(tmp_path / "logs", lifetime=80) as procs,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
        ):
            proc = procs.start("serve", "serve", env=env)
            await until_healthy(http)
            reg = await http.post("/v1/auth/register", json={"email": "secrets@example.com"})
            assert reg.status_code == 201, reg.text
            key = reg.json()["api_key"]
            auth = {"Authorization": f"Bearer {key}"}
            secret = (await http.get("/v1/auth/webhook-secret", headers=auth)).json()["webhook_secret"]
            alert = (await http.get("/v1/auth/alert-webhook-secret", headers=auth)).json()
            secrets += [key, secret, alert["alert_webhook_secret"]]
            confirm = {**auth, "X-Confirm-Destructive": "true"}
            regen = await http.post("/v1/auth/webhook-secret/regenerate", headers=confirm)
            secrets.append(regen.json()["webhook_secret"])
            for url in (receiver.url, "http://127.0.0.1:1/refused"):  # delivered; failed (on_failure e-mail)
                res = await http.post(
                    "/v1/cues",
                    headers=auth,
                    json={
                        "name": f"c{len(secrets)}-{url[-4:]}",
                        "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
                        "callback": {"url": url, "headers": {"Authorization": "Bearer callback-token-Pq2"}},
                        "retry": {"max_attempts": 1},
                        "on_failure": {"email": True},
                    },
                )
                assert res.status_code == 201, res.text
                fired = await http.post(f"/v1/cues/{res.json()['id']}/fire", headers=auth, json={})
                assert fired.status_code == 200, fired.text
            secrets.append("callback-token-Pq2")
            for bad in (key[:-4] + "abcd", "cf_sk_" + "0" * 32, "not-a-key"):  # wrong keys: 401s
                assert (
                    await http.get("/v1/cues", headers={"Authorization": f"Bearer {bad}"})
                ).status_code == 401
                secrets.append(bad)
            old = key
            rotated = await http.post("/v1/auth/key/regenerate", headers=confirm)
            assert rotated.status_code == 200, rotated.text
            key = rotated.json()["api_key"]
            secrets.append(key)
            assert (await http.get("/v1/cues", headers={"Authorization": f"Bearer {old}"})).status_code == 401
            bad_metrics = await http.get("/metrics", headers={"Authorization": "Bearer wrong-metrics-Zx9"})
            assert bad_metrics.status_code == 401
            secrets.append("wrong-metrics-Zx9")
            assert (
                await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            ).status_code == 200
            async with asyncio.timeout(30):  # the delivery signed with the regenerated secret arrived,
                while not receiver.requests or "notice not sent" not in proc.stderr():  # the mail failed
                    await asyncio.sleep(0.1)
            assert receiver.requests[0]["headers"]["Authorization"] == "Bearer callback-token-Pq2"
            await asyncio.sleep(1.2)  # two snapshot passes have logged what they wrote
    finally:
        assert receiver.runner is not None
        await receiver.runner.cleanup()
    log = procs.procs["serve"].stderr() + procs.procs["serve"].out.read_text(errors="replace")
    assert '"level": "DEBUG"' in log or "DEBUG" in log  # the test saw the chattiest level
    assert "request_id" in log or "backends" in log
    leaked = [s for s in secrets if s in log]
    assert not leaked, leaked
