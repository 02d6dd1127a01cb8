"""The SDK (sync and async) against the real server over real HTTP, and its error mapping."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import inspect
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import uvicorn

from cuefast import (
    AsyncCueFast,
    AuthenticationError,
    CueAPIConnectionError,
    CueAPIError,
    CueAPIServerError,
    CueFast,
    CueLimitExceededError,
    CueNotFoundError,
    CuePayload,
    InvalidScheduleError,
    RateLimitError,
    verify_webhook,
)
from cuefast.api import create_app
from cuefast.config import Settings
from cuefast.runtime import Runtime
from cuefast.signing import canonical_json, sign
from tests.conftest import _delete_prefix, backend_settings

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The real app (real Redis) served by uvicorn on 127.0.0.1 in a thread of its own."""

    def __init__(self, settings: Settings, port: int | None = None, *, scheduler: bool = False) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._error: BaseException | None = None
        self._probe_key: str | None = None

    def start(self) -> LiveServer:
        started = threading.Event()

        async def serve() -> None:
            rt = Runtime(self.settings)
            await rt.start()
            config = uvicorn.Config(
                create_app(rt, manage_runtime=False),
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
            self._server = server = uvicorn.Server(config)
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            task = asyncio.create_task(server.serve())
            stopping = asyncio.Event()
            roles = []
            if self.scheduler:
                from cuefast.engine.scheduler import Scheduler

                sched = Scheduler(rt.store, rt.clock, work=rt.reaper)
                roles.append(asyncio.create_task(sched.run(stopping)))
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            started.set()
            try:
                await task
            finally:
                stopping.set()
                await asyncio.gather(*roles, return_exceptions=True)
                await rt.close()

        def run() -> None:
            try:
                asyncio.run(serve())
            except BaseException as exc:  # pragma: no cover - reported by start()
                self._error = exc
                started.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert started.wait(30), "server did not start"
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)

    def register(self) -> str:
        email = f"sdk-{uuid.uuid4().hex[:8]}@example.com"
        res = httpx.post(self.url + "/v1/auth/register", json={"email": email})
        assert res.status_code == 201, res.text
        return str(res.json()["api_key"])

    def has_route(self, method: str, path: str) -> bool:
        """The server implements this route (probed with a fresh account)."""
        if self._probe_key is None:
            self._probe_key = self.register()
        headers = {"Authorization": f"Bearer {self._probe_key}"}
        res = httpx.request(method, self.url + path, json={}, headers=headers)
        return res.status_code not in (404, 405)


@pytest.fixture(scope="module")
def live(redis_url: str, database_url: str, pg_schema: str) -> Iterator[LiveServer]:
    """One server for the module (a start costs ~0.5 s): each test registers its own account,
    and the per-IP limit that those registrations count in is lifted."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    cfg = backend_settings(redis_url, database_url, pg_schema, prefix, ip_rate_limit=1_000_000)
    server = LiveServer(cfg).start()
    try:
        yield server
    finally:
        server.stop()
        _delete_prefix(redis_url, prefix)


@pytest.fixture(params=["sync", "async"])
async def sdk(request: pytest.FixtureRequest, live: LiveServer) -> AsyncIterator[Any]:
    """A CueFast or an AsyncCueFast for a fresh account; call methods through ``r``."""
    key = live.register()
    if request.param == "sync":
        client: Any = CueFast(key, base_url=live.url)
        yield client
        client.close()
    else:
        client = AsyncCueFast(key, base_url=live.url)
        yield client
        await client.aclose()


async def r(value: Any) -> Any:
    """The value of a sync call, or the awaited value of an async one."""
    return await value if inspect.isawaitable(value) else value


def _future(seconds: int = 3600) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


# --- cues ----------------------------------------------------------------------------


async def test_cue_lifecycle(sdk: Any) -> None:
    cue = await r(
        sdk.cues.create(
            "morning",
            cron="0 9 * * *",
            timezone="America/New_York",
            callback="http://127.0.0.1:9/hook",
            callback_headers={"X-Team": "ops"},
            payload={"task": "brief", "n": 1},
            description="daily",
            retry={"max_attempts": 2, "backoff_minutes": [1]},
            on_failure={"pause": True},
            verification="require_external_id",
            delivery={"timeout_seconds": 5, "max_concurrency": 3},
            alerts={"consecutive_failures": 4},
            catch_up="none",
            overlap="skip",
        )
    )
    assert cue.id.startswith("cue_") and cue.name == "morning" and cue.status == "active"
    assert cue.schedule.cron == "0 9 * * *" and cue.schedule.timezone == "America/New_York"
    assert cue.callback.url == "http://127.0.0.1:9/hook" and cue.callback.headers == {"X-Team": "ops"}
    assert cue.payload == {"task": "brief", "n": 1}
    assert cue.retry.max_attempts == 2 and cue.on_failure is not None and cue.on_failure.pause
    assert cue.verification is not None and cue.verification.mode == "require_external_id"
    assert cue.delivery is not None and cue.delivery.timeout_seconds == 5
    assert cue.delivery.max_concurrency == 3  # cuefast's concurrency cap
    assert cue.alerts is not None and cue.alerts.consecutive_failures == 4
    assert cue.catch_up == "none" and cue.description == "daily" and cue.overlap == "skip"
    assert cue.next_run is not None and cue.next_run.tzinfo is not None
    assert cue.next_run.astimezone(dt.timezone(dt.timedelta(hours=-5))).hour in (9, 10)

    once = await r(sdk.cues.create("once", at=_future(), transport="worker", payload={"task": "etl"}))
    assert once.transport == "worker" and once.schedule.type == "once"
    assert once.callback.url is None and once.next_run == once.schedule.at and once.overlap == "allow"

    listing = await r(sdk.cues.list(limit=1))
    assert listing.total == 2 and listing.limit == 1 and listing.offset == 0 and len(listing.cues) == 1
    page2 = await r(sdk.cues.list(limit=1, offset=1))
    assert {listing.cues[0].id, page2.cues[0].id} == {cue.id, once.id}
    assert (await r(sdk.cues.list(status="paused"))).total == 0

    got = await r(sdk.cues.get(cue.id))
    assert got.id == cue.id and got.executions == [] and got.execution_total == 0

    updated = await r(sdk.cues.update(cue.id, description="x", callback="http://127.0.0.1:10/h2"))
    assert updated.description == "x" and updated.callback.url == "http://127.0.0.1:10/h2"
    assert updated.callback.headers == {"X-Team": "ops"}  # merged, not replaced
    assert updated.overlap == "skip"
    assert (await r(sdk.cues.update(cue.id, overlap="cancel_previous"))).overlap == "cancel_previous"
    tz_only = await r(sdk.cues.update(cue.id, timezone="UTC", cron="30 10 * * *"))
    assert tz_only.schedule.timezone == "UTC" and tz_only.schedule.cron == "30 10 * * *"

    paused = await r(sdk.cues.pause(cue.id))
    assert paused.status == "paused" and paused.next_run is None
    assert (await r(sdk.cues.list(status="paused"))).cues[0].id == cue.id
    resumed = await r(sdk.cues.resume(cue.id))
    assert resumed.status == "active" and resumed.next_run is not None

    assert await r(sdk.cues.delete(cue.id)) is None
    with pytest.raises(CueNotFoundError) as err:
        await r(sdk.cues.get(cue.id))
    assert err.value.status_code == 404 and err.value.code == "cue_not_found"
    assert cue.to_dict()["schedule"]["cron"] == "0 9 * * *"


async def test_labels_filter_and_bulk_pause_resume(sdk: Any) -> None:
    hook = "http://127.0.0.1:9/hook"
    a = await r(sdk.cues.create("a", cron="0 9 * * *", callback=hook, labels={"team": "x", "env": "prod"}))
    b = await r(sdk.cues.create("b", cron="0 9 * * *", callback=hook, labels={"team": "x"}))
    c = await r(sdk.cues.create("c", cron="0 9 * * *", callback=hook))
    assert a.labels == {"team": "x", "env": "prod"} and c.labels == {}
    assert [x.id for x in (await r(sdk.cues.list(labels={"team": "x"}))).cues] == [b.id, a.id]
    assert [x.id for x in (await r(sdk.cues.list(labels={"env": None}))).cues] == [a.id]
    assert (await r(sdk.cues.list(labels=["team:x", "env:prod"]))).total == 1
    paused = await r(sdk.cues.pause_many(labels={"team": "x"}))
    assert (paused.matched, paused.changed, sorted(paused.ids)) == (2, 2, sorted([a.id, b.id]))
    assert (await r(sdk.cues.get(a.id))).status == "paused"
    assert (await r(sdk.cues.get(c.id))).status == "active"
    resumed = await r(sdk.cues.resume_many(ids=[a.id, c.id]))
    assert (resumed.matched, resumed.changed, resumed.ids) == (2, 1, [a.id])
    b2 = await r(sdk.cues.update(b.id, labels={}))
    assert b2.labels == {} and (await r(sdk.cues.list(labels={"team": "x"}))).total == 1
    with pytest.raises(ValueError):
        sdk.cues.pause_many()


async def test_jitter_seconds(sdk: Any) -> None:
    """cuefast's schedule.jitter_seconds through the SDK: set, kept by a schedule change, off
    with 0; a plain cue decodes with 0 and a manual fire's execution with no fire_at."""
    cue = await r(sdk.cues.create("j", cron="0 9 * * *", transport="worker", jitter_seconds=90))
    assert cue.schedule.jitter_seconds == 90
    cue = await r(sdk.cues.update(cue.id, timezone="Europe/Paris"))
    assert (cue.schedule.timezone, cue.schedule.jitter_seconds) == ("Europe/Paris", 90)
    cue = await r(sdk.cues.update(cue.id, jitter_seconds=0))
    assert cue.schedule.jitter_seconds == 0
    fired = await r(sdk.cues.fire(cue.id))
    assert (await r(sdk.executions.get(fired.id))).fire_at is None


async def test_verification_checks_and_host_caps(sdk: Any) -> None:
    """cuefast's verification.checks and the per-host caps through the SDK (issue 17 items 3 and
    5): sent in ``verification`` / ``delivery``, read back typed, changed and removed by update."""
    checks = {
        "external_id_pattern": "ch_[0-9]+",
        "result_schema": {"type": "object"},
        "result_url_reachable": True,
    }
    cue = await r(
        sdk.cues.create(
            "v",
            cron="0 9 * * *",
            callback="http://127.0.0.1:9/hook",
            verification={"mode": "require_external_id", "checks": checks},
            delivery={"max_concurrency_per_host": 4, "max_per_second": 20, "outcome_deadline_seconds": None},
        )
    )
    assert cue.verification.mode == "require_external_id"
    got = cue.verification.checks
    assert (got.external_id_pattern, got.result_schema, got.result_url_reachable) == (
        "ch_[0-9]+",
        {"type": "object"},
        True,
    )
    assert (cue.delivery.max_concurrency_per_host, cue.delivery.max_per_second) == (4, 20)
    cue = await r(
        sdk.cues.update(cue.id, verification={"mode": "none", "checks": {"external_id_pattern": "x+"}})
    )
    assert (
        cue.verification.checks.external_id_pattern == "x+" and cue.verification.checks.result_schema is None
    )
    cue = await r(sdk.cues.update(cue.id, verification={"mode": "none", "checks": {}}))
    assert cue.verification is None or cue.verification.checks is None
    with pytest.raises(CueAPIError) as bad:
        await r(sdk.cues.update(cue.id, verification={"checks": {"external_id_pattern": "(a"}}))
    assert bad.value.status_code == 422


async def test_fire_merge_replace_and_idempotency(sdk: Any) -> None:
    cue = await r(sdk.cues.create("w", cron="0 0 1 1 *", transport="worker", payload={"task": "a", "n": 1}))
    fired = await r(sdk.cues.fire(cue.id, payload_override={"n": 2, "x": True}))
    assert fired.cue_id == cue.id and fired.status == "pending" and fired.triggered_by == "manual_fire"
    assert fired.payload == {"task": "a", "n": 2, "x": True}
    replaced = await r(sdk.cues.fire(cue.id, payload_override={"only": 1}, merge_strategy="replace"))
    assert replaced.payload == {"only": 1}
    later = _future(600)
    scheduled = await r(sdk.cues.fire(cue.id, send_at=later))
    assert abs((scheduled.scheduled_for - later).total_seconds()) < 1
    one = await r(sdk.cues.fire(cue.id, idempotency_key="k1"))
    again = await r(sdk.cues.fire(cue.id, idempotency_key="k1"))
    assert one.id == again.id
    with pytest.raises(CueAPIError) as err:
        await r(sdk.cues.fire(cue.id, idempotency_key="k1", payload_override={"n": 9}))
    assert err.value.status_code == 409 and err.value.code == "idempotency_key_conflict"
    assert type(err.value) is CueAPIError


# --- executions ------------------------------------------------------------------------


async def test_executions_outcome_evidence_verify_replay(sdk: Any) -> None:
    cue = await r(
        sdk.cues.create(
            "w", cron="0 0 1 1 *", transport="worker", payload={"task": "t"}, verification="manual"
        )
    )
    fired = await r(sdk.cues.fire(cue.id))
    ex = await r(sdk.executions.get(fired.id))
    assert ex.id == fired.id and ex.cue_id == cue.id and ex.status == "pending" and ex.outcome is None
    assert ex.payload == {"task": "t"} and ex.triggered_by == "manual_fire"

    listing = await r(sdk.executions.list(cue_id=cue.id))
    assert listing.total == 1 and listing.executions[0].id == fired.id and listing.has_more is False
    assert (await r(sdk.executions.list(status="success"))).total == 0
    assert (await r(sdk.executions.list(status_in=["pending", "success"]))).total == 1
    assert (await r(sdk.executions.list(triggered_by="replay"))).total == 0
    await r(sdk.cues.fire(cue.id))
    both = [e.id for e in (await r(sdk.executions.list(cue_id=cue.id))).executions]
    first_page = await r(sdk.executions.list(cue_id=cue.id, limit=1, cursor=""))
    assert [e.id for e in first_page.executions] == both[:1] and first_page.next_cursor
    last_page = await r(sdk.executions.list(cue_id=cue.id, limit=1, cursor=first_page.next_cursor))
    assert [e.id for e in last_page.executions] == both[1:] and last_page.next_cursor is None
    assert listing.next_cursor is None  # an offset page has none
    job = await r(
        sdk.executions.replay_many(status="failed", since="2020-01-01T00:00:00Z", rate_per_second=5)
    )
    assert (job.status, job.selected, job.filter) == (
        "done",
        0,
        {"status": "failed", "since": "2020-01-01T00:00:00+00:00"},
    )
    assert (await r(sdk.executions.replay_status(job.id))).id == job.id
    with pytest.raises(InvalidScheduleError) as bad:
        await r(sdk.executions.list(status="a", status_in="b"))
    assert bad.value.code == "conflicting_filters" and bad.value.status_code == 400

    with pytest.raises(CueAPIError) as no_outcome:
        await r(sdk.executions.append_evidence(fired.id, summary="s"))
    assert no_outcome.value.status_code == 409 and no_outcome.value.code == "no_outcome"

    res = await r(
        sdk.executions.report_outcome(
            fired.id, True, result="x" * 4096, metadata={"k": "v"}, external_id="ext-1", summary="done"
        )
    )
    assert res.execution_id == fired.id and res.outcome_recorded is True
    assert res.outcome_state == "verification_pending"
    with pytest.raises(CueAPIError) as twice:
        await r(sdk.executions.report_outcome(fired.id, False, error="late"))
    assert twice.value.status_code == 409 and twice.value.code == "outcome_already_recorded"

    ev = await r(sdk.executions.append_evidence(fired.id, result_url="https://example.com/r", artifacts=[1]))
    assert ev.execution_id == fired.id and ev.evidence_updated is True

    done = await r(sdk.executions.get(fired.id))
    assert done.status == "success" and done.outcome is not None
    assert done.outcome.success is True and done.outcome.result == "x" * 4096
    assert done.outcome.metadata == {"k": "v"} and done.outcome.external_id == "ext-1"
    assert done.outcome.result_url == "https://example.com/r" and done.outcome.artifacts == [1]

    pending = await r(sdk.executions.mark_verification_pending(fired.id))
    assert pending.outcome_state == "verification_pending"
    rejected = await r(sdk.executions.verify(fired.id, valid=False, reason="mismatch"))
    assert rejected.outcome_state == "verification_failed" and rejected.valid is False
    assert rejected.reason == "mismatch"
    with pytest.raises(CueAPIError) as state:
        await r(sdk.executions.mark_verified(fired.id))
    assert state.value.code == "invalid_state"

    replay = await r(sdk.executions.replay(fired.id))
    assert replay.triggered_by == "replay" and replay.replayed_from == fired.id and replay.status == "pending"
    with pytest.raises(CueAPIError) as in_flight:
        await r(sdk.executions.replay(replay.id))
    assert in_flight.value.code == "execution_in_flight"
    with pytest.raises(CueNotFoundError) as missing:
        await r(sdk.executions.get("not-a-uuid"))
    assert missing.value.code == "execution_not_found"


async def test_handle_context_manager_and_payload_builder(sdk: Any) -> None:
    payload = CuePayload().task("t").agent("a").kind("k").extra("n", 1).build()
    assert payload == {"task": "t", "agent": "a", "kind": "k", "n": 1}
    cue = await r(sdk.cues.create("w", cron="0 0 1 1 *", transport="worker", payload=payload))
    ok, bad = (await r(sdk.cues.fire(cue.id))).id, (await r(sdk.cues.fire(cue.id))).id
    ctx = sdk.executions.handle(ok, payload)
    if isinstance(sdk, CueFast):
        with ctx:
            ctx.result = 42
            ctx.evidence = {"external_id": "x-1"}
        with pytest.raises(RuntimeError), sdk.executions.handle(bad):
            raise RuntimeError("nope")
    else:
        async with ctx:
            ctx.result = 42
            ctx.evidence = {"external_id": "x-1"}
        with pytest.raises(RuntimeError):
            async with sdk.executions.handle(bad):
                raise RuntimeError("nope")
    good = (await r(sdk.executions.get(ok))).outcome
    assert good.success and good.result == "42" and good.external_id == "x-1"
    failed = (await r(sdk.executions.get(bad))).outcome
    assert failed.success is False and failed.error == "nope"


# --- worker transport ---------------------------------


async def test_claim_heartbeat_outcome(sdk: Any, live: LiveServer) -> None:
    cue = await r(sdk.cues.create("w", cron="0 0 1 1 *", transport="worker", payload={"task": "etl"}))
    a = await r(sdk.cues.fire(cue.id, payload_override={"i": 1}))
    b = await r(sdk.cues.fire(cue.id, payload_override={"i": 2}))
    claimable = await r(sdk.executions.list_claimable(task="etl"))
    assert [e.execution_id for e in claimable.executions] == [a.id, b.id]
    item = claimable.executions[0]
    assert item.task == "etl" and item.cue_name == "w" and item.payload == {"task": "etl", "i": 1}
    assert (await r(sdk.executions.list_claimable(task="other"))).executions == []
    assert len((await r(sdk.executions.list_claimable(limit=1))).executions) == 1

    claimed = await r(sdk.executions.claim(a.id, "box-1"))
    assert claimed.claimed is True and claimed.execution_id == a.id and claimed.lease_seconds > 0
    with pytest.raises(CueAPIError) as taken:
        await r(sdk.executions.claim(a.id, "box-2"))
    assert taken.value.status_code == 409 and taken.value.code == "claim_failed"
    nxt = await r(sdk.executions.claim_next("box-1", task="etl"))
    assert nxt.execution_id == b.id
    with pytest.raises(CueAPIError) as none_left:
        await r(sdk.executions.claim_next("box-1"))
    assert none_left.value.code == "claim_failed"

    hb = await r(sdk.executions.heartbeat(a.id))
    assert hb.execution_id == a.id and hb.acknowledged and hb.lease_extended_until is not None
    assert (await r(sdk.executions.heartbeat(a.id, worker_id="box-1"))).acknowledged
    with pytest.raises(CueLimitExceededError) as not_owner:
        await r(sdk.executions.heartbeat(a.id, worker_id="box-2"))
    assert not_owner.value.code == "not_execution_owner"
    ex = await r(sdk.executions.get(a.id))
    assert ex.status == "delivering" and ex.claimed_by_worker == "box-1"
    assert (await r(sdk.executions.list(worker_id="box-1"))).total == 2

    await r(sdk.executions.report_outcome(a.id, False, error="boom"))
    failed = await r(sdk.executions.get(a.id))
    assert failed.status == "failed" and failed.outcome is not None and failed.outcome.error == "boom"
    with pytest.raises(CueAPIError) as not_claiming:
        await r(sdk.executions.heartbeat(a.id))
    assert not_claiming.value.code == "execution_not_claiming"


async def test_worker_registry(sdk: Any, live: LiveServer) -> None:
    hb = await r(sdk.workers.heartbeat("box-1", ["etl", "mail"]))
    assert hb.acknowledged is True and hb.server_time is not None
    workers = (await r(sdk.workers.list())).workers
    assert [(w.worker_id, w.handlers, w.heartbeat_status) for w in workers] == [
        ("box-1", ["etl", "mail"], "active")
    ]
    assert await r(sdk.workers.delete("box-1")) is None
    with pytest.raises(CueNotFoundError) as err:
        await r(sdk.workers.delete("box-1"))
    assert err.value.code == "worker_not_found"


async def test_alerts_and_usage(sdk: Any, live: LiveServer) -> None:
    cue = await r(
        sdk.cues.create("w", cron="0 0 1 1 *", transport="worker", verification="require_external_id")
    )
    fired = await r(sdk.cues.fire(cue.id))
    await r(sdk.executions.report_outcome(fired.id, True))  # no external_id → verification_failed
    alerts = await r(sdk.alerts.list(alert_type="verification_failed"))
    assert alerts.total == 1 and alerts.alerts[0].execution_id == fired.id
    assert alerts.alerts[0].alert_type == "verification_failed" and alerts.alerts[0].severity == "warning"
    assert (await r(sdk.alerts.list(since=_future()))).total == 0
    with pytest.raises(InvalidScheduleError) as bad:
        await r(sdk.alerts.list(alert_type="nope"))
    assert bad.value.code == "invalid_filter"
    usage = await r(sdk.usage())
    assert isinstance(usage.plan, str) and usage.cues.used == 1 and usage.cues.active == 1
    assert usage.billing_period is not None and usage.outcomes.reported == 1


async def test_batch_pull(sdk: Any, live: LiveServer) -> None:
    cue = await r(sdk.cues.create("w", cron="0 0 1 1 *", transport="worker", payload={"task": "etl"}))
    ids = [(await r(sdk.cues.fire(cue.id, payload_override={"i": i}))).id for i in range(5)]
    batch = await r(sdk.worker.claim("box-1", tasks=["etl"], max=3, lease_seconds=60))
    assert [e.execution_id for e in batch.executions] == ids[:3] and batch.lease_seconds == 60
    first = batch.executions[0]
    assert first.task == "etl" and first.cue_name == "w" and first.payload["i"] == 0 and first.attempt == 1
    assert first.lease_expires_at is not None
    assert (await r(sdk.worker.claim("box-1", tasks=["other"], max=10))).executions == []

    leases = await r(sdk.worker.extend_leases("box-1", [ids[0], ids[4]]))
    assert [x.execution_id for x in leases.extended] == [ids[0]] and leases.lost == [ids[4]]
    released = await r(sdk.worker.release("box-1", [ids[2]]))
    assert released.released == 1

    res = await r(
        sdk.worker.report_outcomes(
            "box-1",
            [
                {"execution_id": ids[0], "success": True, "result": "ok", "external_id": "e"},
                {"execution_id": ids[1], "success": False, "error": "bad"},
                {"execution_id": ids[0], "success": True},
            ],
        )
    )
    assert [(x.execution_id, x.outcome_recorded) for x in res.results] == [
        (ids[0], True),
        (ids[1], True),
        (ids[0], False),
    ]
    assert res.results[2].error is not None and res.results[2].error.code == "outcome_already_recorded"
    assert (await r(sdk.executions.get(ids[1]))).status == "failed"
    rest = await r(sdk.worker.claim("box-2", max=10))
    assert sorted(e.execution_id for e in rest.executions) == sorted([ids[2], ids[3], ids[4]])


async def test_task_claim_cap(sdk: Any, live: LiveServer) -> None:
    cue = await r(sdk.cues.create("w", cron="0 0 1 1 *", transport="worker", payload={"task": "etl/x"}))
    ids = [(await r(sdk.cues.fire(cue.id))).id for _ in range(3)]
    assert (await r(sdk.workers.task_cap("etl/x"))).max_concurrency is None
    cap = await r(sdk.workers.set_task_cap("etl/x", 2))
    assert (cap.task, cap.max_concurrency, cap.held) == ("etl/x", 2, 0)
    batch = await r(sdk.worker.claim("box-1", max=10))
    assert [e.execution_id for e in batch.executions] == ids[:2]
    assert (await r(sdk.workers.task_cap("etl/x"))).held == 2
    gone = await r(sdk.workers.delete_task_cap("etl/x"))
    assert gone.max_concurrency is None
    assert [e.execution_id for e in (await r(sdk.worker.claim("box-1", max=10))).executions] == ids[2:]


# --- errors, retries, transport -------------------------------------------------------------


async def test_error_mapping(live: LiveServer) -> None:
    key = live.register()
    with CueFast("cue_sk_" + "0" * 32, base_url=live.url) as bad, pytest.raises(AuthenticationError) as auth:
        bad.cues.list()
    assert auth.value.status_code == 401 and auth.value.code == "invalid_api_key"
    assert auth.value.body["error"]["status"] == 401

    async with AsyncCueFast(key, base_url=live.url) as client:
        with pytest.raises(InvalidScheduleError) as cron:
            await client.cues.create("c", cron="61 25 * * *", callback="http://127.0.0.1:9/h")
        assert cron.value.status_code == 400 and cron.value.code == "invalid_schedule"
        with pytest.raises(InvalidScheduleError) as tz:
            await client.cues.create(
                "c", cron="* * * * *", timezone="Mars/Base", callback="http://127.0.0.1:9/h"
            )
        assert tz.value.status_code == 422 and tz.value.code == "invalid_timezone"
        await client.cues.create("dup", cron="* * * * *", transport="worker")
        with pytest.raises(CueAPIError) as dup:
            await client.cues.create("dup", cron="* * * * *", transport="worker")
        assert dup.value.status_code == 409 and dup.value.code == "duplicate_cue_name"
        with pytest.raises(CueNotFoundError):
            await client.cues.fire("cue_doesnotexist")
    with pytest.raises(ValueError):
        CueFast("", base_url=live.url)


def test_cue_limit_maps_to_403(settings: Settings) -> None:
    server = LiveServer(settings.replace(default_cue_limit=1)).start()
    try:
        with CueFast(server.register(), base_url=server.url) as client:
            client.cues.create("one", cron="* * * * *", transport="worker")
            with pytest.raises(CueLimitExceededError) as err:
                client.cues.create("two", cron="* * * * *", transport="worker")
            assert err.value.status_code == 403 and err.value.code == "cue_limit_exceeded"
    finally:
        server.stop()


def test_rate_limit_maps_to_429_with_retry_after(settings: Settings) -> None:
    server = LiveServer(settings.replace(default_rate_limit_per_minute=3)).start()
    try:
        key = server.register()
        with CueFast(key, base_url=server.url, max_retry_wait=5) as client:
            res = None
            for _ in range(6):
                res = httpx.get(server.url + "/v1/cues", headers={"Authorization": f"Bearer {key}"})
                if res.status_code == 429:
                    break
            assert res is not None and res.status_code == 429, "the 4th request in a minute is limited"
            started = time.monotonic()
            with pytest.raises(RateLimitError) as err:
                client.cues.list()  # Retry-After (~60 s) exceeds max_retry_wait: raised at once
            assert time.monotonic() - started < 5
            assert err.value.status_code == 429 and err.value.code == "rate_limit_exceeded"
            assert isinstance(err.value.retry_after, int) and 1 <= err.value.retry_after <= 60
    finally:
        server.stop()


class _Flaky(http.server.BaseHTTPRequestHandler):
    """A real HTTP endpoint answering from a script: [(status, headers, body), …]."""

    script: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    seen: ClassVar[list[tuple[str, str]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        type(self).seen.append((self.command, self.path))
        status, headers, body = type(self).script.pop(0) if type(self).script else (200, {}, b"{}")
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", **headers}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Flaky", (_Flaky,), {"script": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)  # quick shutdown()
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


ENV503 = json.dumps({"error": {"code": "service_unavailable", "message": "down", "status": 503}}).encode()
WORKERS = json.dumps({"workers": []}).encode()


@pytest.mark.slow  # random backoff: up to ~2 s
def test_retries_idempotent_5xx_and_429(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.script = [(503, {}, ENV503), (429, {"Retry-After": "0"}, b"{}"), (200, {}, WORKERS)]
    with CueFast("cue_sk_x", base_url=url, max_retries=2) as client:
        assert client.workers.list().workers == []
    assert len(handler.seen) == 3
    handler.seen.clear()
    handler.script = [(503, {}, ENV503), (503, {}, ENV503), (503, {}, ENV503)]
    with CueFast("cue_sk_x", base_url=url, max_retries=2) as client, pytest.raises(CueAPIServerError) as err:
        client.workers.list()
    assert err.value.status_code == 503 and err.value.code == "service_unavailable" and len(handler.seen) == 3


def test_non_idempotent_post_is_not_retried_on_5xx(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.script = [(500, {}, b"not json"), (200, {}, b"{}")]
    with CueFast("cue_sk_x", base_url=url) as client, pytest.raises(CueAPIServerError) as err:
        client.executions.report_outcome("e", True)
    assert err.value.status_code == 500 and len(handler.seen) == 1
    handler.seen.clear()
    body = json.dumps({"execution_id": "e", "outcome_recorded": True}).encode()
    handler.script = [(502, {}, b""), (200, {}, body)]
    with CueFast("cue_sk_x", base_url=url, retry_non_idempotent=True) as client:
        assert client.executions.report_outcome("e", True).outcome_recorded is True
    assert len(handler.seen) == 2


async def test_connection_error(flaky: tuple[str, type[_Flaky]]) -> None:
    port = free_port()
    async with AsyncCueFast("cue_sk_x", base_url=f"http://127.0.0.1:{port}", max_retries=1) as client:
        with pytest.raises(CueAPIConnectionError) as err:
            await client.cues.list()
    assert err.value.status_code is None and err.value.code == "connection_error"


def test_paths_quote_ids(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.script = [(204, {}, b"")]
    with CueFast("cue_sk_x", base_url=url + "/") as client:
        assert client.workers.delete("box/1 ?x") is None
    assert handler.seen == [("DELETE", "/v1/workers/box%2F1%20%3Fx")]


# --- verify_webhook ----------------------------------------------------------------------

SECRET = "whsec_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
VECTOR = (
    b'{"attempt": 1, "cue_id": "cue_pbafy2oo0jo9", "execution_id": "8f83b427-f528-4a74-907f-f9f1c90c4999", '
    b'"name": "hook-a", "payload": {"n": 1, "task": "t1", "\\u00fc": "\\u00e9"}, '
    b'"scheduled_for": "2026-11-23T11:42:00+00:00"}'
)
VECTOR_SIG = "v1=873c40b7308dd2f33f99662dcb29c903aaaa5805b24e728dea96deeacef862a4"


def test_verify_webhook_contract_vector_and_forms() -> None:
    assert len(VECTOR) == 219
    assert sign(SECRET, 1795434122, VECTOR) == VECTOR_SIG
    now = str(int(time.time()))
    sig = sign(SECRET, int(now), VECTOR)
    assert verify_webhook(VECTOR, sig, SECRET, now)
    assert verify_webhook(VECTOR.decode(), sig, SECRET, now)
    assert verify_webhook(json.loads(VECTOR), sig, SECRET, now)  # parsed dict
    reencoded = json.dumps(json.loads(VECTOR), ensure_ascii=False, separators=(",", ":")).encode()
    assert verify_webhook(reencoded, sig, SECRET, now)  # re-serialised canonically, like cueapi's
    assert verify_webhook(b"", sign(SECRET, int(now), b""), SECRET, now)  # GET delivery: empty body
    assert not verify_webhook(VECTOR, sig, SECRET + "0", now)
    assert not verify_webhook(VECTOR.replace(b'"n": 1', b'"n": 2'), sig, SECRET, now)
    old = str(int(time.time()) - 301)
    assert not verify_webhook(VECTOR, sign(SECRET, int(old), VECTOR), SECRET, old)
    assert verify_webhook(VECTOR, sign(SECRET, int(old), VECTOR), SECRET, old, tolerance=400)
    assert not verify_webhook(VECTOR, "v1=zz", SECRET, now)
    assert not verify_webhook(VECTOR, sig, SECRET, "soon")
    assert not verify_webhook(12, sig, SECRET, now)  # type: ignore[arg-type]


def test_verify_webhook_matches_the_cueapi_sdk_on_odd_numbers() -> None:
    payload = {"big": 1e16, "x": 1.5e-7, "f": 2.0, "emoji": "😀", "ctl": "a\u007fb\n"}
    body = canonical_json({"payload": payload, "attempt": 1})
    now = int(time.time())
    assert verify_webhook(body, sign(SECRET, now, body), SECRET, now)
    assert verify_webhook(body, sign(SECRET, now, body), SECRET, str(now))


# --- the base install --------------------------------------------------------------------


def test_import_cuefast_and_sdk_loads_no_server_dependency() -> None:
    code = (
        "import sys, cuefast\n"
        "from cuefast import CueFast, AsyncCueFast, verify_webhook, Worker, CueAPIError\n"
        "import cuefast.client.models, cuefast.worker.app\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'redis', 'litestar', 'croniter', 'aiohttp', 'asyncpg', 'uvicorn', 'uvloop', 'cryptography'})\n"
        "server = sorted(m for m in sys.modules if m.startswith('cuefast.') and m.split('.')[1] in "
        "{'api', 'store', 'runtime', 'scheduler', 'dispatcher', 'cues', 'cron', 'pg', 'embedded',"
        " 'config', 'work'})\n"
        "print(bad, server)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[] []", out.stdout + out.stderr
    bare = subprocess.run(
        [sys.executable, "-c", "import sys, cuefast; print('httpx' in sys.modules)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert bare.stdout.strip() == "False"  # `import cuefast` alone loads nothing


def test_worker_cli_path_loads_no_server_dependency() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
    code = (
        "import sys\n"
        "from cuefast.__main__ import build_parser\n"
        "build_parser().parse_args(['worker', '--app', 'x:y'])\n"
        "import cuefast.worker.app\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'redis', 'litestar', 'croniter', 'aiohttp', 'asyncpg', 'uvicorn', 'uvloop'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


async def test_async_client_over_an_asgi_transport(api: Any) -> None:
    """A user-supplied httpx client (here: the in-process app) gets the SDK's base URL and headers."""
    from tests.conftest import Api

    assert isinstance(api, Api)
    key = await api.register()
    transport = httpx.ASGITransport(app=api.client._transport.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport) as http:
        client = AsyncCueFast(key, base_url="http://cuefast.test", http_client=http)
        cue = await client.cues.create("asgi", cron="* * * * *", transport="worker")
        assert (await client.cues.get(cue.id)).name == "asgi"
        await client.aclose()  # not ours: left open
        assert not http.is_closed
