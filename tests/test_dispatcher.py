"""Webhook delivery against real HTTP receivers on 127.0.0.1 (CONTRACT.md §10)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.engine.dispatcher import Dispatcher
from cuefast.engine.notices import NoticeSender
from cuefast.engine.scheduler import Scheduler
from cuefast.engine.webhooks import Webhooks
from cuefast.store.delivery import Lease
from cuefast.times import parse_datetime
from tests.conftest import Api, make_api, wait_for


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


T0 = parse_datetime("2031-01-06T08:59:30Z")
MIN = 60_000_000


class Receiver:
    """A real HTTP server; ``mode`` decides the answer: ok, 500, 404, 302, hang, slow, reset;
    ``most_in_flight``: the most requests it was answering at once."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests: list[dict[str, Any]] = []
        self.mode = "ok"
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.unblock = asyncio.Event()
        self.in_flight = self.most_in_flight = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": body,
                "at": time.time(),
            }
        )
        if self.mode == "500":
            return web.Response(status=500, text="boom")
        if self.mode == "404":
            return web.Response(status=404)
        if self.mode == "302":
            return web.Response(status=302, headers={"Location": "http://127.0.0.1:1/elsewhere"})
        if self.mode == "hang":
            await asyncio.sleep(3)
        if self.mode == "slow":  # a receiver that takes its time answering
            await asyncio.sleep(0.1)
        if self.mode == "block":  # until released (the sender dies meanwhile)
            await self.unblock.wait()
        if self.mode == "outcome":
            return web.json_response(
                {"success": False, "error": "bad input", "external_id": "x1", "summary": 5}
            )
        if self.mode == "reset":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"


Env = tuple[Api, FrozenClock, Scheduler, Dispatcher, Receiver]


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    async with dispatch_env(settings) as e:
        yield e


@asynccontextmanager
async def dispatch_env(settings: Settings) -> AsyncIterator[Env]:
    """An in-process API, scheduler and dispatcher on a frozen clock (T0), and a receiver."""
    clock = FrozenClock(T0)
    api, rt = await make_api(settings, clock)
    receiver = Receiver()
    await receiver.start()
    dispatcher = Dispatcher(rt.store, settings, clock, rt.webhooks)
    await dispatcher.start()
    try:
        yield api, clock, Scheduler(rt.store, clock), dispatcher, receiver
    finally:
        await dispatcher.close()
        assert receiver.runner is not None
        await receiver.runner.cleanup()
        await api.client.aclose()
        await rt.close()


async def drain(dispatcher: Dispatcher) -> list[str | None]:
    """Deliver everything in the outbox now, in this task (deterministic)."""
    entries = await dispatcher.store.delivery.read(dispatcher.consumer, 1000, 50)
    return [await dispatcher.deliver(p, entry_id, eid) for p, entry_id, eid in entries]


async def webhook_cue(api: Api, key: str, url: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": over.pop("name", "hook-a"),
        "schedule": {"type": "recurring", "cron": "* * * * *"},
        "callback": {"url": url},
        "payload": {"task": "t1", "n": 1, "ü": "é", "x": 1.5e-7, "big": 1e16},
    }
    body.update(over)
    res = await api.request("POST", "/v1/cues", key, json=body)
    assert res.status_code == 201, res.text
    out: dict[str, Any] = res.json()
    return out


async def only_execution(api: Api, key: str, cue_id: str) -> dict[str, Any]:
    items = (await api.request("GET", f"/v1/executions?cue_id={cue_id}", key)).json()["executions"]
    assert len(items) == 1, items
    out: dict[str, Any] = items[0]
    return out


def independent_signature(secret: str, ts: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()


async def test_signed_delivery_byte_exact(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    secret = (await api.request("GET", "/v1/auth/webhook-secret", key)).json()["webhook_secret"]
    cue = await webhook_cue(
        api,
        key,
        receiver.url,
        callback={
            "url": receiver.url,
            "headers": {"X-Team": "ops", "X-CueAPI-Signature": "forged", "Host": "evil"},
        },
    )
    clock.set(parse_datetime("2031-01-06T09:00:00.5Z"))
    assert await sched.tick() == 1
    assert await drain(dispatcher) == ["success"]
    (req,) = receiver.requests
    h = req["headers"]
    assert req["method"] == "POST" and req["path"] == "/hook"
    assert (
        h["X-Team"] == "ops" and h["User-Agent"] == "CueAPI/1.0" and h["Content-Type"] == "application/json"
    )
    assert h["X-CueAPI-Signature"] != "forged" and h["Host"] != "evil"
    assert h["X-CueAPI-Signature"] == independent_signature(secret, h["X-CueAPI-Timestamp"], req["body"])
    assert h["X-CueAPI-Timestamp"] == str(parse_datetime("2031-01-06T09:00:00.5Z") // 1_000_000)
    body = json.loads(req["body"])
    assert req["body"] == json.dumps(body, sort_keys=True).encode()  # canonical bytes
    assert set(body) == {"attempt", "cue_id", "execution_id", "name", "payload", "scheduled_for"}
    assert body["attempt"] == 1 and h["X-CueAPI-Attempt"] == "1"
    assert body["scheduled_for"] == "2031-01-06T09:00:00+00:00" == h["X-CueAPI-Scheduled-For"]
    assert body["payload"] == {"task": "t1", "n": 1, "ü": "é", "x": 1.5e-7, "big": 1e16}
    assert h["X-CueAPI-Cue-Id"] == cue["id"] and h["X-CueAPI-Execution-Id"] == body["execution_id"]
    e = await only_execution(api, key, cue["id"])
    assert e["status"] == "success" and e["http_status"] == 200 and e["attempts"] == 1
    assert e["error_message"] is None and e["delivered_at"] and e["started_at"] and e["last_attempt_at"]
    detail = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert detail["run_count"] == 1 and detail["last_run"] is not None


async def test_signature_uses_current_secret(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    await webhook_cue(api, key, receiver.url)
    clock.set(parse_datetime("2031-01-06T09:00:01Z"))
    await sched.tick()  # queued with the old secret …
    res = await api.request(
        "POST", "/v1/auth/webhook-secret/regenerate", key, headers={"X-Confirm-Destructive": "true"}
    )
    new_secret = res.json()["webhook_secret"]
    await drain(dispatcher)  # … signed with the current one
    h = receiver.requests[0]["headers"]
    assert h["X-CueAPI-Signature"] == independent_signature(
        new_secret, h["X-CueAPI-Timestamp"], receiver.requests[0]["body"]
    )


async def test_retries_with_backoff_then_failed(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    receiver.mode = "500"
    cue = await webhook_cue(api, key, receiver.url, retry={"max_attempts": 3, "backoff_minutes": [1, 5, 15]})
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})  # one execution only
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "active"})
    clock.set(parse_datetime("2031-01-06T09:01:00Z"))
    await sched.tick()
    assert await drain(dispatcher) == ["retrying"]
    e = await only_execution(api, key, cue["id"])
    assert e["status"] == "retrying" and e["attempts"] == 1 and e["http_status"] == 500
    assert e["error_message"] == "Webhook endpoint returned server error (500)"
    assert e["next_retry"] == "2031-01-06T09:02:00Z"
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})  # no new ticks
    clock.advance(59)
    await sched.tick()
    assert await drain(dispatcher) == []  # not yet
    clock.advance(1)
    await sched.tick()
    assert await drain(dispatcher) == ["retrying"]
    e = await only_execution(api, key, cue["id"])
    assert e["attempts"] == 2 and e["next_retry"] == "2031-01-06T09:07:00Z"
    clock.advance(5 * 60)
    await sched.tick()
    assert await drain(dispatcher) == ["failed"]
    e = await only_execution(api, key, cue["id"])
    assert (
        e["status"] == "failed" and e["attempts"] == 3 and e["http_status"] == 500 and e["next_retry"] is None
    )
    assert [json.loads(r["body"])["attempt"] for r in receiver.requests] == [1, 2, 3]
    detail = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert detail["run_count"] == 3


@pytest.mark.parametrize(
    ("mode", "message", "status"),
    [
        ("404", "Webhook endpoint not found (404)", 404),
        ("302", "Webhook delivery failed (302)", 302),
        pytest.param("hang", "Webhook endpoint timed out", None, marks=pytest.mark.slow),  # waits out 1 s
        ("reset", "Could not connect to webhook endpoint", None),
    ],
)
async def test_failed_attempts(env: Any, mode: str, message: str, status: int | None) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    receiver.mode = mode
    cue = await webhook_cue(
        api, key, receiver.url, retry={"max_attempts": 1}, delivery={"timeout_seconds": 1}
    )
    clock.set(parse_datetime("2031-01-06T09:00:01Z"))
    await sched.tick()
    assert await drain(dispatcher) == ["failed"]
    e = await only_execution(api, key, cue["id"])
    assert e["error_message"] == message and e["http_status"] == status
    if mode == "302":
        assert len(receiver.requests) == 1  # the redirect was not followed


async def test_connection_refused(env: Any) -> None:
    api, clock, sched, dispatcher, _ = env
    key = await api.register()
    cue = await webhook_cue(api, key, "http://127.0.0.1:1/nothing", retry={"max_attempts": 1})
    clock.set(parse_datetime("2031-01-06T09:00:01Z"))
    await sched.tick()
    assert await drain(dispatcher) == ["failed"]
    assert (await only_execution(api, key, cue["id"]))[
        "error_message"
    ] == "Could not connect to webhook endpoint"


async def test_blocked_at_delivery_time(env: Any, settings: Settings) -> None:
    api, clock, sched, _, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url, retry={"max_attempts": 1})
    strict_settings = settings.replace(allow_private_callbacks=False)
    webhooks = Webhooks(strict_settings)
    strict = Dispatcher(api.rt.store, strict_settings, clock, webhooks)
    await strict.start()
    try:
        clock.set(parse_datetime("2031-01-06T09:00:01Z"))
        await sched.tick()
        assert await drain(strict) == ["failed"]
    finally:
        await strict.close()
        await webhooks.close()
    assert receiver.requests == []
    assert (await only_execution(api, key, cue["id"]))[
        "error_message"
    ] == "Callback URL resolved to blocked IP"


async def test_one_time_cue_completes(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url, schedule={"type": "once", "at": "2031-01-06T09:00:00Z"})
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await sched.tick()
    await drain(dispatcher)
    detail = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert detail["status"] == "completed" and detail["next_run"] is None
    assert (await api.request("GET", "/v1/cues?status=completed", key)).json()["total"] == 1


async def test_deadline_armed_goes_pending_outcome(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url, delivery={"outcome_deadline_seconds": 120})
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await sched.tick()
    assert await drain(dispatcher) == ["pending_outcome"]
    e = await only_execution(api, key, cue["id"])
    assert e["outcome_deadline_at"] == "2031-01-06T09:02:00Z"


async def test_crashed_dispatcher_entry_is_reclaimed_once_stale(env: Any, settings: Settings) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url)
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await sched.tick()
    # a dispatcher reads the entry, starts the attempt, and dies before finishing
    ((p, _entry_id, eid),) = await api.rt.store.delivery.read("dead-consumer", 10, 50)
    (started,) = (await api.rt.store.delivery.start({p: [eid]}, clock.now_us(), timeout_s=30, stale_s=300))[p]
    assert isinstance(started, Lease)
    # while its lease is live, a reclaimer leaves the entry alone
    reclaimed = await api.rt.store.delivery.reclaim(dispatcher.consumer, 0, 10)
    assert [await dispatcher.deliver(*r) for r in reclaimed] == [None]
    assert receiver.requests == []
    # once stale, the next reclaim delivers it: same attempt number, recorded once
    clock.advance(331)
    reclaimed = await api.rt.store.delivery.reclaim(dispatcher.consumer, 0, 10)
    assert [await dispatcher.deliver(*r) for r in reclaimed] == ["success"]
    e = await only_execution(api, key, cue["id"])
    assert e["status"] == "success" and e["attempts"] == 1
    assert json.loads(receiver.requests[0]["body"])["attempt"] == 1
    assert await api.rt.store.delivery.reclaim(dispatcher.consumer, 0, 10) == []
    assert (
        sum([await api.rt.store.redis.xlen(api.rt.keys.outbox(q)) for q in range(api.rt.keys.partitions)])
        == 0
    )


@pytest.mark.slow
@pytest.mark.parametrize("scripts_lost", [False, True])
async def test_run_loop_delivers_and_stops_gracefully(env: Any, scripts_lost: bool) -> None:
    """20 cues over several partitions: leases and results go one pipeline per batch (one
    script call per partition); a server that lost its script cache (restart, SCRIPT FLUSH)
    gets the scripts (Redis functions) again and nothing is skipped or repeated."""
    api, clock, sched, _, receiver = env
    key = await api.register()
    for i in range(20):
        await webhook_cue(api, key, receiver.url, name=f"c{i}")
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await sched.tick()
    if scripts_lost:
        await api.rt.store.redis.script_flush()
        for name in api.rt.store.scripts.function_names():
            await api.rt.store.redis.function_delete(name)
    runner = Dispatcher(api.rt.store, api.rt.settings, clock, api.rt.webhooks)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop, block_ms=50))
    try:
        async with asyncio.timeout(20):
            while len(receiver.requests) < 20:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    res = (await api.request("GET", "/v1/executions?status=success&limit=100", key)).json()
    assert res["total"] == 20
    delivered = [r["headers"]["X-CueAPI-Execution-Id"] for r in receiver.requests]
    assert sorted(delivered) == sorted(e["id"] for e in res["executions"])


async def test_on_failure_pause_and_signed_notice(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    secret = (await api.request("GET", "/v1/auth/webhook-secret", key)).json()["webhook_secret"]
    notices = Receiver()
    await notices.start()
    try:
        receiver.mode = "500"
        cue = await webhook_cue(
            api,
            key,
            receiver.url,
            name="failer",
            retry={"max_attempts": 1},
            on_failure={"pause": True, "webhook": notices.url, "email": True},
        )
        clock.set(parse_datetime("2031-01-06T09:00:00Z"))
        await sched.tick()
        assert await drain(dispatcher) == ["failed"]
        # queued with the final result (durable), sent by the dispatcher's notice sender
        sender = NoticeSender(api.rt.store, api.rt.settings, clock, api.rt.webhooks)
        await sender.start()
        assert await sender.step() == 2  # the webhook, and the e-mail (logged: no SMTP)
        detail = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
        assert detail["status"] == "paused" and detail["next_run"] is None
        (req,) = notices.requests
        body = json.loads(req["body"])
        assert req["body"] == json.dumps(body, sort_keys=True).encode()
        e = await only_execution(api, key, cue["id"])
        assert body == {
            "attempts": 1,
            "cue_id": cue["id"],
            "cue_name": "failer",
            "dashboard_url": None,
            "event": "cue.failed",
            "execution_id": e["id"],
            "failed_at": "2031-01-06T09:00:00+00:00",
            "last_error": "Webhook endpoint returned server error (500)",
            "last_http_status": 500,
        }
        h = req["headers"]
        assert h["X-CueAPI-Signature"] == independent_signature(secret, h["X-CueAPI-Timestamp"], req["body"])
        assert h["User-Agent"] == "CueAPI/1.0"
    finally:
        assert notices.runner is not None
        await notices.runner.cleanup()


async def test_response_body_outcome_and_usage(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    receiver.mode = "outcome"
    cue = await webhook_cue(api, key, receiver.url, delivery={"outcome_deadline_seconds": 60})
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await sched.tick()
    # the body's outcome is recorded with the delivery, in one script call: it ends the attempt
    assert await drain(dispatcher) == ["failed"]
    e = await only_execution(api, key, cue["id"])
    assert e["status"] == "failed" and e["outcome_state"] == "reported_failure"
    assert e["delivered_at"] is not None
    assert e["outcome"]["error"] == "bad input" and e["outcome"]["external_id"] == "x1"
    assert e["outcome"]["summary"] is None  # invalid evidence value ignored
    res = await api.request("POST", f"/v1/executions/{e['id']}/outcome", key, json={"success": True})
    assert res.status_code == 409
    await dispatcher.flush_usage()  # counters are aggregated and written once a second
    me = (await api.request("GET", "/v1/auth/me", key)).json()
    assert me["executions_this_month"] == 1


async def test_outcome_deadline_times_out(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url, delivery={"outcome_deadline_seconds": 120})
    once = await webhook_cue(
        api,
        key,
        receiver.url,
        name="once",
        schedule={"type": "once", "at": "2031-01-06T09:00:00Z"},
        delivery={"outcome_deadline_seconds": 120},
    )
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await sched.tick()
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    assert sorted(await drain(dispatcher)) == ["pending_outcome", "pending_outcome"]
    clock.advance(119)
    await sched.tick()
    assert (await only_execution(api, key, cue["id"]))["status"] == "pending_outcome"
    clock.advance(1)
    await sched.tick()
    e = await only_execution(api, key, cue["id"])
    assert e["status"] == "outcome_timeout" and e["error_message"] == "Outcome not reported within 120s"
    assert (await api.request("GET", f"/v1/cues/{once['id']}", key)).json()["status"] == "failed"
    # a late outcome is stored, the status stays
    res = await api.request("POST", f"/v1/executions/{e['id']}/outcome", key, json={"success": True})
    assert res.status_code == 200
    assert (await only_execution(api, key, cue["id"]))["status"] == "outcome_timeout"


async def one_pending_outcome(env: Env, deadline_seconds: int) -> tuple[str, dict[str, Any]]:
    """A recurring cue with an outcome deadline, fired once and delivered (pending_outcome),
    then paused so nothing else becomes due: (API key, cue)."""
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, receiver.url, delivery={"outcome_deadline_seconds": deadline_seconds})
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await sched.tick()
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    assert await drain(dispatcher) == ["pending_outcome"]
    return key, cue


async def test_run_loop_wakes_for_a_deadline_alone(env: Any) -> None:
    """With nothing else due, the run loop still wakes for an outcome deadline, and a pass
    runs only the steps that are due."""
    api, clock, sched, _, _ = env
    key, cue = await one_pending_outcome(env, deadline_seconds=120)
    store = api.rt.store
    due, wait_us = await store.schedule.due_work(clock.now_us(), sched.unclaimed_window_us)
    assert due == {} and wait_us == 120 * 1_000_000
    clock.advance(120)
    due, wait_us = await store.schedule.due_work(clock.now_us(), sched.unclaimed_window_us)
    assert list(due.values()) == [frozenset({"deadlines"})] and wait_us == 0
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    try:
        e = await wait_for(lambda: _timed_out(api, key, cue["id"]), timeout=10, what="the deadline to expire")
    finally:
        stop.set()
        await task
    assert e["error_message"] == "Outcome not reported within 120s"


async def _timed_out(api: Api, key: str, cue_id: str) -> dict[str, Any] | None:
    e = await only_execution(api, key, cue_id)
    return e if e["status"] == "outcome_timeout" else None


async def test_outcome_in_time_disarms_deadline(env: Any) -> None:
    api, clock, sched, _, _ = env
    key, cue = await one_pending_outcome(env, deadline_seconds=60)
    e = await only_execution(api, key, cue["id"])
    await api.request("POST", f"/v1/executions/{e['id']}/outcome", key, json={"success": True})
    clock.advance(3600)
    await sched.tick()
    assert (await only_execution(api, key, cue["id"]))["status"] == "success"
