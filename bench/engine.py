"""Engine benchmarks (issue 3): ``./dev bench engine {materialize,deliver,deliver-caps,lateness,memory}``.

All run against the local Redis (``CUEFAST_REDIS_URL`` overrides) under a fresh key
prefix that is deleted afterwards. Cues are written straight into Redis with the same
fields the API writes (creating 100,000 cues over HTTP would measure the API instead).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import redis as sync_redis

from bench.cpu import redis_seconds, redis_url_seconds
from cuefast.clock import FrozenClock, SystemClock
from cuefast.config import Settings, load_settings
from cuefast.engine.dispatcher import Dispatcher
from cuefast.engine.scheduler import Scheduler
from cuefast.engine.webhooks import Webhooks
from cuefast.ids import new_account_id, new_cue_id, new_execution_id
from cuefast.models import Callback, CueConfig, Delivery, Retry, Schedule
from cuefast.services.cues import new_cue_fields
from cuefast.store import Store, connect
from cuefast.store.executions import index_members
from cuefast.store.keys import Keys
from cuefast.times import parse_datetime

RECEIVER = """
import asyncio, sys, time, uvloop
from aiohttp import web
out = open(sys.argv[2], "w", buffering=1)
delay = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.0
async def hook(request):
    await request.read()
    out.write(f"{time.time_ns() // 1000} {request.headers.get('X-CueAPI-Scheduled-For', '')}\\n")
    if delay:  # a slow agent: answers this long after the request arrived (logged on arrival)
        await asyncio.sleep(delay)
    return web.Response(text="ok")
app = web.Application()
app.router.add_post("/hook", hook)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, loop=uvloop.new_event_loop())
"""


def _url() -> str:
    return os.environ.get("CUEFAST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def seed_cues(
    store: Store,
    n: int,
    *,
    cron: str,
    transport: str,
    url: str,
    due: int,
    step_us: int = 0,
    jitter_s: int = 0,
    overlap: str = "allow",
    delivery: Delivery | None = None,
) -> tuple[str, list[str]]:
    """``n`` active cues of one account, all due at ``due``; returns (account id, cue ids).
    With ``step_us`` they are one-time cues instead, cue ``i`` at ``due + i * step_us``;
    ``jitter_s``: their ``schedule.jitter_seconds``.

    Each is a realistic cue, written with the fields and scripts a create uses (name
    reservation, then ``cues_create``): a name, a cron with a timezone, a webhook URL, a small
    payload and a retry config (and ``delivery``, e.g. a cap, when given)."""
    account = new_account_id()
    config = CueConfig(
        schedule=Schedule(type="recurring", cron=cron, timezone="America/New_York", jitter_seconds=jitter_s),
        callback=Callback(url=url),
        retry=Retry(max_attempts=5, backoff_minutes=[1, 5, 30]),
        overlap=overlap,
        delivery=delivery,
    )
    payload = b'{"task":"daily-digest","channel":"ops","limit":20}'
    ids = [new_cue_id() for _ in range(n)]

    async def one(i: int, cue_id: str) -> None:
        created = due - 1_000_000_000 + i
        name = f"daily-digest-{i:06d}"
        at, cfg = due, config
        if step_us:
            at += i * step_us
            cfg = msgspec.structs.replace(config, schedule=Schedule(type="once", at=at))
        await store.cues.reserve_name(account, name, cue_id, created)
        fields = new_cue_fields(
            account, name, transport=transport, next_run=at, config=cfg, payload_json=payload, now=created
        )
        await store.cues.create(cue_id, fields)

    for i in range(0, n, 1000):
        await asyncio.gather(*(one(i + j, cue_id) for j, cue_id in enumerate(ids[i : i + 1000])))
    return account, ids


def cleanup(prefix: str) -> None:
    if os.environ.get("CUEFAST_REDIS_CLUSTER", "").lower() == "true":  # bench/cluster.py: every primary
        from redis.cluster import RedisCluster

        rc = RedisCluster.from_url(_url())
        for key in rc.scan_iter(match=f"{prefix}:*", count=5000):
            rc.unlink(key)  # one key a call: keys of one batch are on many slots
        rc.close()
        return
    r = sync_redis.Redis.from_url(_url())
    batch: list[bytes] = []
    for key in r.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)


def new_store(prefix: str, partitions: int) -> Store:
    cluster = os.environ.get("CUEFAST_REDIS_CLUSTER", "").lower() == "true"  # bench/cluster.py
    return Store(connect(_url(), cluster=cluster), Keys(prefix, partitions))


async def bench_materialize(args: argparse.Namespace, prefix: str) -> None:
    """Two passes of one scheduler: ``cold`` (it has never seen the cues: each is read before it
    is planned) and ``warm`` (the next slot five minutes later: the cues it moved itself). The
    cues' ``overlap`` is ``--overlap``; ``--overlap compare``: ``--rounds`` rounds alternating
    ``allow`` and ``skip`` on fresh cues in this one run (under ``skip`` the warm pass finds each
    cue's cold execution still pending — never delivered — and creates its slot as skipped), with
    the medians and their ratio."""
    if args.overlap != "compare":
        await _materialize(args, prefix, args.overlap)
        return
    rates: dict[str, dict[str, list[float]]] = {p: {"cold": [], "warm": []} for p in ("allow", "skip")}
    for r in range(args.rounds):
        for policy in ("allow", "skip"):
            sub = f"{prefix}:{r}{policy[0]}"
            for name, rate in (await _materialize(args, sub, policy)).items():
                rates[policy][name].append(rate)
            cleanup(sub)
    for name in ("cold", "warm"):
        allow, skip = (statistics.median(rates[p][name]) for p in ("allow", "skip"))
        print(
            f"materialize ({name}, {args.rounds} rounds alternated): median {allow:,.0f}/s allow, "
            f"{skip:,.0f}/s skip: ratio skip/allow {skip / allow:.3f} "
            f"(allow {[round(x) for x in rates['allow'][name]]}, "
            f"skip {[round(x) for x in rates['skip'][name]]})"
        )


async def _materialize(args: argparse.Namespace, prefix: str, overlap: str) -> dict[str, float]:
    store = new_store(prefix, args.partitions)
    await store.preload()
    due = 1_900_000_000_000_000
    url = "http://127.0.0.1:9/h"
    await seed_cues(
        store, args.cues, cron="*/5 * * * *", transport="webhook", url=url, due=due, overlap=overlap
    )
    clock = FrozenClock(due + 100_000)
    sched = Scheduler(store, clock)
    r = sync_redis.Redis.from_url(_url())
    out: dict[str, float] = {}
    for name, at in (("cold", due + 100_000), ("warm", due + 300_000_000 + 100_000)):
        clock.set(at)
        redis0, cpu0 = redis_seconds(r), time.process_time()
        t0 = time.perf_counter()
        created = await sched.tick()
        dt = time.perf_counter() - t0
        redis_us = (redis_seconds(r) - redis0) * 1e6 / max(created, 1)
        python_us = (time.process_time() - cpu0) * 1e6 / max(created, 1)
        out[name] = created / dt
        print(
            f"materialize ({name}, overlap {overlap}): {created} executions from {args.cues} due cues "
            f"in {dt:.2f} s = {created / dt:,.0f}/s (P={args.partitions}, batch={sched.batch}); CPU per "
            f"execution: Redis {redis_us:.1f} µs, scheduler {python_us:.1f} µs"
        )
    await store.close()
    return out


RAW_RECEIVER = """
import asyncio, sys, time, httptools, uvloop
out = open(sys.argv[2], "w", buffering=1 << 16)
OK = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nContent-Type: text/plain\\r\\n\\r\\nok"
class Hook(asyncio.Protocol):
    def connection_made(self, transport):
        self.t, self.p, self.sf, self.cue = transport, httptools.HttpRequestParser(self), b"", b""
    def data_received(self, data):
        self.p.feed_data(data)
    def on_header(self, name, value):
        name = name.lower()
        if name == b"x-cueapi-scheduled-for":
            self.sf = value
        elif name == b"x-cueapi-cue-id":
            self.cue = value
    def on_message_complete(self):
        out.write(f"{time.time_ns() // 1000} {self.sf.decode()} {self.cue.decode()}\\n")
        self.sf = self.cue = b""
        self.t.write(OK)
async def main():
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, _flush)
    server = await loop.create_server(Hook, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()
def _flush():
    out.flush()
    asyncio.get_running_loop().call_later(0.05, _flush)
uvloop.run(main())
"""
"""A lighter receiver (``--receiver raw``): one asyncio protocol parsing requests with httptools,
a fixed 200 answer, arrivals logged in a buffer flushed every 50 ms. It stands in for agents on
other machines, so it should cost the box as little as it can; it logs the same, plus the cue
id (``X-CueAPI-Cue-Id``: the burst recomputes each jittered fire_at from it)."""


async def _receiver(
    port: int, log_path: str, kind: str = "aiohttp", delay_ms: float = 0.0
) -> subprocess.Popen[bytes]:
    """A receiver process on ``port`` logging each request (``delay_ms``: the aiohttp one answers
    each request that long after it arrived, a slow agent)."""
    source = RAW_RECEIVER if kind == "raw" else RECEIVER
    extra = [str(delay_ms)] if delay_ms else []
    proc = subprocess.Popen([sys.executable, "-c", source, str(port), log_path, *extra])
    for _ in range(200):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return proc
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit("receiver did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def webhook_setup(
    args: argparse.Namespace,
    prefix: str,
    *,
    n: int,
    cron: str,
    due: int,
    step_us: int = 0,
    delivery: Delivery | None = None,
    seeded: list[tuple[str, list[str]]] | None = None,
    delay_ms: float = 0.0,
) -> AsyncIterator[tuple[Store, Settings, str]]:
    """A receiver process logging each request (answering ``delay_ms`` after its arrival: only
    ``deliver-bound`` asks for a slow receiver), a store, and ``n`` webhook cues to it due at
    ``due`` (or spread, see ``seed_cues``); yields (store, settings, receiver log path)."""
    port = _free_port()
    log_path = f"/tmp/cuefast-bench-{uuid.uuid4().hex[:6]}.log"
    receiver = await _receiver(port, log_path, delay_ms=delay_ms)
    settings = load_settings({}, allow_private_callbacks=True)
    store = new_store(prefix, args.partitions)
    await store.preload()
    try:
        url = f"http://127.0.0.1:{port}/hook"
        made = await seed_cues(
            store, n, cron=cron, transport="webhook", url=url, due=due, step_us=step_us, delivery=delivery
        )
        if seeded is not None:  # the caller wants (account id, cue ids)
            seeded.append(made)
        yield store, settings, log_path
    finally:
        receiver.terminate()
        await store.close()
        os.unlink(log_path)


class _LineCounter:
    """Lines in a file that only grows, reading only what was appended since the last call
    (the benchmark polls it in the dispatcher's process; re-reading would cost CPU there)."""

    def __init__(self, path: str) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.lines = 0

    def __call__(self) -> int:
        while chunk := self.fh.read(1 << 20):
            self.lines += chunk.count(b"\n")
        return self.lines

    def close(self) -> None:
        self.fh.close()


async def bench_deliver(args: argparse.Namespace, prefix: str) -> None:
    await _deliver(args, prefix)


async def bench_deliver_caps(args: argparse.Namespace, prefix: str) -> None:
    """``deliver`` without and with a cap of ``--cap`` on every cue (``--kind cue``:
    ``delivery.max_concurrency``; ``host``: ``max_concurrency_per_host``, all cues on the one
    receiver host, so pick a ``--cap`` above ``--concurrency`` for it not to bind; ``rate``:
    ``max_per_second``, one window for them all, so pick a ``--cap`` far above the throughput), alternated for
    ``--rounds`` rounds in this one run (each round on fresh cues): the cost of taking and giving
    back a permit per attempt when the cap does not bind, as the ratio of the medians."""
    field = {"cue": "max_concurrency", "host": "max_concurrency_per_host", "rate": "max_per_second"}[
        args.kind
    ]
    capped_delivery = Delivery(outcome_deadline_seconds=None, **{field: args.cap})
    rates: dict[bool, list[float]] = {False: [], True: []}
    redis_us: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.rounds):
        for capped in (False, True):
            sub = f"{prefix}:{r}{'c' if capped else 'n'}"
            rate, per = await _deliver(args, sub, capped_delivery if capped else None)
            rates[capped].append(rate)
            redis_us[capped].append(per)
            cleanup(sub)
    plain, capped_rate = statistics.median(rates[False]), statistics.median(rates[True])
    plain_us, capped_us = statistics.median(redis_us[False]), statistics.median(redis_us[True])
    print(
        f"deliver-caps ({args.rounds} rounds each, alternated; {field} {args.cap} on every cue): "
        f"median {plain:,.0f}/s without, {capped_rate:,.0f}/s with a cap: ratio {capped_rate / plain:.3f}; "
        f"Redis CPU {plain_us:.1f} vs {capped_us:.1f} µs/webhook: ratio {capped_us / plain_us:.3f}"
    )


async def _deliver(
    args: argparse.Namespace, prefix: str, delivery: Delivery | None = None
) -> tuple[float, float]:
    due = SystemClock().now_us() - 1_000_000
    async with webhook_setup(
        args, prefix, n=args.executions, cron="0 0 1 1 *", due=due, delivery=delivery
    ) as (
        store,
        settings,
        log_path,
    ):
        await Scheduler(store, SystemClock()).tick()  # fills the outbox
        bounded = settings.replace(delivery_concurrency=args.concurrency)
        webhooks = Webhooks(bounded)
        dispatcher = Dispatcher(store, bounded, SystemClock(), webhooks, per_host=args.per_host)
        stop = asyncio.Event()
        received = _LineCounter(log_path)
        redis_cpu0 = redis_url_seconds(_url())
        t0, cpu0 = time.perf_counter(), time.process_time()
        task = asyncio.create_task(dispatcher.run(stop, block_ms=100))
        while True:
            await asyncio.sleep(0.2)
            done = received()
            if done >= args.executions or time.perf_counter() - t0 > 300:
                break
        received.close()
        dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        redis_us = (redis_url_seconds(_url()) - redis_cpu0) * 1e6 / max(done, 1)
        stop.set()
        await task
        await webhooks.close()
        print(
            f"deliver: {done} webhooks in {dt:.2f} s = {done / dt:,.0f}/s, dispatcher CPU "
            f"{cpu * 1e6 / max(done, 1):.0f} µs/webhook, Redis CPU {redis_us:.1f} µs/webhook "
            f"(one dispatcher, concurrency {args.concurrency}, "
            f"per host {dispatcher.per_host}{'' if delivery is None else ', capped'})"
        )
        return done / dt, redis_us


async def bench_deliver_bound(args: argparse.Namespace, prefix: str) -> None:
    """Caps that bind: ``--executions`` manual executions of ONE cue, all due now, to a receiver
    that answers after ``--delay-ms``; ``--kind cue``: for each of ``--caps`` as
    ``delivery.max_concurrency`` (the rate should approach cap / delay; ``host``: as
    ``max_concurrency_per_host``, the same); ``--kind rate``: each as ``max_per_second`` (the
    achieved rate, the spacing of arrivals, the most in any 1 s window). Also: the share of
    consecutive arrivals in the executions' order (FIFO)."""
    for cap in (int(c) for c in args.caps.split(",")):
        field = {"cue": "max_concurrency", "host": "max_concurrency_per_host", "rate": "max_per_second"}[
            args.kind
        ]
        sub = f"{prefix}:b{cap}"
        delivery = Delivery(outcome_deadline_seconds=None, **{field: cap})
        now = SystemClock().now_us()
        seeded: list[tuple[str, list[str]]] = []
        later = now + 86_400_000_000  # the cue's own schedule never fires during the run
        async with webhook_setup(
            args,
            sub,
            n=1,
            cron="0 0 1 1 *",
            due=later,
            delivery=delivery,
            seeded=seeded,
            delay_ms=args.delay_ms,
        ) as (
            store,
            settings,
            log_path,
        ):
            account, (cue,) = seeded[0]
            for i in range(args.executions):  # one after another: the outbox in scheduled_for order
                await store.executions.create(
                    execution_id=new_execution_id(store.keys.cue_byte(cue)),
                    cue_id=cue,
                    account_id=account,
                    scheduled_us=now - args.executions + i,  # 1 µs apart: the order, read back
                    payload_json="",
                    triggered_by="manual_fire",
                    now_us=now,
                )
            bounded = settings.replace(delivery_concurrency=args.concurrency)
            webhooks = Webhooks(bounded)
            dispatcher = Dispatcher(store, bounded, SystemClock(), webhooks, per_host=args.per_host)
            stop = asyncio.Event()
            received = _LineCounter(log_path)
            t0 = time.perf_counter()
            task = asyncio.create_task(dispatcher.run(stop, block_ms=100))
            scheduler = asyncio.create_task(Scheduler(store, SystemClock()).run(stop))  # hand-backs
            while received() < args.executions and time.perf_counter() - t0 < 300:
                await asyncio.sleep(0.1)
            received.close()
            stop.set()
            await asyncio.gather(task, scheduler)
            await webhooks.close()
            with open(log_path) as fh:
                got = sorted((int(f[0]), parse_datetime(f[1])) for f in map(str.split, fh) if f)
        at = [t for t, _ in got]
        in_order = sum(a < b for (_, a), (_, b) in itertools.pairwise(got)) / max(len(got) - 1, 1)
        n, span = len(at), (at[-1] - at[0]) / 1e6 if len(at) > 1 else 0.0
        rate = (n - 1) / span if span else 0.0
        gaps = sorted(b - a for a, b in itertools.pairwise(at))
        most = max((bisect.bisect_left(at, t + 1_000_000) - i for i, t in enumerate(at)), default=0)
        ideal = cap if args.kind == "rate" else cap * 1000 / args.delay_ms
        print(
            f"deliver-bound {field} {cap}: {n} webhooks of one cue in {span:.2f} s = {rate:,.1f}/s "
            f"(ideal {ideal:,.1f}/s, ratio {rate / ideal:.3f}); arrival gaps ms: min {gaps[0] / 1000:.1f}, "
            f"median {statistics.median(gaps) / 1000:.1f}, p99 {gaps[int(len(gaps) * 0.99)] / 1000:.1f}, "
            f"max {gaps[-1] / 1000:.1f}; most in any 1 s: {most}; in order (FIFO) {in_order:.1%} of "
            f"consecutive arrivals (receiver delay {args.delay_ms} ms)"
        )
        cleanup(sub)


async def bench_lateness(args: argparse.Namespace, prefix: str) -> None:
    """``--rate`` executions due per second for ``--seconds``: by default ``--rate`` cues on a
    per-second cron (a burst of ``--rate`` at each whole second); with ``--spread``, one-time
    cues whose due times are spaced evenly (one every 1/rate s, a steady stream)."""
    clock = SystemClock()
    n, step = args.rate, 0
    if args.spread:
        n, step = args.rate * args.seconds, 1_000_000 // args.rate
    first = (clock.now_us() // 1_000_000 + 3 + n // 4000) * 1_000_000  # after seeding
    async with webhook_setup(args, prefix, n=n, cron="* * * * * *", due=first, step_us=step) as (
        store,
        settings,
        log_path,
    ):
        stop = asyncio.Event()
        sched = asyncio.create_task(Scheduler(store, clock).run(stop))
        webhooks = Webhooks(settings)
        dispatcher = Dispatcher(store, settings, clock, webhooks, per_host=args.per_host)
        disp = asyncio.create_task(dispatcher.run(stop, block_ms=100))
        await asyncio.sleep((first - clock.now_us()) / 1e6 + args.seconds + 1)
        stop.set()
        await asyncio.gather(sched, disp)
        await webhooks.close()
        late = []
        with open(log_path) as fh:
            for line in fh:
                got, sched_for = line.split()
                late.append((int(got) - parse_datetime(sched_for)) / 1000)
        passed, started = [], []
        async for key in store.redis.scan_iter(match=f"{prefix}:*:exec:*", count=5000):
            sf, ca, sa = await store.redis.hmget(key, ["sf", "ca", "sa"])
            assert sf is not None and ca is not None, key  # every execution has both
            passed.append((int(ca) - int(sf)) / 1000)
            if sa:
                started.append((int(sa) - int(sf)) / 1000)
        for label, values in (
            ("scheduler pass - scheduled_for", passed),
            ("attempt leased - scheduled_for", started),
            ("receipt - scheduled_for", late),
        ):
            values.sort()
            p50 = statistics.median(values)
            p99 = values[int(len(values) * 0.99) - 1]
            print(
                f"lateness ({label}, {'spread' if args.spread else 'per-second burst'}): "
                f"{len(values)} at {args.rate}/s for {args.seconds} s: "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {values[-1]:.1f} ms"
            )


async def _dirty_bytes(store: Store) -> int:
    """Bytes held by the snapshot dirty sets (cleared by the next snapshot)."""
    keys = [store.keys.dirty(slot) for slot in store.keys.slots()]
    return sum([await store.redis.memory_usage(k, samples=0) or 0 for k in keys])


async def bench_memory(args: argparse.Namespace, prefix: str) -> None:
    """Redis bytes per active cue (everything a create writes: the cue's keys, its due entry,
    its listing index entry, its name reservation) and per execution (the hash, its index
    entries, its outbox entry), from ``used_memory`` before and after; plus what
    ``MEMORY USAGE`` / ``OBJECT ENCODING`` say about one cue's own keys."""
    store = new_store(prefix, args.partitions)
    await store.preload()
    r = store.redis
    keys = store.keys
    due = 1_900_000_000_000_000
    before = int((await r.info("memory"))["used_memory"])
    account, ids = await seed_cues(
        store,
        args.cues,
        cron="*/5 * * * *",
        transport="webhook",
        url="https://agent.example.com/hooks/run",
        due=due,
    )
    mid = int((await r.info("memory"))["used_memory"])
    marks_mid = await _dirty_bytes(store)
    await Scheduler(store, FrozenClock(due + 1)).tick()
    after = int((await r.info("memory"))["used_memory"])
    marks_after = await _dirty_bytes(store)
    cue_key, cfg_key = keys.cue(ids[0]), keys.cue_config(ids[0])
    cue_bytes = await r.memory_usage(cue_key, samples=0)
    cfg_bytes = await r.memory_usage(cfg_key, samples=0)
    encoding = await r.object("encoding", cue_key)
    shared = {
        "due entry": [keys.due(p) for p in range(keys.partitions)],
        "index entry": [keys.cue_index(p, account, "active") for p in range(keys.partitions)],
        "name entry": [keys.cue_names(account)],
    }
    parts = []
    for label, shared_keys in shared.items():
        total = sum([await r.memory_usage(k, samples=0) or 0 for k in shared_keys])
        parts.append(f"{label} {total / args.cues:.0f}")
    reg = keys.ix_cue(ids[0])
    field = str((await r.hkeys(reg))[0])  # a str: the store's client decodes replies
    eids = [eid for eid, _ in await index_members(r, f"{reg}|z|{field}")]
    sample_exec = await r.memory_usage(keys.execution(keys.execution_partition(eids[0]) or 0, eids[0]))
    n = args.cues
    cue_mark, exec_mark = marks_mid / n, (marks_after - marks_mid) / n
    print(
        f"memory: per active cue {(mid - before) / n - cue_mark:,.0f} B (cue hash {cue_bytes} B {encoding}, "
        f"config string {cfg_bytes} B, {', '.join(parts)} B) + {cue_mark:.0f} B snapshot dirty mark "
        f"until the next snapshot; per execution {(after - mid) / n - exec_mark:,.0f} B incl. "
        f"indexes and outbox entry (hash alone {sample_exec} B) + {exec_mark:.0f} B dirty mark"
    )
    await store.close()


def arguments() -> argparse.ArgumentParser:
    """The command line of ``./dev bench engine``."""
    parser = argparse.ArgumentParser(prog="./dev bench engine")
    parser.add_argument(
        "what", choices=["materialize", "deliver", "deliver-caps", "deliver-bound", "lateness", "memory"]
    )
    parser.add_argument("--caps", default="1,4,16", help="deliver-bound: the caps to run, one after another")
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=20.0,
        help="deliver-bound: the receiver's answer time (every other run's receiver answers at once)",
    )
    parser.add_argument("--cap", type=int, default=1, help="deliver-caps: the cap on every cue")
    parser.add_argument(
        "--kind", choices=["cue", "host", "rate"], default="cue", help="deliver-caps / -bound: which cap"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="deliver-caps, materialize: rounds of each variant"
    )
    parser.add_argument(
        "--overlap",
        choices=["allow", "skip", "buffer_one", "cancel_previous", "compare"],
        default="allow",
        help="materialize: the cues' overlap policy (compare: allow and skip alternated)",
    )
    parser.add_argument("--cues", type=int, default=100_000)
    parser.add_argument("--executions", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=1000, help="cues firing every second (lateness)")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--spread", action="store_true", help="lateness: due times evenly spaced")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--per-host", type=int, default=None, help="default: CUEFAST_DELIVERY_PER_HOST's")
    return parser


def main(argv: list[str]) -> None:
    args = arguments().parse_args(argv)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    runner: dict[str, Any] = {
        "materialize": bench_materialize,
        "deliver": bench_deliver,
        "deliver-caps": bench_deliver_caps,
        "deliver-bound": bench_deliver_bound,
        "lateness": bench_lateness,
        "memory": bench_memory,
    }
    try:
        import uvloop

        uvloop.run(runner[args.what](args, prefix))
    finally:
        cleanup(prefix)
