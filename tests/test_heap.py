"""Server processes settle their heap at start (``cuefast.__main__.settle_heap``): what start-up
made is frozen out of the collector's full passes, so a generation-2 collection of a running
server walks only what it made since (unfrozen: 35–70 ms event-loop stalls every ~20 s under
the fleet soak, bench/README.md)."""

from __future__ import annotations

import asyncio
import gc
import json
import re
from pathlib import Path

import httpx
import pytest

from cuefast.__main__ import settle_heap
from cuefast.config import Settings
from tests.procs import Processes, free_port, process_env, until_healthy


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
