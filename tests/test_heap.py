"""Long-running processes settle their heap at start (``cuefast.heap.settle_heap``): what
start-up made is frozen out of the collector's full passes, so a generation-2 collection of a
running server or worker daemon walks only what it made since (unfrozen: 35–70 ms event-loop
stalls every ~20 s under the fleet soak, bench/README.md)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cuefast.config import Settings
from cuefast.heap import settle_heap
from tests.procs import Processes, free_port, process_env, until_healthy
from tests.test_client import ROOT, LiveServer


def test_settle_heap_takes_the_heap_out_of_full_collections() -> None:
    junk = [[i] for i in range(20_000)]  # long-lived objects, like a started server's
    gc.collect()
    before = len(gc.get_objects(generation=2))
    try:
        settle_heap()
        assert gc.get_freeze_count() >= before > 20_000
        assert len(gc.get_objects(generation=2)) < before / 10  # what a full pass walks now
    finally:
        gc.unfreeze()
    del junk


_SETTLED = re.compile(r"heap settled: (\d+) objects frozen")


def _frozen(stderr: str) -> int:
    """The count of the process's "heap settled" log line (0: none)."""
    for line in stderr.splitlines():
        try:
            message = str(json.loads(line).get("message", ""))
        except ValueError:
            continue
        if m := _SETTLED.search(message):
            return int(m.group(1))
    return 0


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_every_server_role_settles_its_heap_at_start(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = process_env(settings, CUEFAST_PORT=str(port), CUEFAST_LOG_FORMAT="json")
    async with (
        Processes(tmp_path / "logs", lifetime=80) as procs,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        serve = procs.start("serve", "serve", env=env)
        dispatcher = procs.start("dispatcher", "dispatcher", env=env)
        await until_healthy(http)
        # serve logs the line before it listens; the dispatcher right after start
        async with asyncio.timeout(30):
            while not _frozen(dispatcher.stderr()):
                await asyncio.sleep(0.1)
        assert _frozen(serve.stderr()) > 50_000  # the imports, the app, the scripts
        assert _frozen(dispatcher.stderr()) > 20_000


_WORKER = (sys.executable, "-m", "cuefast", "worker", "--app", "cf_heap_app:worker")
_APP = """
from cuefast import Worker

worker = Worker()


@worker.handler("quick")
async def quick(payload, ctx):
    return "quick"
"""


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_the_worker_daemon_settles_its_heap_at_start(settings: Settings, tmp_path: Path) -> None:
    live = LiveServer(settings, free_port()).start()
    try:
        (tmp_path / "cf_heap_app.py").write_text(_APP)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
        env.update(
            CUEFAST_API_KEY=live.register(),
            CUEFAST_BASE_URL=live.url,
            PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
        )
        err = tmp_path / "worker.err"
        with err.open("w") as fe:
            proc = subprocess.Popen(
                [*_WORKER, "--log-level", "INFO", "--log-format", "json"],
                env=env,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stderr=fe,
            )
        try:
            async with asyncio.timeout(60):
                while not _frozen(err.read_text()):
                    assert proc.poll() is None, err.read_text()
                    await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) == 0, err.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert _frozen(err.read_text()) > 10_000  # the SDK, the worker, the app
    finally:
        live.stop()
