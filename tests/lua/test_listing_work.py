"""A listing's Redis work does not grow with the account: the commands ``executions_list.lua``
runs for each §8.3 filter, counted with ``MONITOR``, are the same at 10× the executions. The
9× added are older than the first 600, so the newest of every cell — what decides how the merge
reads (lazily, a part of each cell at a time) — stay the same and only the account grows."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from cuefast.store import Store
from tests.conftest import Backend
from tests.lua.seed import ACCT, CREATED, CUE, SIBLING, S, put_cue, put_execution

WORKERS = ["w0", "w1", "w2"]
CELLS = [("pending", ""), ("delivered", ""), ("success", "reported_success"), ("failed", "reported_failure")]
FILTERS: dict[str, dict[str, Any]] = {
    "none": {},
    "status": {"statuses": ["pending"]},
    "status__in": {"statuses": ["success", "failed"]},
    "cue_id": {"cue_id": CUE},
    "cue_id&status": {"cue_id": CUE, "statuses": ["success"]},
    "outcome_state": {"outcome_state": "reported_success"},
    "triggered_by": {"triggered_by": "manual"},
    "worker_id": {"worker_id": "w0"},
    "worker_id&status": {"worker_id": "w0", "statuses": ["success"]},
}


async def seed(store: Store, rng: random.Random, n: int, hour: int) -> None:
    """``n`` executions of two cues spread over the cells, created in the hour ``hour`` hours
    before CREATED's (the same mix at every size)."""
    for _ in range(n):
        st, os_ = rng.choice(CELLS)
        fields: dict[str, Any] = {"ca": CREATED - hour * 3600 * S + rng.randrange(3600) * S}
        if os_:
            fields["os"] = os_
        if rng.random() < 0.3:
            fields["tb"] = "manual"
        if st != "pending":
            fields["cw"] = rng.choice(WORKERS)
            fields["cla"] = fields["ca"] + S
        await put_execution(store, rng.choice([CUE, SIBLING]), tr="worker", st=st, **fields)


class Monitor:
    """A ``MONITOR`` connection: the commands run between ``start`` and ``stop`` whose
    arguments name this test's keys (the shared server's other clients filtered out)."""

    def __init__(self, url: str, prefix: str) -> None:
        host, _, port = url.split("//", 1)[1].split("/", 1)[0].rpartition(":")
        self.host, self.port, self.prefix = host, int(port), prefix
        self.marker = f"{prefix}:monitor-end"

    async def start(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(b"MONITOR\r\n")
        await self.writer.drain()
        assert (await self.reader.readline()).startswith(b"+OK")

    async def stop(self, store: Store) -> Counter[str]:
        await store.redis.echo(self.marker)  # the last line this monitor needs to read
        seen: Counter[str] = Counter()
        while True:
            line = (await self.reader.readline()).decode(errors="replace")
            if self.marker in line:
                break
            if "lua]" in line and self.prefix in line:
                seen[line.split('"', 2)[1].upper()] += 1
        self.writer.close()
        await self.writer.wait_closed()
        return seen


async def counted(store: Store, url: str, prefix: str) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for name, kwargs in FILTERS.items():
        monitor = Monitor(url, prefix)
        await monitor.start()
        got = await store.executions.listing(ACCT, offset=0, limit=20, **kwargs)
        assert len(got.ids) == min(20, got.total), name
        out[name] = await monitor.stop(store)
    return out


async def test_a_listings_commands_do_not_grow_with_the_account(
    store: Store, backend: Backend, key_prefix: str
) -> None:
    if backend.cluster:
        pytest.skip("MONITOR sees one node; the scripts are the same on a cluster")
    await put_cue(store, CUE)
    await put_cue(store, SIBLING)
    rng = random.Random(14)
    await seed(store, rng, 600, 0)
    small = await counted(store, backend.url, key_prefix)
    await seed(store, rng, 5400, 1)
    large = await counted(store, backend.url, key_prefix)
    for name in FILTERS:
        assert small[name], f"{name}: no command seen"
        assert large[name] == small[name], f"{name}: {dict(small[name])} at 600, {dict(large[name])} at 6,000"
