"""The worker daemon end to end: the real server over HTTP, the real daemon (in-process
``Worker.serve`` and a real ``cuefast worker`` process), real handlers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cuefast import AsyncCueFast, Context, CueAPIConnectionError, CueFast, Outcome, Worker
from cuefast.client.errors import CueAPIServerError
from cuefast.client.models import Execution
from cuefast.config import Settings
from cuefast.worker.app import load_app
from cuefast.worker.daemon import WorkerStopped
from cuefast.worker.handlers import outcome_report
from cuefast.worker.outcomes import Outbox
from cuefast.worker.retry import maybe_processed
from tests.conftest import wait_for
from tests.test_client import ROOT, LiveServer, free_port


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(live: LiveServer) -> AsyncIterator[AsyncCueFast]:
    async with AsyncCueFast(live.register(), base_url=live.url) as c:
        yield c


async def finished(client: AsyncCueFast, ids: list[str]) -> dict[str, Execution] | None:
    out = {i: await client.executions.get(i) for i in ids}
    return out if all(e.outcome is not None for e in out.values()) else None


class Running:
    """A Worker serving in the test's loop (stopped and awaited on exit)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Worker:
        self.task = asyncio.create_task(self.worker.serve())
        await wait_for(lambda: self.worker._loop is not None, what="worker start")
        return self.worker

    async def __aexit__(self, *exc: object) -> None:
        self.worker.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)


async def _worker_cue(client: AsyncCueFast, task: str, name: str | None = None, **kw: Any) -> str:
    cue = await client.cues.create(
        name or task, cron="0 0 1 1 *", transport="worker", payload={"task": task}, **kw
    )
    return cue.id


@pytest.mark.slow
async def test_handlers_and_outcomes(client: AsyncCueFast, live: LiveServer) -> None:
    key = client._core.headers["Authorization"][7:]
    worker = Worker(api_key=key, base_url=live.url, worker_id="box-1", concurrency=4, wait_seconds=1)
    seen: dict[str, Context] = {}

    @worker.handler("async-dict")
    async def async_dict(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
        seen[ctx.execution_id] = ctx
        return {
            "result": f"n={payload['n']}",
            "external_id": "ext-" + ctx.execution_id[:8],
            "result_url": "https://example.com/r",
            "artifacts": [{"k": 1}],
            "summary": "did it",
            "metadata": {"by": ctx.worker_id},
        }

    @worker.handler("sync-value")
    def sync_value(payload: dict[str, Any], ctx: Context) -> Any:
        assert threading.current_thread() is not threading.main_thread()
        return {"rows": payload["n"], "ok": True}  # not outcome fields → JSON result

    @worker.handler("sync-raises")
    def sync_raises(payload: dict[str, Any], ctx: Context) -> None:
        raise RuntimeError("disk full")

    @worker.handler("async-raises")
    async def async_raises(payload: dict[str, Any]) -> None:  # one-argument handler
        raise ValueError("bad input")

    @worker.handler("explicit")
    async def explicit(payload: dict[str, Any], ctx: Context) -> Outcome:
        return Outcome(success=False, error="declined", summary="policy")

    cues = {t: await _worker_cue(client, t) for t in worker.handlers}
    other = await _worker_cue(client, "nobody-handles-this")
    fired = {t: (await client.cues.fire(c, payload_override={"n": 7})).id for t, c in cues.items()}
    stray = (await client.cues.fire(other)).id
    async with Running(worker):
        done = await wait_for(lambda: finished(client, list(fired.values())), what="all outcomes")

    a = done[fired["async-dict"]]
    assert a.status == "success" and a.outcome is not None and a.outcome.success
    assert a.outcome.result == "n=7" and a.outcome.external_id == "ext-" + a.id[:8]
    assert a.outcome.result_url == "https://example.com/r" and a.outcome.artifacts == [{"k": 1}]
    assert a.outcome.summary == "did it" and a.outcome.metadata == {"by": "box-1"}
    ctx = seen[a.id]
    assert ctx.cue_id == cues["async-dict"] and ctx.cue_name == "async-dict" and ctx.task == "async-dict"
    assert (
        ctx.attempt == 1 and ctx.scheduled_for is not None and ctx.payload == {"task": "async-dict", "n": 7}
    )

    s = done[fired["sync-value"]]
    assert s.status == "success" and s.outcome is not None and s.outcome.result == '{"rows":7,"ok":true}'
    f = done[fired["sync-raises"]]
    assert f.status == "failed" and f.outcome is not None and f.outcome.success is False
    assert f.outcome.error == "disk full" and f.outcome.metadata == {"exception": "RuntimeError"}
    assert f.error_message == "disk full"
    g = done[fired["async-raises"]]
    assert g.status == "failed" and g.outcome is not None and g.outcome.error == "bad input"
    e = done[fired["explicit"]]
    assert e.status == "failed" and e.outcome is not None and e.outcome.error == "declined"
    assert e.outcome.summary == "policy"
    untouched = await client.executions.get(stray)  # no handler: never claimed
    assert untouched.status == "pending" and untouched.attempts == 0
    workers = (await client.workers.list()).workers
    assert [(w.worker_id, sorted(w.handlers or [])) for w in workers] == [("box-1", sorted(worker.handlers))]
    assert worker.stats.succeeded == 2 and worker.stats.failed == 3 and worker.stats.reported == 5


@pytest.mark.slow
async def test_concurrency_bound(client: AsyncCueFast, live: LiveServer) -> None:
    key = client._core.headers["Authorization"][7:]
    worker = Worker(api_key=key, base_url=live.url, worker_id="w", concurrency=3, prefetch=2, wait_seconds=1)
    now = peak = 0
    release = asyncio.Event()

    @worker.handler("t")
    async def handler(payload: dict[str, Any], ctx: Context) -> None:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        try:
            await release.wait()
        finally:
            now -= 1

    cue = await _worker_cue(client, "t")
    ids = [(await client.cues.fire(cue, payload_override={"i": i})).id for i in range(12)]
    async with Running(worker):
        await wait_for(lambda: now == 3, what="three handlers running")
        delivering = await client.executions.list(status="delivering")
        assert delivering.total == 5  # 3 running + 2 prefetched, no more claimed
        assert all(x.claimed_by_worker == "w" for x in delivering.executions)
        release.set()
        await wait_for(lambda: finished(client, ids), what="all outcomes")
    assert peak == 3


@pytest.mark.slow
async def test_claims_and_outcomes_are_batched(client: AsyncCueFast, live: LiveServer) -> None:
    key = client._core.headers["Authorization"][7:]
    worker = Worker(api_key=key, base_url=live.url, worker_id="w", concurrency=100, wait_seconds=1)
    gate = asyncio.Event()

    @worker.handler("t")
    async def handler(payload: dict[str, Any], ctx: Context) -> int:
        await gate.wait()
        return int(payload["i"])

    cue = await _worker_cue(client, "t")
    ids = [(await client.cues.fire(cue, payload_override={"i": i})).id for i in range(60)]
    async with Running(worker):
        await wait_for(lambda: len(worker._runner.running) == 60, what="all 60 running")
        gate.set()
        done = await wait_for(lambda: finished(client, ids), what="all outcomes")
        await wait_for(lambda: worker.stats.reported == 60, what="all reported")
    assert sorted(int(e.outcome.result) for e in done.values() if e.outcome and e.outcome.result) == list(
        range(60)
    )
    assert worker.stats.outcome_calls <= 3, worker.stats  # 60 outcomes in one or a few calls
    assert worker.stats.claim_calls <= 10, worker.stats


@pytest.mark.slow
async def test_orphan_sweep_releases_claims_whose_answer_was_lost(
    client: AsyncCueFast, live: LiveServer
) -> None:
    key = client._core.headers["Authorization"][7:]
    worker = Worker(api_key=key, base_url=live.url, wait_seconds=1, environ={})  # default per-process id
    assert worker.sweep_orphans is True
    assert Worker(worker_id="shared", environ={}).sweep_orphans is False
    gate = asyncio.Event()

    @worker.handler("t")
    async def handler(payload: dict[str, Any], ctx: Context) -> None:
        await gate.wait()

    mine = (await client.cues.fire(await _worker_cue(client, "t"))).id
    lost = (await client.cues.fire(await _worker_cue(client, "orphan"))).id
    async with Running(worker):
        await wait_for(lambda: mine in worker._runner.running, what="handler running")
        # a claim made under this worker's id whose answer never reached it
        got = await client.worker.claim(worker.worker_id, tasks=["orphan"], max=1)
        assert [e.execution_id for e in got.executions] == [lost]
        await worker._leases.sweep_orphans()
        assert worker.stats.released == 1
        assert (await client.executions.get(mine)).status == "delivering"  # held: kept
        gate.set()
    claimable = await client.executions.list_claimable(task="orphan")
    assert [e.execution_id for e in claimable.executions] == [lost]
    assert (await client.executions.get(mine)).status == "success"


@pytest.mark.slow
async def test_lease_heartbeats_keep_a_long_handler(settings: Settings) -> None:
    """Lease 2 s, worker 'alive' only 1 s after a registry heartbeat, the real scheduler
    reaping leases: only the daemon's lease extensions keep a 5-second handler's claim."""
    server = LiveServer(settings.replace(worker_alive_seconds=1), scheduler=True).start()
    try:
        key = server.register()
        async with AsyncCueFast(key, base_url=server.url) as client:
            cue = await _worker_cue(client, "long")
            # the control: a claim whose lease nobody extends is reaped after 2 s
            batch_client_cue = await _worker_cue(client, "ctl", name="ctl")
            ctl = (await client.cues.fire(batch_client_cue)).id
            got = await client.worker.claim("nobody", tasks=["ctl"], max=1, lease_seconds=2)
            assert [e.execution_id for e in got.executions] == [ctl]
            await wait_for(
                lambda: _status_is(client, ctl, "retry_ready"), timeout=15, what="control lease reaped"
            )

            worker = Worker(
                api_key=key, base_url=server.url, worker_id="long-1", lease_seconds=2, heartbeat_interval=3600
            )
            leases: list[Any] = []

            @worker.handler("long")
            async def long(payload: dict[str, Any], ctx: Context) -> str:
                for _ in range(10):  # the work takes 5 s
                    leases.append(ctx.lease_expires_at)
                    await asyncio.sleep(0.5)
                return "lease kept" if not ctx.lease_lost else "lease lost"

            ex = (await client.cues.fire(cue, payload_override={"n": 1})).id
            async with Running(worker):
                done = await wait_for(lambda: finished(client, [ex]), timeout=30, what="long outcome")
            e = done[ex]
            assert e.status == "success" and e.attempts == 1 and e.outcome is not None
            assert e.outcome.result == "lease kept"
            stamps = [x for x in leases if x is not None]
            assert stamps[-1] > stamps[0]  # extended while the handler ran
            assert (stamps[-1] - stamps[0]).total_seconds() >= 2
    finally:
        server.stop()


async def _status_is(client: AsyncCueFast, execution_id: str, status: str) -> bool:
    return (await client.executions.get(execution_id)).status == status


APP = """
import time
from pathlib import Path

from cuefast import Worker

worker = Worker(worker_id="proc-1", wait_seconds=1)
MARKS = Path({marks!r})


@worker.handler("slow")
def slow(payload, ctx):
    (MARKS / ("started-" + ctx.execution_id)).write_text("x")
    time.sleep(float(payload.get("seconds", 2)))   # the work itself
    return {{"result": "finished", "summary": "slept"}}


@worker.handler("quick")
async def quick(payload, ctx):
    return "quick " + ctx.execution_id
"""


def _worker_env(live: LiveServer, key: str, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
    env.update(
        CUEFAST_API_KEY=key,
        CUEFAST_BASE_URL=live.url,
        PYTHONPATH=os.pathsep.join([str(tmp), str(ROOT)]),
        **extra,
    )
    return env


def _write_app(tmp: Path) -> None:
    marks = tmp / "marks"
    marks.mkdir()
    (tmp / "cf_test_app.py").write_text(textwrap.dedent(APP.format(marks=str(marks))))


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_sigterm_finishes_running_and_releases_unstarted(
    client: AsyncCueFast, live: LiveServer, tmp_path: Path
) -> None:
    key = client._core.headers["Authorization"][7:]
    _write_app(tmp_path)
    cue = await _worker_cue(client, "slow")
    ids = [(await client.cues.fire(cue, payload_override={"i": i, "seconds": 2})).id for i in range(4)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cuefast", "worker", "--app", "cf_test_app:worker", "--concurrency", "1"],
        env=_worker_env(live, key, tmp_path, CUEFAST_WORKER_PREFETCH="3", CUEFAST_WORKER_GRACE_SECONDS="20"),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = await wait_for(
            lambda: list((tmp_path / "marks").glob("started-*")), what="a running handler"
        )
        await wait_for(lambda: _count(client, "delivering", 4), what="1 running + 3 prefetched claims")
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    running = started[0].name.removeprefix("started-")
    assert len(started) == 1  # nothing else started after the signal
    done = await client.executions.get(running)
    assert done.status == "success" and done.outcome is not None and done.outcome.result == "finished"
    assert done.outcome.summary == "slept"
    rest = [i for i in ids if i != running]
    claimable = await client.executions.list_claimable(task="slow")
    assert sorted(x.execution_id for x in claimable.executions) == sorted(rest)
    for i in rest:
        e = await client.executions.get(i)
        assert e.claimed_by_worker is None and e.outcome is None
    assert "released 3 executions" in err


async def _count(client: AsyncCueFast, status: str, n: int) -> bool:
    return (await client.executions.list(status=status)).total == n


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_reconnects_when_the_server_comes_back(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    first = LiveServer(settings, port).start()
    key = first.register()
    _write_app(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cuefast", "worker", "--app", "cf_test_app:worker", "--log-level", "INFO"],
        env=_worker_env(first, key, tmp_path),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    second: LiveServer | None = None
    try:
        with CueFast(key, base_url=first.url) as client:
            cue = client.cues.create(
                "quick", cron="0 0 1 1 *", transport="worker", payload={"task": "quick"}
            ).id
            one = client.cues.fire(cue).id
            await wait_for(lambda: client.executions.get(one).outcome is not None, what="first outcome")
        first.stop()  # the server goes away while the worker long-polls
        with pytest.raises(CueAPIConnectionError):
            CueFast(key, base_url=first.url, max_retries=0).cues.list()
        await asyncio.sleep(1.5)  # the worker is now failing (and backing off) for a while
        second = LiveServer(settings, port).start()
        with CueFast(key, base_url=second.url) as client:
            two = client.cues.fire(cue).id
            done = await wait_for(
                lambda: client.executions.get(two).outcome, timeout=30, what="outcome after reconnect"
            )
        assert done.success and done.result == "quick " + two
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=30)
        if second is not None:
            second.stop()
    assert proc.returncode == 0, err
    assert "failed" in err and "works again" in err


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_outcome_finished_while_the_server_is_away_is_reported_when_it_is_back(
    settings: Settings,
) -> None:
    """The handler finishes while the server is down: the outcome report fails (connection
    refused), is retried with backoff, and is recorded once the server is back. (The retry
    test of the report loop raised TypeError — ``tuple | type`` — and the loop died silently:
    no outcome was ever reported again while the daemon kept claiming work.)"""
    port = free_port()
    first = LiveServer(settings, port).start()
    key = first.register()
    worker = Worker(api_key=key, base_url=first.url, worker_id="away-1", wait_seconds=1, max_backoff=0.5)
    started, gate = asyncio.Event(), asyncio.Event()

    @worker.handler("gated")
    async def gated(payload: dict[str, Any], ctx: Context) -> str:
        started.set()
        await gate.wait()
        return "finished while the server was away"

    async with AsyncCueFast(key, base_url=first.url) as c:
        eid = (await c.cues.fire(await _worker_cue(c, "gated"))).id
    second: LiveServer | None = None
    try:
        async with Running(worker):
            await wait_for(started.is_set, what="the handler running")
            first.stop()
            gate.set()
            await wait_for(lambda: worker.stats.outcome_calls >= 2, what="reports tried while away")
            second = LiveServer(settings, port).start()
            async with AsyncCueFast(key, base_url=second.url) as c:

                async def recorded() -> Any:
                    return (await c.executions.get(eid)).outcome

                outcome = await wait_for(recorded, timeout=30, what="the outcome recorded")
            assert outcome.success and outcome.result == "finished while the server was away"
    finally:
        if second is not None:
            second.stop()


def test_only_a_claim_that_may_have_reached_the_server_asks_for_an_orphan_sweep() -> None:
    """A refused connection never reached the server: no claim can have been made."""
    refused = CueAPIConnectionError("ConnectError: refused", None, "connection_error")
    refused.__cause__ = httpx.ConnectError("refused")
    lost = CueAPIConnectionError("ReadError: reset", None, "connection_error")
    lost.__cause__ = httpx.ReadError("reset")
    assert maybe_processed(refused) is False
    assert maybe_processed(lost) is True
    assert maybe_processed(CueAPIServerError("unavailable", 503, "service_unavailable")) is True


@pytest.mark.slow
async def test_a_loop_that_dies_stops_the_worker_with_an_error(
    client: AsyncCueFast, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error in one of the daemon's loops ends ``serve`` with ``WorkerStopped``
    (exit code 1) instead of leaving the daemon claiming work it can never report."""
    key = client._core.headers["Authorization"][7:]
    worker = Worker(api_key=key, base_url=live.url, worker_id="broken-1", wait_seconds=1)
    worker.add_handler("t", lambda payload, ctx: "ok")

    async def broken(outbox: Outbox, batch: Any) -> None:
        raise RuntimeError("a bug in the report loop")

    monkeypatch.setattr(Outbox, "send", broken)
    await client.cues.fire(await _worker_cue(client, "t"))
    with pytest.raises(WorkerStopped, match="a bug in the report loop"):
        await asyncio.wait_for(worker.serve(), 30)


async def test_invalid_key_stops_the_worker(live: LiveServer) -> None:
    worker = Worker(api_key="cue_sk_" + "0" * 32, base_url=live.url, wait_seconds=0)
    worker.add_handler("t", lambda payload, ctx: None)
    with pytest.raises(WorkerStopped, match="Invalid API key"):
        await asyncio.wait_for(worker.serve(), 20)


def test_config_from_env_code_and_flags(tmp_path: Path) -> None:
    env = {
        "CUEFAST_API_KEY": "cue_sk_env",
        "CUEFAST_BASE_URL": "http://127.0.0.1:1",
        "CUEFAST_WORKER_ID": "env-box",
        "CUEFAST_WORKER_CONCURRENCY": "5",
        "CUEFAST_WORKER_GRACE_SECONDS": "7.5",
    }
    w = Worker(environ=env)
    assert (w.api_key, w.base_url, w.worker_id, w.concurrency, w.grace_seconds) == (
        "cue_sk_env",
        "http://127.0.0.1:1",
        "env-box",
        5,
        7.5,
    )
    code = Worker(api_key="cue_sk_code", concurrency=2, environ=env)
    assert code.api_key == "cue_sk_code" and code.concurrency == 2 and code.worker_id == "env-box"
    code.configure(concurrency=9, worker_id=None)
    assert code.concurrency == 9 and code.worker_id == "env-box"
    with pytest.raises(TypeError):
        code.configure(bogus=1)
    with pytest.raises(ValueError, match="no handlers"):
        code._validate()
    for i in range(101):  # more tasks than the server accepts in a claim or a heartbeat
        code.handler(f"task-{i}")(lambda: None)
    with pytest.raises(ValueError, match="at most 100 tasks"):
        code._validate()
    assert Worker(environ={}).worker_id.endswith(f"-{os.getpid()}")
    with pytest.raises(ValueError, match="not a number"):
        Worker(environ={"CUEFAST_WORKER_CONCURRENCY": "many"})

    (tmp_path / "cf_cfg_app.py").write_text(
        "from cuefast import Worker\nworker = Worker(api_key='k')\n"
        "def make():\n    return worker\nnot_a_worker = 3\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        assert load_app("cf_cfg_app:worker") is load_app("cf_cfg_app:make")
        assert isinstance(load_app("cf_cfg_app"), Worker)
        with pytest.raises(ValueError):
            load_app("cf_cfg_app:not_a_worker")
    finally:
        sys.path.remove(str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "cuefast", "worker"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")},
    )
    assert out.returncode == 2 and "--app" in out.stderr


def test_return_values_to_outcomes() -> None:
    assert outcome_report("e", None).result is None
    assert outcome_report("e", "s").result == "s"
    assert outcome_report("e", 3).result == "3"
    assert outcome_report("e", [1, "a"]).result == '[1,"a"]'
    assert outcome_report("e", {"x": 1}).result == '{"x":1}'
    r = outcome_report("e", {"success": False, "error": "no", "result": {"a": 1}})
    assert (r.success, r.error, r.result) == (False, "no", '{"a":1}')
    assert outcome_report("e", {}).result == "{}"
    assert outcome_report("e", Outcome(external_id="x")).external_id == "x"
