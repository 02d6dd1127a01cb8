"""/metrics: Prometheus text format, install-wide counters over Redis, live gauges (DESIGN §8)."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cuefast import metrics as m
from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.engine.dispatcher import Dispatcher
from cuefast.engine.scheduler import Scheduler
from cuefast.runtime import Runtime
from cuefast.times import parse_datetime
from tests.conftest import Api, make_api
from tests.procs import Processes, process_env
from tests.test_dispatcher import Receiver, drain, webhook_cue
from tests.test_multiprocess import until


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


T0 = parse_datetime("2031-01-06T08:59:30Z")

# ---- a small, strict parser of the text format 0.0.4 ---------------------------------------
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(\{{.*\}})? (\S+)$")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse_labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i, n = 1, len(text) - 1  # inside the braces
    while i < n:
        mt = re.compile(_NAME).match(text, i)
        assert mt, text
        name = mt.group(0)
        i = mt.end()
        assert text[i : i + 2] == '="', text
        i += 2
        value = []
        while text[i] != '"':
            if text[i] == "\\":
                value.append({"\\": "\\", '"': '"', "n": "\n"}[text[i + 1]])
                i += 2
            else:
                value.append(text[i])
                i += 1
        out[name] = "".join(value)
        i += 1
        if i < n:
            assert text[i] == ",", text
            i += 1
    return out


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """(samples, family → type); asserts HELP/TYPE come once, before the family's samples."""
    assert text.endswith("\n")
    samples: Samples = {}
    types: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helped, name
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helped and name not in types and kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
            continue
        mt = _SAMPLE.match(line)
        assert mt, line
        name, labels, value = mt.group(1), mt.group(2), mt.group(3)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, line
        if name != family:
            assert types[family] == "histogram", line
        key = (name, frozenset(_parse_labels(labels).items()) if labels else frozenset())
        assert key not in samples, line
        samples[key] = float(value)
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def histogram(samples: Samples, name: str, **labels: str) -> tuple[list[tuple[float, float]], float, float]:
    """(cumulative buckets (le, count) in order, sum, count); checks they are consistent."""
    buckets = []
    for (n, ls), v in samples.items():
        d = dict(ls)
        le = d.pop("le", None)
        if n == f"{name}_bucket" and d == labels:
            assert le is not None
            buckets.append((float(le), v))
    buckets.sort()
    assert buckets and buckets[-1][0] == float("inf")
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets)), buckets  # cumulative
    count = value(samples, f"{name}_count", **labels)
    assert buckets[-1][1] == count
    return buckets, value(samples, f"{name}_sum", **labels), count


async def scrape(api: Api, **kw: Any) -> Samples:
    res = await api.request("GET", "/metrics", **kw)
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == m.CONTENT_TYPE
    return parse(res.text)[0]


# ---- format ------------------------------------------------------------------------------
def test_render_format_buckets_and_escaping() -> None:
    met = m.Metrics()
    met.inc(m.WORKER_CLAIMS, (), 3)
    for us in (1_000, 5_000, 5_001, 40_000_000):  # ≤ 0.005 (twice: le is inclusive), 0.01, +Inf
        met.observe_us(m.WEBHOOK_LATENCY, (), us)
    gauges = [m.Gauge("cuefast_test_gauge", "a\\b\nc", 1.5, (("x", 'q"b\\s\nn'),))]
    fields = met.take()
    met.give_back(fields)  # a failed flush keeps its counts
    assert met.take() == fields and met.take() == {}
    text = m.render(fields, gauges)
    samples, types = parse(text)
    assert types["cuefast_webhook_request_seconds"] == "histogram"
    assert types["cuefast_worker_claims_total"] == "counter" and types["cuefast_test_gauge"] == "gauge"
    assert value(samples, "cuefast_worker_claims_total") == 3
    assert value(samples, "cuefast_outcome_timeouts_total") == 0  # label-less counters start at 0
    buckets, total, count = histogram(samples, "cuefast_webhook_request_seconds")
    assert dict(buckets)[0.005] == 2 and dict(buckets)[0.01] == 3 and dict(buckets)[30.0] == 3
    assert count == 4 and total == pytest.approx(40.011001)
    assert value(samples, "cuefast_test_gauge", x='q"b\\s\nn') == 1.5
    assert "# HELP cuefast_test_gauge a\\\\b\\nc\n" in text


# ---- counters after real work --------------------------------------------------------------
@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[tuple[Api, FrozenClock, Scheduler, Dispatcher, Receiver]]:
    clock = FrozenClock(T0)
    api, rt = await make_api(settings, clock)
    receiver = Receiver()
    await receiver.start()
    dispatcher = Dispatcher(rt.store, settings, clock, rt.webhooks, metrics=rt.metrics)
    await dispatcher.start()
    try:
        yield api, clock, Scheduler(rt.store, clock, work=rt.reaper, metrics=rt.metrics), dispatcher, receiver
    finally:
        await dispatcher.close()
        assert receiver.runner is not None
        await receiver.runner.cleanup()
        await api.client.aclose()
        await rt.close()


async def test_webhook_delivery_moves_counters_and_histograms(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    await webhook_cue(api, key, receiver.url)
    clock.set(parse_datetime("2031-01-06T09:00:02.5Z"))  # 2.5 s late
    assert await sched.tick() == 1
    assert await drain(dispatcher) == ["success"]
    receiver.mode = "500"
    await webhook_cue(api, key, receiver.url, name="hook-b", retry={"max_attempts": 1})
    clock.set(parse_datetime("2031-01-06T09:01:00Z"))
    assert await sched.tick() == 2
    assert sorted(await drain(dispatcher)) == ["failed", "retrying"]
    s = await scrape(api)
    assert value(s, "cuefast_executions_created_total", trigger="scheduled") == 3
    assert value(s, "cuefast_executions_delivered_total", transport="webhook") == 1
    assert value(s, "cuefast_executions_failed_total", transport="webhook", reason="delivery") == 1
    assert value(s, "cuefast_webhook_attempts_total", status="success") == 1
    assert value(s, "cuefast_webhook_attempts_total", status="failed") == 1
    assert value(s, "cuefast_webhook_attempts_total", status="retrying") == 1
    buckets, total, count = histogram(s, "cuefast_webhook_request_seconds")
    assert count == 3 and total > 0
    buckets, total, count = histogram(s, "cuefast_execution_lateness_seconds", transport="webhook")
    assert count == 3 and total == pytest.approx(2.5)  # the 09:01 slots ran on time
    assert dict(buckets)[1.0] == 2 and dict(buckets)[2.5] == 3


async def test_fire_worker_claim_and_outcome(env: Any) -> None:
    api, clock, sched, _, _ = env
    key = await api.register()
    body = {"name": "w", "transport": "worker", "schedule": {"type": "recurring", "cron": "0 0 1 1 *"}}
    cue = (await api.request("POST", "/v1/cues", key, json=body)).json()
    eid = (await api.request("POST", f"/v1/cues/{cue['id']}/fire", key, json={})).json()["id"]
    clock.advance(4)
    res = await api.request("POST", f"/v1/executions/{eid}/claim", key, json={"worker_id": "w1"})
    assert res.status_code == 200, res.text
    res = await api.request("POST", f"/v1/executions/{eid}/outcome", key, json={"success": True})
    assert res.status_code == 200, res.text
    s = await scrape(api)
    assert value(s, "cuefast_executions_created_total", trigger="manual_fire") == 1
    assert value(s, "cuefast_worker_claims_total") == 1
    assert value(s, "cuefast_executions_delivered_total", transport="worker") == 1
    assert value(s, "cuefast_outcomes_total", success="true") == 1
    _, total, count = histogram(s, "cuefast_execution_lateness_seconds", transport="worker")
    assert count == 1 and total == pytest.approx(4.0)


async def test_worker_missed_and_lease_expiry(settings: Settings) -> None:
    clock = FrozenClock(T0)
    api, rt = await make_api(settings.replace(worker_unclaimed_seconds=60, worker_lease_seconds=30), clock)
    sched = Scheduler(rt.store, clock, work=rt.reaper, metrics=rt.metrics)
    try:
        key = await api.register()
        body = {"name": "w", "transport": "worker", "schedule": {"type": "recurring", "cron": "0 0 1 1 *"}}
        cue = (await api.request("POST", "/v1/cues", key, json=body)).json()
        fire = f"/v1/cues/{cue['id']}/fire"
        missed = (await api.request("POST", fire, key, json={})).json()["id"]
        clock.advance(30)
        leased = (await api.request("POST", fire, key, json={})).json()["id"]
        res = await api.request("POST", f"/v1/executions/{leased}/claim", key, json={"worker_id": "w1"})
        assert res.status_code == 200, res.text
        clock.advance(31)  # `missed` unclaimed for 61 s; the lease expired
        await sched.tick()
        s = await scrape(api)
        assert value(s, "cuefast_executions_failed_total", transport="worker", reason="missed") == 1
        # no heartbeat since the claim: the expired lease is re-offered (retry_ready)
        assert value(s, "cuefast_worker_lease_expiries_total", decision="reoffer") == 1
        assert (await api.request("GET", f"/v1/executions/{missed}", key)).json()["status"] == "missed"
    finally:
        await api.client.aclose()
        await rt.close()


async def test_api_latency_by_route_template(api: Api) -> None:
    key = await api.register()
    await api.request("GET", "/v1/cues", key)
    await api.request("GET", "/v1/cues/cue_000000000000", key)
    await api.request("GET", "/v1/cues/cue_111111111111", key)
    await api.request("GET", "/no/such/path")
    s = await scrape(api)
    _, _, count = histogram(s, "cuefast_http_request_seconds", method="GET", route="/v1/cues", status="2xx")
    assert count == 1
    routes = {dict(ls).get("route") for (n, ls) in s if n == "cuefast_http_request_seconds_count"}
    assert "/v1/cues/cue_000000000000" not in routes  # the template, never the raw path
    by_id = [r for r in routes if r and r.startswith("/v1/cues/{")]
    assert len(by_id) == 1, routes
    _, _, count = histogram(s, "cuefast_http_request_seconds", method="GET", route=by_id[0], status="4xx")
    assert count == 2
    _, _, count = histogram(
        s, "cuefast_http_request_seconds", method="GET", route="(unmatched)", status="4xx"
    )
    assert count == 1
    assert value(
        s, "cuefast_http_request_seconds_count", method="POST", route="/v1/auth/register", status="2xx"
    )


# ---- many processes -------------------------------------------------------------------------
async def test_counters_of_two_runtimes_add_up(env: Any, settings: Settings) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    await webhook_cue(api, key, receiver.url)
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await sched.tick()
    assert await drain(dispatcher) == ["success"]
    other = Runtime(settings, clock, roles="dispatcher")  # a second process's runtime
    await other.start()
    second = Dispatcher(other.store, settings, clock, other.webhooks, metrics=other.metrics)
    await second.start()
    try:
        clock.set(parse_datetime("2031-01-06T09:01:00Z"))
        await sched.tick()
        assert await drain(second) == ["success"]
        await other.metrics_flusher.flush()
        s = await scrape(api)
        assert value(s, "cuefast_executions_delivered_total", transport="webhook") == 2
        assert histogram(s, "cuefast_webhook_request_seconds")[2] == 2
        assert value(s, "cuefast_processes", roles="dispatcher") == 1
        assert value(s, "cuefast_processes", roles="api") == 1
    finally:
        await second.close()
        await other.close()
    s = await scrape(api)
    assert value(s, "cuefast_processes", roles="dispatcher") == 0  # left on close


@pytest.mark.slow
async def test_dispatcher_process_counts_reach_the_api(api: Api, settings: Settings, tmp_path: Path) -> None:
    """A real ``cuefast dispatcher`` process delivers; its counts appear in the API's /metrics."""
    receiver = Receiver()
    await receiver.start()
    try:
        key = await api.register()
        cue = await webhook_cue(api, key, receiver.url, schedule={"type": "recurring", "cron": "0 0 1 1 *"})
        async with Processes(tmp_path / "logs", lifetime=60) as procs:
            procs.start("dispatcher", "dispatcher", env=process_env(settings))
            res = await api.request("POST", f"/v1/cues/{cue['id']}/fire", key, json={})
            assert res.status_code == 200, res.text

            async def counted() -> Samples | None:
                s = await scrape(api)
                got = value(s, "cuefast_executions_delivered_total", transport="webhook")
                return s if got == 1 and value(s, "cuefast_processes", roles="dispatcher") == 1 else None

            s = await until(counted, 20, "the dispatcher's flushed counters")
            assert len(receiver.requests) == 1
            assert histogram(s, "cuefast_execution_lateness_seconds", transport="webhook")[2] == 1
            assert await procs.stop("dispatcher") == 0
            assert not procs.problems(), procs.problems()
        s = await scrape(api)
        assert value(s, "cuefast_processes", roles="dispatcher") == 0
        assert value(s, "cuefast_executions_delivered_total", transport="webhook") == 1
    finally:
        assert receiver.runner is not None
        await receiver.runner.cleanup()


# ---- gauges ------------------------------------------------------------------------------
async def test_backlog_gauges(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    rt = api.rt
    key = await api.register()
    receiver.mode = "500"
    cue = await webhook_cue(api, key, receiver.url, schedule={"type": "recurring", "cron": "0 0 1 1 *"})
    fire = f"/v1/cues/{cue['id']}/fire"
    await api.request("POST", fire, key, json={})
    assert await drain(dispatcher) == ["retrying"]
    for _ in range(3):
        await api.request("POST", fire, key, json={})
    later = "2031-01-07T00:00:00Z"
    await api.request("POST", fire, key, json={"send_at": later})
    await rt.store.redis.hset(rt.keys.snapshot, "last_ok_us", clock.now_us() - 7_500_000)
    clock.advance(3)
    s = await scrape(api)
    assert value(s, "cuefast_retry_backlog") == 1
    assert value(s, "cuefast_delayed_backlog") == 1
    assert value(s, "cuefast_outbox_entries") == 3
    assert value(s, "cuefast_snapshot_lag_seconds") == pytest.approx(10.5)
    assert value(s, "cuefast_webhook_attempts_in_flight") == 0
    assert value(s, "cuefast_cues_overdue") == 0
    assert ("cuefast_scheduler_heartbeat_age_seconds", frozenset()) not in s  # no scheduler yet
    assert await drain(dispatcher) == ["retrying"] * 3
    assert value(await scrape(api), "cuefast_outbox_entries") == 0


# ---- access --------------------------------------------------------------------------------
async def test_metrics_is_exempt_from_rate_limiting(settings: Settings) -> None:
    api, rt = await make_api(settings.replace(ip_rate_limit=2))
    try:
        for _ in range(6):
            res = await api.request("GET", "/metrics")
            assert res.status_code == 200 and "x-ratelimit-limit" not in res.headers
        codes = [(await api.request("GET", "/v1/cues")).status_code for _ in range(3)]
        assert codes[-1] == 429  # the limit is live for other paths
    finally:
        await api.client.aclose()
        await rt.close()


async def test_metrics_token(settings: Settings) -> None:
    api, rt = await make_api(settings.replace(metrics_token="s3cret"))
    try:
        res = await api.request("GET", "/metrics")
        assert res.status_code == 401 and res.json()["error"]["code"] == "invalid_api_key"
        assert (await api.request("GET", "/metrics", "wrong")).status_code == 401
        await scrape(api, key="s3cret")
    finally:
        await api.client.aclose()
        await rt.close()


# ---- cost ----------------------------------------------------------------------------------
async def test_hook_cost_is_negligible(env: Any) -> None:
    """Reported, not asserted: the hooks of one delivery vs the delivery itself."""
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    await webhook_cue(api, key, receiver.url)
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await sched.tick()
    t0 = time.perf_counter()
    assert await drain(dispatcher) == ["success"]
    delivery = time.perf_counter() - t0
    met = m.Metrics()
    n = 100_000
    t0 = time.perf_counter()
    for i in range(n):  # what one webhook delivery adds: 2 observations + 2 increments
        met.observe_us(m.LATENESS, ("webhook",), i)
        met.observe_us(m.WEBHOOK_LATENCY, (), i)
        met.inc(m.WEBHOOK_ATTEMPTS, ("success",))
        met.inc(m.EXECUTIONS_DELIVERED, ("webhook",))
    per = (time.perf_counter() - t0) / n
    print(
        f"\nmetrics hooks per delivery: {per * 1e6:.2f} µs; one delivery (drain, 127.0.0.1): "
        f"{delivery * 1e3:.2f} ms; ratio {per / delivery:.4%}"
    )
    assert met.take()[f"{m.WEBHOOK_ATTEMPTS.name}\tsuccess"] == n
