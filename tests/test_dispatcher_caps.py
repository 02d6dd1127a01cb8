"""A cue's ``delivery.max_concurrency`` and ``max_per_second`` end to end: the API takes and shows
them, two dispatchers sharing the outbox never have more of the cue's attempts in flight than the
cap, and a rate cap spreads a host's attempts (real receivers on 127.0.0.1; on one server and on
the Redis Cluster)."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from aiohttp import web

from cuefast.clock import SystemClock
from cuefast.engine.dispatcher import Dispatcher
from cuefast.engine.scheduler import Scheduler
from cuefast.engine.webhooks import host_key
from cuefast.store.delivery import Lease
from tests.conftest import assert_error
from tests.test_dispatcher import Receiver, env, settings, webhook_cue
from tests.test_dispatcher_hosts import until
from tests.test_fire import fire

__all__ = ["env", "settings"]


class SlowReceiver(Receiver):
    """Answers 200 after ``delay`` s, counting each cue's requests open at once."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.open: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.order: list[str] = []
        self.open_all = 0
        self.most_all = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        cue = request.headers["X-CueAPI-Cue-Id"]
        self.open[cue] = self.open.get(cue, 0) + 1
        self.most[cue] = max(self.most.get(cue, 0), self.open[cue])
        self.open_all += 1
        self.most_all = max(self.most_all, self.open_all)
        self.order.append(json.loads(await request.read())["execution_id"])
        try:
            await asyncio.sleep(self.delay)  # the slow receiver itself, not a synchronisation
        finally:
            self.open[cue] -= 1
            self.open_all -= 1
        return web.json_response({"ok": True})


async def test_max_concurrency_is_validated_shown_and_patched(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url, delivery={"max_concurrency": 2})
    assert cue["delivery"] == {"timeout_seconds": 30, "outcome_deadline_seconds": 300, "max_concurrency": 2}
    plain = await webhook_cue(api, key, receiver.url, name="plain", delivery={"timeout_seconds": 5})
    assert plain["delivery"] == {"timeout_seconds": 5, "outcome_deadline_seconds": 300}  # no key: no cap
    res = await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"delivery": {"timeout_seconds": 9}})
    assert res.json()["delivery"]["max_concurrency"] == 2  # merged per sub-field
    res = await api.request(
        "PATCH", f"/v1/cues/{cue['id']}", key, json={"delivery": {"max_concurrency": None}}
    )
    assert res.json()["delivery"] == {"timeout_seconds": 9, "outcome_deadline_seconds": 300}
    schema = (await api.client.get("/openapi.json")).json()["components"]["schemas"]
    assert "1000" in json.dumps(schema["DeliveryInput"]["properties"]["max_concurrency"])
    for bad in (0, 1001, "2", 1.5):
        res = await api.request(
            "POST",
            "/v1/cues",
            key,
            json={
                "name": f"bad-{bad}",
                "schedule": {"type": "recurring", "cron": "* * * * *"},
                "callback": {"url": receiver.url},
                "delivery": {"max_concurrency": bad},
            },
        )
        assert_error(res, 422, "validation_error")


async def test_two_dispatchers_never_exceed_the_cap_and_deliver_in_order(env: Any) -> None:
    api, clock, _, _, _ = env
    slow = SlowReceiver(0.15)
    await slow.start()
    settings = api.rt.settings
    dispatchers = [Dispatcher(api.rt.store, settings, clock, api.rt.webhooks) for _ in range(2)]
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        key = await api.register()
        cue = await webhook_cue(
            api, key, slow.url, delivery={"max_concurrency": 1, "outcome_deadline_seconds": None}
        )
        other = await webhook_cue(
            api, key, slow.url, name="uncapped", delivery={"outcome_deadline_seconds": None}
        )
        fired = [(await fire(api, key, cue["id"]))["id"] for _ in range(6)]
        for _ in range(3):
            await fire(api, key, other["id"])
        tasks = [asyncio.create_task(d.run(stop, block_ms=50)) for d in dispatchers]

        async def done() -> bool:
            res = await api.request("GET", "/v1/executions?limit=100", key)
            rows = res.json()["executions"]
            return len(rows) == 9 and all(e["status"] == "success" for e in rows)

        await until(done, 30, "every execution to be delivered")
        capped = [e for e in slow.order if e in fired]
        assert capped == fired  # one at a time, in the order they were queued
        assert len(slow.order) == 9
        assert slow.most[cue["id"]] == 1
        k = api.rt.keys
        p = k.cue_partition(cue["id"])
        redis = api.rt.store.redis
        assert await redis.zcard(f"{k.part(p)}:cap:{cue['id']}") == 0  # every permit given back
        assert await redis.llen(f"{k.part(p)}:capq:{cue['id']}") == 0
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert slow.runner is not None
        await slow.runner.cleanup()


async def test_waiting_executions_stay_pending(env: Any) -> None:
    """Over the cap an execution is listed ``pending`` (no attempt) until a permit frees."""
    api, _, _, dispatcher, receiver = env
    receiver.mode = "block"
    key = await api.register()
    cue = await webhook_cue(
        api, key, receiver.url, delivery={"max_concurrency": 1, "outcome_deadline_seconds": None}
    )
    ids = [(await fire(api, key, cue["id"]))["id"] for _ in range(3)]
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop, block_ms=50))
    try:

        async def one_sent() -> bool:
            return len(receiver.requests) == 1

        await until(one_sent, 10, "the first attempt to reach the receiver")

        async def statuses() -> list[str]:
            return [(await api.request("GET", f"/v1/executions/{i}", key)).json()["status"] for i in ids]

        async def queued() -> bool:
            return await statuses() == ["delivering", "pending", "pending"]

        await until(queued, 10, "the others to wait pending")
        receiver.mode = "ok"
        receiver.unblock.set()

        async def all_done() -> bool:
            return await statuses() == ["success"] * 3

        await until(all_done, 10, "the waiters to be delivered")
        assert len(receiver.requests) == 3
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_rate_cap_spreads_a_hosts_attempts_across_dispatchers(env: Any) -> None:
    """Two cues of one account on one host, ``max_per_second`` 5: their 6 attempts are spaced
    about 200 ms apart whichever of two dispatchers sends them, each cue's in the order fired (each
    booked the host's next slot, waited for in memory). Real time here: the rate is the point."""
    api, _, _, _, receiver = env
    clock = SystemClock()
    key = await api.register()
    rate = {"max_per_second": 5, "outcome_deadline_seconds": None}
    cues = [await webhook_cue(api, key, receiver.url, name=f"r{i}", delivery=rate) for i in range(2)]
    shown = (await api.request("GET", f"/v1/cues/{cues[0]['id']}", key)).json()["delivery"]
    assert shown["max_per_second"] == 5
    fired = [(await fire(api, key, cues[i % 2]["id"]))["id"] for i in range(6)]
    settings = api.rt.settings
    dispatchers = [Dispatcher(api.rt.store, settings, clock, api.rt.webhooks) for _ in range(2)]
    scheduler = Scheduler(api.rt.store, clock)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(d.run(stop, block_ms=50)) for d in dispatchers]
    try:

        async def delivered() -> bool:
            await scheduler.tick()  # moves handed-back attempts whose slot came back to the outbox
            return len(receiver.requests) >= 6

        await until(delivered, 30, "every attempt to be sent")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    times = sorted(r["at"] for r in receiver.requests)
    assert len(times) == 6
    assert times[-1] - times[0] >= 5 * 0.2 - 0.15  # five intervals (less the send jitter)
    sent = [json.loads(r["body"])["execution_id"] for r in receiver.requests]
    assert [e for e in sent if e in fired[0::2]] == fired[0::2]  # each cue's in the order fired
    assert [e for e in sent if e in fired[1::2]] == fired[1::2]
    rows = (await api.request("GET", "/v1/executions?limit=10", key)).json()["executions"]
    assert [e["status"] for e in rows] == ["success"] * 6 and all(e["attempts"] == 1 for e in rows)


async def test_a_host_cap_holds_across_an_accounts_cues_and_two_dispatchers(env: Any) -> None:
    """``max_concurrency_per_host`` 1 on three cues of one account sharing a slow host: never two
    requests at the host at once, whichever dispatcher sends; every execution delivered once."""
    api, clock, _, _, _ = env
    slow = SlowReceiver(0.1)
    await slow.start()
    dispatchers = [Dispatcher(api.rt.store, api.rt.settings, clock, api.rt.webhooks) for _ in range(2)]
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        key = await api.register()
        cap = {"max_concurrency_per_host": 1, "outcome_deadline_seconds": None}
        cues = [await webhook_cue(api, key, slow.url, name=f"h{i}", delivery=cap) for i in range(3)]
        assert cues[0]["delivery"]["max_concurrency_per_host"] == 1
        for i in range(6):
            await fire(api, key, cues[i % 3]["id"])
        tasks = [asyncio.create_task(d.run(stop, block_ms=50)) for d in dispatchers]

        async def done() -> bool:
            rows = (await api.request("GET", "/v1/executions?limit=100", key)).json()["executions"]
            return len(rows) == 6 and all(e["status"] == "success" for e in rows)

        await until(done, 30, "every execution to be delivered")
        assert len(slow.order) == 6 and slow.most_all == 1
        rows = (await api.request("GET", "/v1/executions?limit=100", key)).json()["executions"]
        assert all(e["attempts"] == 1 for e in rows)
        owner = (await api.rt.store.cues.get(cues[0]["id"]))["acct"]
        permits, waiting = api.rt.keys.host_permits(owner, host_key(slow.url))
        redis = api.rt.store.redis
        assert await redis.zcard(permits) == 0 and await redis.llen(waiting) == 0  # all given back
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert slow.runner is not None
        await slow.runner.cleanup()


async def test_batched_host_takes_of_two_racing_dispatchers_never_pass_the_cap(env: Any) -> None:
    """``max_concurrency_per_host`` 3 on three cues of one account, 24 executions due at once and
    two dispatchers racing for them: each takes its batch's permits in one call per (account,
    host) and gives them back with the results, and the host never has more than 3 requests
    open; every execution delivered once, every permit given back."""
    api, clock, _, _, _ = env
    slow = SlowReceiver(0.05)
    await slow.start()
    dispatchers = [Dispatcher(api.rt.store, api.rt.settings, clock, api.rt.webhooks) for _ in range(2)]
    delivery = api.rt.store.delivery
    sizes: list[int] = []
    take_call = delivery.take_call

    def spy(account: str, host: str, rows: Any, now_us: int) -> Any:  # the real call, its size noted
        sizes.append(len(rows))
        return take_call(account, host, rows, now_us)

    delivery.take_call = spy  # type: ignore[method-assign]
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        key = await api.register()
        cap = {"max_concurrency_per_host": 3, "outcome_deadline_seconds": None}
        cues = [await webhook_cue(api, key, slow.url, name=f"b{i}", delivery=cap) for i in range(3)]
        for i in range(24):
            await fire(api, key, cues[i % 3]["id"])
        tasks = [asyncio.create_task(d.run(stop, block_ms=50)) for d in dispatchers]

        async def done() -> bool:
            rows = (await api.request("GET", "/v1/executions?limit=100", key)).json()["executions"]
            return len(rows) == 24 and all(e["status"] == "success" for e in rows)

        await until(done, 60, "every execution to be delivered")
        assert len(slow.order) == 24 and len(set(slow.order)) == 24 and slow.most_all <= 3
        assert max(sizes) > 1  # a batch's attempts asked in one call
        owner = (await api.rt.store.cues.get(cues[0]["id"]))["acct"]
        permits, waiting = api.rt.keys.host_permits(owner, host_key(slow.url))
        redis = api.rt.store.redis
        assert await redis.zcard(permits) == 0 and await redis.llen(waiting) == 0  # all given back
    finally:
        delivery.take_call = take_call  # type: ignore[method-assign]
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert slow.runner is not None
        await slow.runner.cleanup()


async def test_a_dead_dispatchers_rate_bookings_are_kept_by_the_one_taking_over(env: Any) -> None:
    """``max_per_second`` 2 on one cue, 6 executions: a dispatcher leases them, books the host's
    next six slots (0.5 s apart, up to 3 s ahead) and dies. Another takes the attempts over (their
    leases expired): it sends each in its booked slot — the near ones waited for in memory, the far
    ones handed back through the delayed set to come back before theirs — in the booked order, each
    once, and no booking is left behind."""
    api, _, _, _, receiver = env
    clock = SystemClock()
    store = api.rt.store
    key = await api.register()
    cue = await webhook_cue(
        api, key, receiver.url, delivery={"max_per_second": 2, "outcome_deadline_seconds": None}
    )
    fired = [(await fire(api, key, cue["id"]))["id"] for _ in range(6)]
    entries = await store.delivery.read("dead-consumer", 10, 50)
    assert [e.execution_id for e in entries] == fired
    (p,) = {e.partition for e in entries}
    past = clock.now_us() - 300_000_000  # leased 5 min ago: the leases have expired
    leased = (await store.delivery.start({p: fired}, past, timeout_s=30, stale_s=30))[p]
    assert all(isinstance(x, Lease) for x in leased)
    owner = (await store.cues.get(cue["id"]))["acct"]
    host, now = host_key(receiver.url), clock.now_us()
    rows = [(2, "someone-else:1"), *((2, f"{e}:1") for e in fired)]  # the free slot goes to another
    (res,) = await store.scripts.run_many([store.delivery.rate_call(owner, host, rows, now)])
    booked = store.delivery.rate_reply(res)
    assert booked == [(True, now + 500_000), *((False, now + 500_000 * (i + 1)) for i in range(6))]
    taker = Dispatcher(store, api.rt.settings, clock, api.rt.webhooks)
    scheduler = Scheduler(store, clock)
    reclaimed = await store.delivery.reclaim(taker.consumer, 0, 10)
    assert len(reclaimed) == 6
    sending = asyncio.gather(*(taker.deliver(*r) for r in reclaimed))
    stop = asyncio.Event()
    runner = asyncio.create_task(taker.run(stop, block_ms=50))  # reads the handed-back ones again
    try:

        async def delivered() -> bool:
            await scheduler.tick()  # moves handed-back attempts near their slot to the outbox
            return len(receiver.requests) >= 6

        await until(delivered, 30, "every attempt to be sent")
        await sending
    finally:
        stop.set()
        await asyncio.gather(runner, return_exceptions=True)
    assert [json.loads(r["body"])["execution_id"] for r in receiver.requests] == fired
    times = [r["at"] for r in receiver.requests]
    assert all(b - a >= 0.5 - 0.1 for a, b in itertools.pairwise(times))  # spaced (less send jitter)
    rows = (await api.request("GET", "/v1/executions?limit=10", key)).json()["executions"]
    assert [e["status"] for e in rows] == ["success"] * 6 and all(e["attempts"] == 1 for e in rows)
    assert not await store.redis.exists(api.rt.keys.host_rate(owner, host)[1])  # bookings consumed


async def test_attempts_waiting_for_their_rate_slot_keep_the_per_host_bound(env: Any) -> None:
    """A rate-capped attempt waits for its send slot without holding its host's place in the
    dispatcher (the ones behind it book theirs meanwhile); when its slot comes and the host is
    full it goes back to the front of the host's queue — so a slow host never has more requests
    open than ``CUEFAST_DELIVERY_PER_HOST`` (2 here), every execution delivered once."""
    api, _, _, _, _ = env
    clock = SystemClock()
    slow = SlowReceiver(0.15)
    await slow.start()
    dispatcher = Dispatcher(api.rt.store, api.rt.settings, clock, api.rt.webhooks, per_host=2)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        key = await api.register()
        rate = {"max_per_second": 1000, "outcome_deadline_seconds": None}
        cue = await webhook_cue(api, key, slow.url, name="fast-rate", delivery=rate)
        fired = [(await fire(api, key, cue["id"]))["id"] for _ in range(8)]
        task = asyncio.create_task(dispatcher.run(stop, block_ms=50))
        await until(lambda: _all_sent(slow, 8), 30, "every attempt to be sent")
        assert sorted(slow.order) == sorted(fired) and slow.most_all <= 2
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 10)
        assert slow.runner is not None
        await slow.runner.cleanup()


async def _all_sent(receiver: SlowReceiver, n: int) -> bool:
    return len(receiver.order) >= n
