"""Leases follow each attempt's own timeout, and only the holder of the current lease records a
result (CONTRACT.md §11.4): real receivers on 127.0.0.1 hold requests open while the injected
clock passes; a second dispatcher reclaims the outbox entry as a survivor would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from cuefast import metrics as m
from cuefast.config import Settings
from cuefast.engine.dispatcher import SEND_MARGIN_US, Dispatcher
from cuefast.times import parse_datetime
from tests.conftest import wait_for
from tests.test_dispatcher import Env, Receiver, dispatch_env, only_execution, webhook_cue


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


T_FIRE = parse_datetime("2031-01-06T09:00:00Z")
S = 1_000_000
NO_DEADLINE_20 = {"timeout_seconds": 20, "outcome_deadline_seconds": None}


class HeldReceiver(Receiver):
    """Every request waits until the test answers it with a status (in any order)."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[asyncio.Future[int]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append({"headers": dict(request.headers), "body": body})
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.answers.append(answer)
        return web.Response(status=await answer)


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    # a stale floor of 60 s: an attempt at the default 30 s timeout is leased for 90 s
    async with dispatch_env(settings.replace(webhook_stale_seconds=60)) as e:
        yield e


async def one_execution(env: Env, url: str, **over: Any) -> tuple[str, dict[str, Any]]:
    """A cue fired once at T_FIRE (then paused): (API key, cue)."""
    api, clock, sched, _, _ = env
    key = await api.register()
    cue = await webhook_cue(api, key, url, **over)
    clock.set(T_FIRE)
    assert await sched.tick() == 1
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    return key, cue


async def held(env: Env) -> HeldReceiver:
    receiver = HeldReceiver()
    await receiver.start()
    return receiver


async def stop(receiver: HeldReceiver, *others: Dispatcher) -> None:
    for answer in receiver.answers:  # a failed test leaves requests open: answer them
        if not answer.done():
            answer.set_result(503)
    for d in others:
        await d.close()
    assert receiver.runner is not None
    await receiver.runner.cleanup()


async def test_a_slow_receiver_within_a_long_timeout_gets_one_request(env: Env) -> None:
    """Issue 12 A1: a 400 s timeout, a receiver that answers after 120 s: in 200 s it receives
    exactly one request (a survivor reclaiming the entry finds the attempt's lease live), and
    the execution ends ``success``."""
    api, clock, _, first, _ = env
    receiver = await held(env)
    second = Dispatcher(api.rt.store, api.rt.settings, clock, api.rt.webhooks)
    await second.start()
    try:
        key, cue = await one_execution(
            env, receiver.url, delivery={"timeout_seconds": 400, "outcome_deadline_seconds": None}
        )
        ((p, entry_id, eid),) = await api.rt.store.delivery.read(first.consumer, 10, 50)
        sending = asyncio.create_task(first.deliver(p, entry_id, eid))
        await wait_for(lambda: receiver.requests, what="the request")
        for at in (60, 100, 119):
            clock.set(T_FIRE + at * S)
            for r in await api.rt.store.delivery.reclaim(second.consumer, 0, 10):
                assert await asyncio.wait_for(second.deliver(*r), 10) is None  # busy: leased
            assert len(receiver.requests) == 1
        clock.set(T_FIRE + 120 * S)
        receiver.answers[0].set_result(200)
        assert await asyncio.wait_for(sending, 10) == "success"
        for at in (150, 200):
            clock.set(T_FIRE + at * S)
            assert await api.rt.store.delivery.reclaim(second.consumer, 0, 10) == []
        assert len(receiver.requests) == 1
        e = await only_execution(api, key, cue["id"])
        assert e["status"] == "success" and e["attempts"] == 1 and e["error_message"] is None
    finally:
        await stop(receiver, second)


async def test_a_result_that_lost_its_lease_records_nothing(env: Env) -> None:
    """A request that outlives its lease (the receiver kept it open past the timeout's margin):
    a survivor takes the execution over and sends it again (at least once); the first
    attempt's late failure is fenced out — no retry, no attempt counted — and the survivor's
    success is what the execution records."""
    api, clock, _, first, _ = env
    receiver = await held(env)
    second = Dispatcher(api.rt.store, api.rt.settings, clock, api.rt.webhooks)
    await second.start()
    try:
        key, cue = await one_execution(env, receiver.url)  # default 30 s timeout: a 90 s lease
        ((p, entry_id, eid),) = await api.rt.store.delivery.read(first.consumer, 10, 50)
        stale = asyncio.create_task(first.deliver(p, entry_id, eid))
        await wait_for(lambda: receiver.requests, what="the first request")
        clock.set(T_FIRE + 91 * S)
        ((_, reclaimed, _),) = await api.rt.store.delivery.reclaim(second.consumer, 0, 10)
        current = asyncio.create_task(second.deliver(p, reclaimed, eid))
        await wait_for(lambda: len(receiver.requests) == 2, what="the takeover's request")
        receiver.answers[0].set_result(500)  # the stale attempt's answer arrives first
        assert await asyncio.wait_for(stale, 10) is None
        e = await only_execution(api, key, cue["id"])
        assert e["status"] == "delivering" and e["attempts"] == 0
        assert await api.rt.store.redis.zcard(api.rt.keys.retries(p)) == 0
        receiver.answers[1].set_result(200)
        assert await asyncio.wait_for(current, 10) == "success"
        e = await only_execution(api, key, cue["id"])
        assert e["status"] == "success" and e["attempts"] == 1 and e["http_status"] == 200
        assert [json.loads(r["body"])["attempt"] for r in receiver.requests] == [1, 1]
        assert first.metrics.take()[f"{m.WEBHOOK_ATTEMPTS.name}\tsuperseded"] == 1
        await first.flush_usage()
        await second.flush_usage()
        me = (await api.request("GET", "/v1/auth/me", key)).json()
        assert me["executions_this_month"] == 1  # counted once, by the holder
    finally:
        await stop(receiver, second)


async def test_an_attempt_that_waited_gets_a_fresh_lease_before_it_is_sent(env: Env) -> None:
    """An attempt is never sent with less lease left than its timeout and a margin: one that
    waited (behind a busy host, for a global slot) gets a fresh lease first."""
    api, clock, _, first, receiver = env
    key, cue = await one_execution(env, receiver.url, name="waits", delivery=NO_DEADLINE_20)
    ((p, entry_id, eid),) = await api.rt.store.delivery.read(first.consumer, 10, 50)
    (a,) = await first.start_batch([(p, entry_id, eid)])
    assert a.lease_until == T_FIRE + 80 * S and a.timeout_s == 20  # max(60 s, 20 s + 60 s)
    clock.set(a.lease_until - 20 * S - SEND_MARGIN_US + 1)  # waited: too little lease left
    assert await first.attempt(a) == "success"
    assert a.lease_until == clock.now_us() + 80 * S  # sent with a fresh lease of its length
    assert len(receiver.requests) == 1


async def test_an_attempt_taken_over_while_it_waited_is_not_sent(env: Env) -> None:
    api, clock, _, first, receiver = env
    key, cue = await one_execution(env, receiver.url, delivery=NO_DEADLINE_20)
    ((p, entry_id, eid),) = await api.rt.store.delivery.read(first.consumer, 10, 50)
    (a,) = await first.start_batch([(p, entry_id, eid)])
    clock.set(a.lease_until + 1)  # waited past its lease …
    (b,) = await first.start_batch([(p, entry_id, eid)])  # … and was taken over
    assert await first.attempt(a) is None  # not sent
    assert receiver.requests == []
    assert await first.attempt(b) == "success"
    assert len(receiver.requests) == 1
    e = await only_execution(api, key, cue["id"])
    assert e["status"] == "success" and e["attempts"] == 1
