"""The engine's invariants with real, separate OS processes over hundreds of cues.

Two ``cuefast scheduler`` and three ``cuefast dispatcher`` processes (the venv's console
script) share the test Redis under the test's key prefix and deliver a per-second cron
(``* * * * * *``, ``catch_up: all``) of 400 cues to a real HTTP receiver on 127.0.0.1. The
cues are created in-process through the cue service (what ``POST /v1/cues`` runs), under
two accounts, while the processes boot. The processes use the test PostgreSQL and schema
(no embedded servers). Every check is against what the cron defines and what the receiver
saw, computed independently of the engine (slots are whole seconds from the cue's first
``next_run``; the signature is recomputed with hmac/hashlib):

* each (cue, scheduled_for) from the cue's first ``next_run`` up to its ``next_run`` when
  the schedulers stopped has exactly one execution — no gap, no duplicate;
* every execution is ``success`` after one attempt, and was received; every request carries
  a valid signature, its own execution id, slot and attempt number.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cuefast.config import Settings
from cuefast.services.cue_input import parse_create, parse_patch
from cuefast.store.delivery import Delivery
from tests.conftest import Api
from tests.procs import Processes, process_env
from tests.test_dispatcher import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """The processes run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


CUES = 400
SECOND = 1_000_000
# A webhook timeout of 5 s makes the stale window max(1 s, 5 s + 60 s) = 65 s.
ENV = {"CUEFAST_WEBHOOK_TIMEOUT_SECONDS": "5", "CUEFAST_WEBHOOK_STALE_SECONDS": "1"}
STALE_MS = 65_000


class Recorder(Receiver):
    """Records every request as it arrives, answers 200 after ``delay`` seconds of 'work'."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append({"headers": dict(request.headers), "body": body, "at": time.monotonic()})
        await asyncio.sleep(self.delay)
        return web.Response(status=200)


def _us(iso: str) -> int:
    dt = datetime.fromisoformat(iso)
    return (int(dt.timestamp()) * SECOND) + dt.microsecond


async def until(cond: Any, timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll the coroutine function ``cond`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)


class Cluster:
    """The processes, the receiver, the cues and the means to inspect Redis."""

    def __init__(self, api: Api, settings: Settings, procs: Processes, receiver: Recorder) -> None:
        self.api = api
        self.redis = api.rt.store.redis
        self.keys = api.rt.store.keys
        self.store = api.rt.store
        self.settings = settings
        self.procs = procs
        self.receiver = receiver
        self.cues: dict[str, tuple[str, int]] = {}  # cue id → (account secret, first next_run µs)
        self.owners: dict[str, Any] = {}  # cue id → its Account
        self.env: dict[str, str] = {}

    async def start(self) -> None:
        """Start the five processes, create the cues while they boot, wait until they run."""
        env = self.env = process_env(self.settings, **ENV)
        for i in range(2):
            self.procs.start(f"scheduler-{i}", "scheduler", env=env)
        for i in range(3):
            self.procs.start(f"dispatcher-{i}", "dispatcher", env=env)
        await self.create_cues()  # slots due before the schedulers run fire then (catch_up: all)
        for name in self.procs.procs:
            await self.procs.wait_for_log(name, f"{name.split('-')[0]} running")

        async def groups() -> bool:  # consumers appear only once they read an entry (Redis 7.0)
            for p in range(self.keys.partitions):
                try:
                    if not await self.redis.xinfo_groups(self.keys.outbox(p)):
                        return False
                except Exception:  # no stream yet
                    return False
            return True

        await until(groups, 30, "the dispatchers' consumer group on every partition")

    async def create_cues(self) -> None:
        accounts = []
        for _ in range(2):
            key = await self.api.register()
            res = await self.api.request("GET", "/v1/auth/webhook-secret", key)
            accounts.append((key, res.json()["webhook_secret"]))

        rt = self.api.rt
        owners = [await rt.accounts.authenticate(f"Bearer {key}") for key, _ in accounts]

        async def create(i: int) -> None:  # what POST /v1/cues does, without the HTTP layer
            body = {
                "name": f"tick-{i}",
                "schedule": {"type": "recurring", "cron": "* * * * * *"},
                "catch_up": "all",
                "callback": {"url": self.receiver.url},
                "payload": {"i": i},
            }
            before = time.time_ns() // 1000
            cue = await rt.cues.create(owners[i % 2], parse_create(body))
            after = time.time_ns() // 1000
            first = _us(cue["next_run"])
            assert first % SECOND == 0 and before < first <= after + SECOND  # the next whole second
            self.cues[cue["id"]] = (accounts[i % 2][1], first)
            self.owners[cue["id"]] = owners[i % 2]

        began = time.monotonic()
        for start in range(0, CUES, 50):
            await asyncio.gather(*(create(i) for i in range(start, min(start + 50, CUES))))
        print(f"{CUES} cues created in {time.monotonic() - began:.2f} s")

    async def wait_received(self, n: int, timeout: float = 30) -> None:
        async def enough() -> bool:
            return len(self.receiver.requests) >= n

        await until(enough, timeout, f"{n} deliveries (got {len(self.receiver.requests)})")

    async def executions(self) -> dict[str, dict[str, str]]:
        """Every execution of our cues: id → {cue, sf, st, att}."""
        ids = [
            eid
            for cue_id in self.cues
            for eid in (await self.store.executions.listing("", offset=0, limit=10**6, cue_id=cue_id)).ids
        ]
        rows = await self.store.executions.fields(ids, ["cue", "sf", "st", "att"])
        out = {}
        for eid, row in zip(ids, rows, strict=True):
            assert row is not None, f"execution {eid} is indexed but gone"
            out[eid] = {k: v or "" for k, v in row.items()}
        return out

    async def next_runs(self) -> dict[str, int]:
        rows = await self.store.cues.get_many(list(self.cues))
        return {cid: int(row["nr"]) for cid, row in zip(self.cues, rows, strict=True)}

    async def pending_of(self, consumer: str) -> list[tuple[int, str, str]]:
        """(partition, stream entry id, execution id) read by ``consumer`` and never acknowledged."""
        out = []
        for p in range(self.keys.partitions):
            stream = self.keys.outbox(p)
            rows = await self.redis.xpending_range(
                stream, Delivery.GROUP, min="-", max="+", count=100_000, consumername=consumer
            )
            for row in rows:
                entry_id = str(row["message_id"])
                ((_, fields),) = await self.redis.xrange(stream, min=entry_id, max=entry_id)
                out.append((p, entry_id, str(fields["e"])))
        return out

    async def consumer_pids(self) -> set[int]:
        """Pids of the dispatchers that read outbox entries (a consumer's name holds its pid)."""
        names = set()
        for p in range(self.keys.partitions):
            names |= {
                str(r["name"]) for r in await self.redis.xinfo_consumers(self.keys.outbox(p), Delivery.GROUP)
            }
        return {int(name.rsplit("-", 2)[1]) for name in names}

    async def busy_dispatcher(self, minimum: int) -> tuple[str, str]:
        """(consumer, process name) of a dispatcher with ``minimum`` entries read and not finished."""

        async def busy() -> str | None:
            counts = await self.pending_counts()
            name, n = max(counts.items(), key=lambda kv: kv[1], default=("", 0))
            return name if n >= minimum else None

        consumer = await until(busy, 20, f"a dispatcher with {minimum} deliveries in flight", every=0.01)
        pid = int(consumer.rsplit("-", 2)[1])
        (name,) = [n for n, p in self.procs.procs.items() if p.pid == pid]
        return consumer, name

    async def pending_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in range(self.keys.partitions):
            summary = await self.redis.xpending(self.keys.outbox(p), Delivery.GROUP)
            for c in summary["consumers"]:
                counts[str(c["name"])] = counts.get(str(c["name"]), 0) + int(c["pending"])
        return counts

    def check(self, execs: dict[str, dict[str, str]], final_nr: dict[str, int]) -> dict[str, int]:
        """The invariants (module docstring); returns how often each execution was received."""
        slots: dict[str, list[int]] = {cid: [] for cid in self.cues}
        for e in execs.values():
            slots[e["cue"]].append(int(e["sf"]))
        for cid, (_, first) in self.cues.items():
            expected = list(range(first, final_nr[cid], SECOND))  # what `* * * * * *` defines
            assert sorted(slots[cid]) == expected, (cid, sorted(slots[cid]), expected)
        statuses = {(e["st"], e["att"]) for e in execs.values()}
        assert statuses == {("success", "1")}, statuses
        received: dict[str, int] = {}
        for req in self.receiver.requests:
            h, body = req["headers"], req["body"]
            eid = h["X-CueAPI-Execution-Id"]
            e = execs[eid]  # KeyError: a delivery of an execution that does not exist
            secret = self.cues[e["cue"]][0]
            mac = hmac.new(secret.encode(), h["X-CueAPI-Timestamp"].encode() + b"." + body, hashlib.sha256)
            assert h["X-CueAPI-Signature"] == "v1=" + mac.hexdigest(), eid
            doc = json.loads(body)
            assert doc["execution_id"] == eid and doc["cue_id"] == e["cue"] == h["X-CueAPI-Cue-Id"]
            assert _us(h["X-CueAPI-Scheduled-For"]) == _us(doc["scheduled_for"]) == int(e["sf"])
            assert h["X-CueAPI-Attempt"] == "1" and doc["attempt"] == 1
            received[eid] = received.get(eid, 0) + 1
        assert set(received) == set(execs), set(execs) - set(received)  # every execution arrived
        return received


async def _stop_schedulers(cluster: Cluster) -> dict[str, int]:
    """SIGTERM the schedulers still running; then every cue's next_run is final."""
    codes = await cluster.procs.stop_all([n for n in cluster.procs.procs if n.startswith("scheduler")])
    assert set(codes.values()) <= {0}, codes
    final = await cluster.next_runs()
    # Pause every cue, then run a scheduler again: it fires nothing more, but keeps doing its
    # other duties the dispatchers rely on (attempts handed back by a dispatcher whose host
    # could not keep up come back through the delayed zset; due retries).
    rt = cluster.api.rt
    pause = parse_patch({"status": "paused"})
    for cue_id, account in cluster.owners.items():
        await rt.cues.update(account, cue_id, pause)
    cluster.procs.start("scheduler-after", "scheduler", env=cluster.env)
    await cluster.procs.wait_for_log("scheduler-after", "scheduler running")
    return final


async def test_two_schedulers_three_dispatchers_each_slot_once(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    """Five processes, 400 per-second cues for a few seconds. One dispatcher gets SIGTERM
    while it has deliveries in flight: it finishes and records them before it exits (its
    pending entries are empty), the other two carry on. With nobody killed every execution
    is also received exactly once."""
    receiver = Recorder(delay=0.2)
    await receiver.start()
    try:
        async with Processes(tmp_path / "logs", lifetime=80) as procs:
            cluster = Cluster(api, settings, procs, receiver)
            await cluster.start()
            await cluster.wait_received(2 * CUES)
            consumer, stopped = await cluster.busy_dispatcher(20)
            assert await procs.stop(stopped) == 0  # graceful: drains its in-flight deliveries
            assert await cluster.pending_of(consumer) == []
            await cluster.wait_received(len(receiver.requests) + 2 * CUES)
            final_nr = await _stop_schedulers(cluster)

            async def delivered() -> dict[str, dict[str, str]] | None:
                execs = await cluster.executions()
                return execs if all(e["st"] == "success" for e in execs.values()) else None

            execs = await until(delivered, 30, "every execution delivered", every=0.2)
            received = cluster.check(execs, final_nr)
            assert len(execs) >= 4 * CUES
            assert set(received.values()) == {1}
            dispatchers = {p.pid for n, p in procs.procs.items() if n.startswith("dispatcher")}
            assert await cluster.consumer_pids() == dispatchers  # all three took part
            codes = await procs.stop_all(list(procs.procs))
            assert set(codes.values()) == {0}, codes
            assert not procs.problems(), procs.problems()
    finally:
        assert receiver.runner is not None
        await receiver.runner.cleanup()


REAL_WAIT = os.environ.get("CUEFAST_TEST_REAL_STALE", "") in ("1", "true")


@pytest.mark.parametrize(
    "takeover",
    [
        "aged",
        pytest.param(
            "real-wait",
            marks=[
                pytest.mark.skipif(not REAL_WAIT, reason="waits the real 65 s; CUEFAST_TEST_REAL_STALE=1"),
                pytest.mark.timeout(180),
            ],
        ),
    ],
)
async def test_kill_9_one_scheduler_and_one_dispatcher_mid_run(
    api: Api, settings: Settings, tmp_path: Path, takeover: str
) -> None:
    """kill -9 of a scheduler and of a dispatcher that holds deliveries in flight.

    The receiver takes 0.5 s per request, so deliveries are always in flight; the dispatcher
    killed is the one with the most unacknowledged outbox entries at that moment, and the
    test requires that it died holding some (``stranded``) and that the receiver had
    already received some of them (killed mid-request). Then:

    * the surviving scheduler keeps every cue's slots contiguous (none lost, none twice) —
      what a scheduler remembers between its atomic ``schedule_materialize.lua`` calls (the
      next runs it set) is only a plan the script checks against the cue before it writes;
    * the surviving dispatchers deliver everything else, and the stranded executions stay
      ``pending``/``delivering`` — never finished without their entry acknowledged;
    * after the stale window the survivors take the stranded entries over (XAUTOCLAIM on
      their 5-s reclaim pass) and deliver them with the same attempt number; executions
      received twice are only stranded ones (at least once, the id lets receivers dedupe).

    The stale window is max(CUEFAST_WEBHOOK_STALE_SECONDS, timeout + 60 s) = 65 s. ``aged``
    makes exactly those entries stale instead of waiting: it sets their stream idle time
    past the window (XCLAIM … IDLE, owner unchanged) and their lease expiry to the past,
    which is what 65 s of waiting does to them; the takeover itself is the surviving
    processes' own code path. ``real-wait`` (CUEFAST_TEST_REAL_STALE=1) really waits."""
    receiver = Recorder(delay=0.5)
    await receiver.start()
    try:
        async with Processes(tmp_path / "logs", lifetime=170 if takeover == "real-wait" else 80) as procs:
            cluster = Cluster(api, settings, procs, receiver)
            await cluster.start()
            await cluster.wait_received(2 * CUES)

            consumer, victim = await cluster.busy_dispatcher(50)
            procs.kill(victim)
            procs.kill("scheduler-0")
            killed_at = time.monotonic()
            stranded = await cluster.pending_of(consumer)
            stranded_ids = {eid for _, _, eid in stranded}
            assert stranded_ids, "the killed dispatcher held no deliveries"
            seen = {r["headers"]["X-CueAPI-Execution-Id"] for r in receiver.requests}
            assert stranded_ids & seen, "none of its requests had reached the receiver"
            sent_before = len(receiver.requests)
            await cluster.wait_received(sent_before + 3 * CUES)  # the others carry on
            final_nr = await _stop_schedulers(cluster)

            async def others_delivered() -> dict[str, dict[str, str]] | None:
                execs = await cluster.executions()
                rest = [e["st"] for eid, e in execs.items() if eid not in stranded_ids]
                return execs if set(rest) == {"success"} else None

            execs = await until(others_delivered, 30, "every other execution delivered", every=0.2)
            assert {execs[eid]["st"] for eid in stranded_ids} <= {"pending", "delivering"}
            assert time.monotonic() - killed_at < STALE_MS / 1000  # none can have been taken over yet

            aged_at = time.monotonic()  # from here on a survivor may take them over
            if takeover == "aged":
                async with cluster.redis.pipeline(transaction=False) as pipe:
                    for p, entry_id, eid in stranded:
                        pipe.xclaim(
                            cluster.keys.outbox(p),
                            Delivery.GROUP,
                            consumer,
                            0,
                            [entry_id],
                            idle=STALE_MS + 1000,
                            justid=True,
                        )
                        pipe.zadd(cluster.keys.leases(p), {eid: 0}, xx=True)
                    await pipe.execute()

            async def all_delivered() -> dict[str, dict[str, str]] | None:
                execs = await cluster.executions()
                return execs if all(e["st"] == "success" for e in execs.values()) else None

            wait = 20 if takeover == "aged" else STALE_MS / 1000 + 20
            execs = await until(all_delivered, wait, "the stranded executions taken over", every=0.2)
            received = cluster.check(execs, final_nr)
            twice = {eid for eid, n in received.items() if n > 1}
            assert twice and twice <= stranded_ids, (twice - stranded_ids, len(twice))
            again = {r["headers"]["X-CueAPI-Execution-Id"] for r in receiver.requests if r["at"] > aged_at}
            assert stranded_ids <= again, len(stranded_ids - again)  # each one sent again by a survivor
            assert len(execs) >= 5 * CUES
            codes = await procs.stop_all(list(procs.procs))
            assert set(codes.values()) == {0}, codes
            assert not procs.problems(), procs.problems()
    finally:
        assert receiver.runner is not None
        await receiver.runner.cleanup()
