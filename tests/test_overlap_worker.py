"""cancel_previous with the real ``cuefast worker`` daemon: the server cancels the execution a
handler is running (a later slot came due), the daemon learns it from its next lease extension
and stops the handler without reporting an outcome. The cue is made and its slots materialised
in-process under a frozen clock ten minutes in the past (so the live server, on the real clock,
finds them claimable), over the same Redis as the live server."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cuefast import AsyncCueFast, Context, Worker
from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.engine.scheduler import Scheduler
from cuefast.ids import scheduled_execution_id
from cuefast.times import from_datetime, parse_datetime
from tests.conftest import make_api, wait_for
from tests.test_client import LiveServer
from tests.test_worker import Running, _worker_env


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


APP = """
import asyncio
from pathlib import Path

from cuefast import Worker

worker = Worker(worker_id="ov-1", wait_seconds=1)
MARKS = Path({marks!r})


def mark(name, text):
    # whole or not at all: the test polls for the file, then reads it
    tmp = MARKS / ("." + name)
    tmp.write_text(text)
    tmp.replace(MARKS / name)


@worker.handler("long")
async def long(payload, ctx):
    mark("started-" + ctx.execution_id, "x")
    try:
        await asyncio.sleep(120)
    except asyncio.CancelledError:
        mark("stopped-" + ctx.execution_id, "cancelled" if ctx.cancelled else "other")
        raise
    return "ran to the end"
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_worker_stops_the_handler_of_a_cancelled_execution(settings: Settings, tmp_path: Path) -> None:
    server = LiveServer(settings).start()
    clock = FrozenClock(from_datetime(dt.datetime.now(dt.UTC)) - 600_000_000)
    api, rt = await make_api(settings, clock)
    proc: subprocess.Popen[str] | None = None
    try:
        key = await api.register()
        marks = tmp_path / "marks"
        marks.mkdir()
        (tmp_path / "cf_ov_app.py").write_text(textwrap.dedent(APP.format(marks=str(marks))))
        body = {
            "name": "long",
            "transport": "worker",
            "schedule": {"type": "recurring", "cron": "* * * * *"},
            "payload": {"task": "long"},
            "overlap": "cancel_previous",
        }
        cue = (await api.request("POST", "/v1/cues", key, json=body)).json()
        first_slot = parse_datetime(cue["next_run"])
        clock.set(first_slot + 100_000)
        sched = Scheduler(rt.store, clock)
        async with AsyncCueFast(key, base_url=server.url) as client:
            assert await sched.tick() == 1
            p = rt.keys.cue_byte(cue["id"])
            first = scheduled_execution_id(cue["id"], first_slot, p)
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cuefast",
                    "worker",
                    "--app",
                    "cf_ov_app:worker",
                    "--lease-seconds",
                    "3",
                ],
                env=_worker_env(server, key, tmp_path, CUEFAST_WORKER_GRACE_SECONDS="1"),
                cwd=tmp_path,
                stderr=subprocess.PIPE,
                text=True,
            )
            await wait_for((marks / f"started-{first}").exists, timeout=30, what="handler started")
            clock.set(first_slot + 60_000_000 + 100_000)
            assert await sched.tick() == 1  # the next slot: cancels the running one
            second = scheduled_execution_id(cue["id"], first_slot + 60_000_000, p)
            stopped = marks / f"stopped-{first}"
            await wait_for(stopped.exists, timeout=30, what="the cancelled handler stopped")
            assert stopped.read_text() == "cancelled"
            await wait_for((marks / f"started-{second}").exists, timeout=30, what="the next slot runs")
            e = await client.executions.get(first)
            assert e.status == "cancelled" and e.outcome is None
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.to_thread(proc.communicate, timeout=60)
            assert proc.returncode == 0, err
            assert f"execution {first} cancelled by its cue's overlap policy" in err
            assert "Traceback" not in err
            assert (await client.executions.get(first)).outcome is None  # never reported
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        await api.client.aclose()
        await rt.close()
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_sync_handler_sees_ctx_cancelled_and_its_result_is_not_reported(settings: Settings) -> None:
    """A sync handler cannot be interrupted: the daemon sets ``ctx.cancelled``, frees its slot
    and drops whatever the handler returns afterwards."""
    server = LiveServer(settings).start()
    clock = FrozenClock(from_datetime(dt.datetime.now(dt.UTC)) - 600_000_000)
    api, rt = await make_api(settings, clock)
    try:
        key = await api.register()
        body = {
            "name": "sync",
            "transport": "worker",
            "schedule": {"type": "recurring", "cron": "* * * * *"},
            "payload": {"task": "sync"},
            "overlap": "cancel_previous",
        }
        cue = (await api.request("POST", "/v1/cues", key, json=body)).json()
        first_slot = parse_datetime(cue["next_run"])
        clock.set(first_slot + 100_000)
        sched = Scheduler(rt.store, clock)
        assert await sched.tick() == 1
        first = scheduled_execution_id(cue["id"], first_slot, rt.keys.cue_byte(cue["id"]))
        started, saw = threading.Event(), threading.Event()
        release = threading.Event()

        worker = Worker(api_key=key, base_url=server.url, worker_id="sync-1", lease_seconds=3, wait_seconds=1)

        @worker.handler("sync")
        def sync(payload: dict[str, Any], ctx: Context) -> str:
            if ctx.execution_id != first:
                return "the next slot"
            started.set()
            while not ctx.cancelled and not release.is_set():
                time.sleep(0.05)
            if ctx.cancelled:
                saw.set()
            release.wait(30)
            return "finished anyway"

        async with AsyncCueFast(key, base_url=server.url) as client, Running(worker):
            await wait_for(started.is_set, timeout=30, what="handler started")
            clock.set(first_slot + 60_000_000 + 100_000)
            assert await sched.tick() == 1
            await wait_for(saw.is_set, timeout=30, what="ctx.cancelled seen")
            assert worker.stats.cancelled == 1
            release.set()
            second = scheduled_execution_id(cue["id"], first_slot + 60_000_000, rt.keys.cue_byte(cue["id"]))
            done = await wait_for(
                lambda: _outcome(client, second), timeout=30, what="the next slot's outcome"
            )
            assert done == "the next slot"
            e = await client.executions.get(first)
            assert e.status == "cancelled" and e.outcome is None  # the late return is dropped
    finally:
        release.set()
        await api.client.aclose()
        await rt.close()
        server.stop()


async def _outcome(client: AsyncCueFast, execution_id: str) -> str | None:
    e = await client.executions.get(execution_id)
    return None if e.outcome is None else str(e.outcome.result)
