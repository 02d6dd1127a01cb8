"""``cuefast health --role R`` against real processes: 0 while this host's process of the role
heartbeats, 1 once it has stopped or never ran (``cuefast/health.py``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cuefast.config import Settings
from tests.procs import Processes, process_env
from tests.test_client import ROOT, LiveServer, free_port


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


async def _health(role: str, env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cuefast",
        "health",
        "--role",
        role,
        *args,
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


async def _until(role: str, env: dict[str, str], code: int, *args: str, timeout: float = 30) -> str:
    """Probe until it answers ``code`` (each probe is a real ``cuefast health`` process)."""
    deadline = time.monotonic() + timeout
    while True:
        got, text = await _health(role, env, *args)
        if got == code:
            return text
        assert time.monotonic() < deadline, f"health --role {role} still {got}: {text}"


async def test_server_roles(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = process_env(settings, CUEFAST_PORT=str(port), CUEFAST_SNAPSHOT_INTERVAL="1")
    for role in ("scheduler", "dispatcher", "snapshotter"):  # nothing runs yet
        code, text = await _health(role, env)
        assert code == 1 and f"no {role} process on host" in text, text
    code, text = await _health("api", env)
    assert code == 1 and "ConnectError" in text, text
    async with Processes(tmp_path / "logs") as procs:
        procs.start("api", "api", env=env)
        for role in ("scheduler", "dispatcher", "snapshotter"):
            procs.start(role, role, env=env)
        for role in ("api", "scheduler", "dispatcher", "snapshotter"):
            text = await _until(role, env, 0)
            assert "healthy" in text, text
        assert "answered 200 (healthy)" in await _until("api", env, 0)
        assert await procs.stop("dispatcher") == 0  # a graceful stop leaves the process set
        code, text = await _health("dispatcher", env)
        assert code == 1 and "no dispatcher process" in text, text
        code, _ = await _health("scheduler", env)
        assert code == 0  # the others are still up
        assert await procs.stop("api") == 0
        code, text = await _health("api", env)
        assert code == 1, text
        assert procs.problems() == []


WORKER_APP = """
from cuefast import Worker

worker = Worker(wait_seconds=1)


@worker.handler("t")
def t(payload):
    return None
"""


async def test_worker_role(settings: Settings, tmp_path: Path) -> None:
    live = LiveServer(settings).start()
    try:
        key = live.register()
        (tmp_path / "cf_health_app.py").write_text(WORKER_APP)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
        env.update(
            CUEFAST_API_KEY=key,
            CUEFAST_BASE_URL=live.url,
            CUEFAST_WORKER_ID="health-probe-worker",
            PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
        )
        code, text = await _health("worker", env)
        assert code == 1 and "no worker 'health-probe-worker'" in text, text
        proc = subprocess.Popen(
            [sys.executable, "-m", "cuefast", "worker", "--app", "cf_health_app:worker"],
            env=env,
            cwd=tmp_path,
            stderr=subprocess.DEVNULL,
        )
        try:
            text = await _until("worker", env, 0)
            assert "worker health-probe-worker heartbeated" in text, text
            code, text = await _health("worker", env, "--worker-id", "someone-else")
            assert code == 1 and "no worker 'someone-else'" in text, text
        finally:
            proc.terminate()
            assert proc.wait(30) == 0
        bad = {**env, "CUEFAST_API_KEY": "cue_sk_" + "0" * 32}
        code, text = await _health("worker", bad)
        assert code == 1 and "answered 401" in text, text
    finally:
        live.stop()
