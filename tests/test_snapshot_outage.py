"""The snapshotter while Redis cannot be reached (a node down, a cluster failing over): one
warning per interval naming the error, no traceback, and it keeps trying."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from cuefast.clock import SystemClock
from cuefast.config import Settings
from cuefast.durability.snapshots import Snapshotter
from cuefast.store import Store
from cuefast.store.connect import connect
from cuefast.store.keys import Keys


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_redis_is_a_warning_not_a_traceback(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    redis = connect(f"redis://127.0.0.1:{_closed_port()}/0")
    store = Store(redis, Keys(settings.key_prefix, 16))
    own = settings.replace(snapshot_interval=0.05)
    # the pool is never reached: taking the lease (Redis) fails first
    snap = Snapshotter(store, own, SystemClock(), pool=object())
    caplog.set_level(logging.WARNING, logger="cuefast.durability.snapshots")
    stopping = asyncio.Event()
    task = asyncio.create_task(snap.run(stopping))
    try:
        async with asyncio.timeout(30):
            while sum("Redis unreachable" in r.getMessage() for r in caplog.records) < 2:
                await asyncio.sleep(0.01)
    finally:
        stopping.set()
        await task
        await redis.aclose()
    records = [r for r in caplog.records if r.name == "cuefast.durability.snapshots"]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in records), records
    assert not any("snapshot cycle failed" in r.getMessage() for r in records)
