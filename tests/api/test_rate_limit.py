"""Rate limiting (CONTRACT.md §3.7) against real Redis with a frozen clock."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from cuefast.api import create_app
from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.ids import key_sha
from cuefast.months import month_of
from cuefast.runtime import Runtime
from cuefast.services.usage import count_executions
from tests.conftest import Api, assert_error, make_api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


T0 = 1_795_434_122_250_000  # 2026-11-23T11:42:02.25Z: not on a whole second, so rounding shows


@pytest.fixture
async def rl(settings: Settings) -> AsyncIterator[tuple[Api, FrozenClock]]:
    clock = FrozenClock(T0)
    api, rt = await make_api(settings.replace(ip_rate_limit=3), clock)
    try:
        yield api, clock
    finally:
        await api.client.aclose()
        await rt.close()


async def account_id(api: Api, key: str) -> str:
    res = await api.rt.store.accounts.authenticate(key_sha(key), count=False, now_us=0)
    assert res.account is not None
    return res.account.id


async def keyed(api: Api, limit: int) -> str:
    key = await api.register()
    await api.rt.store.accounts.set_fields(await account_id(api, key), {"rate_limit": limit})
    return key


def limits(res: httpx.Response) -> tuple[int, int, int]:
    h = res.headers
    return int(h["x-ratelimit-limit"]), int(h["x-ratelimit-remaining"]), int(h["x-ratelimit-reset"])


def reset_of(oldest_us: int) -> int:
    return math.ceil((oldest_us + 60_000_000) / 1_000_000)


def assert_429(res: httpx.Response, limit: int, retry: int, reset: int) -> None:
    assert_error(res, 429, "rate_limit_exceeded", f"Too many requests. Retry after {retry} seconds.")
    assert res.headers["retry-after"] == str(retry)
    assert limits(res) == (limit, 0, reset)


async def test_window_edges(rl: tuple[Api, FrozenClock]) -> None:
    api, clock = rl
    key = await keyed(api, 3)
    clock.set(T0)
    res = await api.request("GET", "/v1/cues", key)
    assert res.status_code == 200 and limits(res) == (3, 2, reset_of(T0))
    clock.set(T0 + 1_000_000)
    assert limits(await api.request("GET", "/v1/cues", key)) == (3, 1, reset_of(T0))
    clock.set(T0 + 2_000_000)
    assert limits(await api.request("GET", "/v1/cues", key)) == (3, 0, reset_of(T0))
    # over the limit: rejected, and rejections are not counted
    clock.set(T0 + 30_000_000)
    assert_429(await api.request("GET", "/v1/cues", key), 3, 30, reset_of(T0))
    clock.set(T0 + 59_999_000)  # the first request is still in the window
    for _ in range(3):
        assert_429(await api.request("GET", "/v1/cues", key), 3, 1, reset_of(T0))
    clock.set(T0 + 60_000_000)  # …and now it has left it
    res = await api.request("GET", "/v1/cues", key)
    assert res.status_code == 200 and limits(res) == (3, 0, reset_of(T0 + 1_000_000))
    assert_429(await api.request("GET", "/v1/cues", key), 3, 1, reset_of(T0 + 1_000_000))
    clock.set(T0 + 62_500_000)  # two gone (t+1, t+2): room for two
    assert limits(await api.request("GET", "/v1/cues", key)) == (3, 1, reset_of(T0 + 60_000_000))
    assert limits(await api.request("GET", "/v1/cues", key)) == (3, 0, reset_of(T0 + 60_000_000))
    # the stored window never holds more than the limit, and expires when idle
    r = api.rt.store.redis
    wkey = api.rt.keys.key_window(api.rt.keys.key_shard(key_sha(key)), key_sha(key))
    assert await r.llen(wkey) == 3
    assert 0 < await r.pttl(wkey) <= 61_000


async def test_retry_after_is_at_least_one_and_an_integer(rl: tuple[Api, FrozenClock]) -> None:
    api, clock = rl
    key = await keyed(api, 1)
    await api.request("GET", "/v1/cues", key)
    clock.set(T0 + 59_999_999)
    res = await api.request("GET", "/v1/cues", key)
    assert_429(res, 1, 1, reset_of(T0))
    assert res.headers["retry-after"].isdigit()
    clock.set(T0 + 500_000)  # 59.5 s left → 60
    assert_429(await api.request("GET", "/v1/cues", key), 1, 60, reset_of(T0))


async def test_limit_zero_rejects_everything(rl: tuple[Api, FrozenClock]) -> None:
    api, _ = rl
    key = await keyed(api, 0)
    assert_429(await api.request("GET", "/v1/cues", key), 0, 60, reset_of(T0))


async def test_account_limit_applies_from_the_first_request(settings: Settings) -> None:
    api, rt = await make_api(settings.replace(default_rate_limit_per_minute=2), FrozenClock(T0))
    try:
        key = await api.register()
        assert limits(await api.request("GET", "/v1/auth/me", key))[:2] == (2, 1)
        assert (await api.request("GET", "/v1/auth/me", key)).status_code == 200
        assert_429(await api.request("GET", "/v1/auth/me", key), 2, 60, reset_of(T0))
    finally:
        await api.client.aclose()
        await rt.close()


async def test_changed_limit_applies_at_once(rl: tuple[Api, FrozenClock]) -> None:
    api, _ = rl
    key = await keyed(api, 5)
    acct = await account_id(api, key)
    for _ in range(3):
        assert (await api.request("GET", "/v1/cues", key)).status_code == 200
    await api.rt.store.accounts.set_fields(acct, {"rate_limit": 2})
    assert_429(await api.request("GET", "/v1/cues", key), 2, 60, reset_of(T0))
    await api.rt.store.accounts.set_fields(acct, {"rate_limit": 10})
    assert limits(await api.request("GET", "/v1/cues", key))[:2] == (10, 6)


async def test_keys_and_ips_have_their_own_windows(rl: tuple[Api, FrozenClock]) -> None:
    api, _ = rl
    # registrations count against the IP (limit 3): two of them, then two more requests
    a, b = await keyed(api, 1), await keyed(api, 1)
    assert (await api.request("GET", "/v1/cues", a)).status_code == 200
    assert (await api.request("GET", "/v1/cues", a)).status_code == 429
    assert (await api.request("GET", "/v1/cues", b)).status_code == 200  # b is not a
    res = await api.client.get("/v1/nope")  # no key: the IP window (3rd request of this IP)
    assert res.status_code == 404 and limits(res)[:2] == (3, 0)
    assert (await api.client.get("/v1/nope")).status_code == 429
    # keys are unaffected by their IP's window
    assert (await api.request("GET", "/v1/cues", await keyed_from(api, "10.1.1.1"))).status_code == 200
    # another IP has its own window
    other = await client_from(api, "10.9.9.9")
    try:
        res = await other.get("/v1/nope")
        assert res.status_code == 404 and limits(res)[:2] == (3, 2)
    finally:
        await other.aclose()


async def client_from(api: Api, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(api.rt, manage_runtime=False), client=(ip, 4321))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://cuefast.test")


async def keyed_from(api: Api, ip: str) -> str:
    """A key registered from another IP (this IP's window is spent)."""
    other = await client_from(api, ip)
    try:
        res = await other.post("/v1/auth/register", json={"email": f"u-{uuid.uuid4().hex[:8]}@example.com"})
        assert res.status_code == 201
        key: str = res.json()["api_key"]
        return key
    finally:
        await other.aclose()


@pytest.mark.parametrize(
    "authorization",
    ["Bearer cue_sk_" + "0" * 32, "Bearer some.session.jwt", "Basic abc", None],
)
async def test_requests_without_a_valid_key_count_per_ip(
    rl: tuple[Api, FrozenClock], authorization: str | None
) -> None:
    api, _ = rl
    headers = {} if authorization is None else {"Authorization": authorization}
    for remaining in (2, 1, 0):
        res = await api.client.get("/v1/cues", headers=headers)
        assert res.status_code == 401 and limits(res) == (3, remaining, reset_of(T0))
    assert_429(await api.client.get("/v1/cues", headers=headers), 3, 60, reset_of(T0))
    ip_window = api.rt.keys.ip_window("127.0.0.1")
    assert await api.rt.store.redis.llen(ip_window) == 3


async def test_rotated_key_counts_per_ip(rl: tuple[Api, FrozenClock]) -> None:
    api, _ = rl
    key = await keyed(api, 100)
    res = await api.request("POST", "/v1/auth/key/regenerate", key, headers={"X-Confirm-Destructive": "true"})
    assert res.status_code == 200 and limits(res)[0] == 100
    res = await api.request("GET", "/v1/cues", key)
    assert_error(res, 401, "key_rotated")
    assert limits(res) == (3, 1, reset_of(T0))  # register + this one on the IP window


@pytest.mark.parametrize(
    "path", ["/health", "/status", "/v1/info", "/docs", "/docs/openapi.json", "/health/", "/v1/auth/verify"]
)
async def test_exempt_paths(rl: tuple[Api, FrozenClock], path: str) -> None:
    api, _ = rl
    key = await keyed(api, 1)
    for _ in range(5):
        for headers in ({}, {"Authorization": f"Bearer {key}"}):
            res = await api.client.get(path, headers=headers)
            assert res.status_code != 429 and "x-ratelimit-limit" not in res.headers, res.text
    assert (await api.request("GET", "/v1/cues", key)).status_code == 200  # nothing was counted


async def test_error_responses_that_were_counted_carry_the_headers(rl: tuple[Api, FrozenClock]) -> None:
    api, _ = rl
    key = await keyed(api, 10)
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", "/v1/cues/cue_nope00000000", {}, 404),
        ("POST", "/v1/cues", {"json": {"name": 1}}, 422),
        ("POST", "/v1/cues", {"content": b"{bad"}, 400),
        ("GET", "/v1/no-such-route", {}, 404),
        ("PUT", "/v1/cues", {}, 405),
        ("POST", "/v1/auth/key/regenerate", {}, 400),
    ]
    for n, (method, path, kw, status) in enumerate(cases, 1):
        res = await api.request(method, path, key, **kw)
        assert res.status_code == status, res.text
        assert limits(res) == (10, 10 - n, reset_of(T0))


async def test_429_has_cors_and_request_id(rl: tuple[Api, FrozenClock]) -> None:
    api, _ = rl
    key = await keyed(api, 0)
    res = await api.request("GET", "/v1/cues", key, headers={"Origin": "https://app.example"})
    assert_429(res, 0, 60, reset_of(T0))
    assert res.headers["access-control-allow-origin"] == "https://app.example"
    assert "Retry-After" in res.headers["access-control-expose-headers"]


async def test_usage_warning_at_80_percent(rl: tuple[Api, FrozenClock]) -> None:
    api, clock = rl
    key = await keyed(api, 1000)
    acct = await account_id(api, key)
    await api.rt.store.accounts.set_fields(acct, {"exec_limit": 10})
    month = month_of(T0)
    await count_executions(api.rt.store, {(acct, month): 7})
    assert "x-cueapi-usage-warning" not in (await api.request("GET", "/v1/cues", key)).headers
    await count_executions(api.rt.store, {(acct, month): 1})
    res = await api.request("GET", "/v1/cues", key)
    assert res.headers["x-cueapi-usage-warning"] == "approaching_limit"
    assert (await api.request("GET", "/v1/auth/me", key)).json()["executions_this_month"] == 8
    res = await api.request("GET", "/v1/cues/cue_nope00000000", key)  # errors too
    assert res.headers["x-cueapi-usage-warning"] == "approaching_limit"
    await api.rt.store.accounts.set_fields(acct, {"exec_limit": 11})  # 8 < 8.8: a raised limit
    assert "x-cueapi-usage-warning" not in (await api.request("GET", "/v1/cues", key)).headers
    await api.rt.store.accounts.set_fields(acct, {"exec_limit": 10})
    clock.set(T0 + 8 * 86_400_000_000)  # December: a new month starts at 0
    assert "x-cueapi-usage-warning" not in (await api.request("GET", "/v1/cues", key)).headers
    # the mirror in the account hash keeps the current month only
    await count_executions(api.rt.store, {(acct, month_of(clock.now_us())): 9})
    fields = await api.rt.store.redis.hgetall(api.rt.keys.account(acct))
    assert fields.get("ex:2026-12") == "9" and "ex:2026-11" not in fields
    res = await api.request("GET", "/v1/cues", key)
    assert res.headers["x-cueapi-usage-warning"] == "approaching_limit"
    # never on responses to requests without an API key
    assert "x-cueapi-usage-warning" not in (await api.client.get("/v1/nope")).headers


@pytest.mark.slow
async def test_the_window_is_trimmed_exactly(rl: tuple[Api, FrozenClock]) -> None:
    """Many expired entries at once (galloping + bisection in accounts_authenticate.lua), every cut
    position."""
    api, _ = rl
    store = api.rt.store
    n = 300
    for expired in (0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 150, 298, 299, 300):
        ip = f"10.0.{expired}.1"
        for i in range(n):
            res = await store.accounts.authenticate("", ip=ip, ip_limit=n, count=True, now_us=T0 + i * 1_000)
            assert res.window is not None and res.window.counted
        # at now, entries with time <= now - 60 s are out: the first `expired` ones
        now = T0 + 60_000_000 + (expired - 1) * 1_000
        res = await store.accounts.authenticate("", ip=ip, ip_limit=n, count=True, now_us=now)
        assert res.window is not None
        assert res.window.counted == (expired > 0)
        kept = n - expired
        assert res.window.requests == (kept + 1 if expired else n)
        oldest = T0 + expired * 1_000 if kept else now
        assert res.window.oldest_us == oldest, expired


async def test_window_stays_sorted_when_clocks_differ(rl: tuple[Api, FrozenClock]) -> None:
    api, _ = rl
    store = api.rt.store
    for t in (T0, T0 + 5_000_000, T0 + 4_000_000):  # the third API process runs 1 s behind
        await store.accounts.authenticate("", ip="10.2.2.2", ip_limit=10, count=True, now_us=t)
    times = [int(v) for v in await store.redis.lrange(api.rt.keys.ip_window("10.2.2.2"), 0, -1)]
    assert times == sorted(times) == [T0, T0 + 5_000_000, T0 + 5_000_000]


async def test_one_redis_call_per_authenticated_request(
    rl: tuple[Api, FrozenClock], wire_batches: list[list[Sequence[Any]]]
) -> None:
    api, _ = rl
    if api.rt.settings.redis_cluster:
        pytest.skip("counts one Redis's batches; a cluster's wire sends one batch per node")
    key = await keyed(api, 100)

    def names() -> list[list[str]]:
        return [[str(c[0]) for c in b] for b in wire_batches]

    wire_batches.clear()
    res = await api.request("GET", "/v1/cues/cue_nope00000000", key)
    assert res.status_code == 404
    assert names()[0] == ["FCALL"]  # the auth script: once, first
    assert sum(b.count("FCALL") for b in names()) == 2  # + the cue's execution page
    wire_batches.clear()
    # /v1/auth/me: the auth call plus one pipeline of reads
    assert (await api.request("GET", "/v1/auth/me", key)).status_code == 200
    assert len(names()) == 2 and names()[0] == ["FCALL"] and "FCALL" not in names()[1]


async def test_fail_open_when_redis_is_unreachable(settings: Settings) -> None:
    if settings.redis_cluster:  # a cluster client that never reached a node cannot route (500);
        pytest.skip("every role PINGs a cluster at start and refuses to start without it")
    rt = Runtime(settings.replace(redis_url="redis://127.0.0.1:1/0"), FrozenClock(T0))
    transport = httpx.ASGITransport(app=create_app(rt, manage_runtime=False))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://cuefast.test") as client:
        try:
            res = await client.get("/v1/nope")  # needs no Redis: served, without rate-limit headers
            assert_error(res, 404, "http_error")
            assert "x-ratelimit-limit" not in res.headers
            res = await client.get("/v1/cues", headers={"Authorization": "Bearer cue_sk_" + "1" * 32})
            assert_error(res, 503, "service_unavailable")  # authentication itself needs Redis
        finally:
            await rt.close()


def scripts(batches: list[list[Sequence[Any]]]) -> int:
    """How many script calls ``batches`` (the ``wire_batches`` fixture) carried."""
    return sum(1 for b in batches for c in b if c[0] == "FCALL")


async def test_one_keys_requests_in_one_iteration_are_counted_in_one_call(
    rl: tuple[Api, FrozenClock], wire_batches: list[list[Sequence[Any]]]
) -> None:
    """``turn_batches``: the script counts a batch in order — the first that fit are counted,
    the rest refused and not counted — exactly as the same requests sent one by one."""
    api, clock = rl
    key = await keyed(api, 5)
    wire_batches.clear()
    clock.set(T0)
    answers = await asyncio.gather(*(api.request("GET", "/v1/cues", key) for _ in range(8)))
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
    assert [limits(a)[1] for a in answers[:5]] == [4, 3, 2, 1, 0]
    for a in answers[5:]:
        assert_429(a, 5, 60, reset_of(T0))
    assert scripts(wire_batches) == 1  # 8 auth calls in one (the 429s never reach the route)
    window = api.rt.keys.key_window(api.rt.keys.key_shard(key_sha(key)), key_sha(key))
    assert [int(t) for t in await api.rt.store.redis.lrange(window, 0, -1)] == [T0] * 5
    # the window is full: the next batch is refused whole, and not counted
    wire_batches.clear()
    clock.set(T0 + 1_000_000)
    again = await asyncio.gather(*(api.request("GET", "/v1/cues", key) for _ in range(3)))
    assert [a.status_code for a in again] == [429] * 3 and scripts(wire_batches) == 1
    assert await api.rt.store.redis.llen(window) == 5


async def test_creates_of_one_iteration_share_the_call_in_order(
    rl: tuple[Api, FrozenClock], wire_batches: list[list[Sequence[Any]]]
) -> None:
    """Creates join the key's batch with their name reservations: one auth call for the lot, and
    the answers of calls one after another — the first create of a name wins, the next gets 409,
    the ones over the rate limit 429 (and reserve nothing)."""
    api, clock = rl
    key = await keyed(api, 6)
    clock.set(T0)

    def worker_cue(name: str) -> dict[str, Any]:
        return {"name": name, "transport": "worker", "schedule": {"type": "recurring", "cron": "0 9 * * *"}}

    first = await api.request("POST", "/v1/cues", key, json=worker_cue("first"))  # the key's account learnt
    assert first.status_code == 201, first.text
    auth_keys = api.rt.keys.api_keys(api.rt.keys.key_shard(key_sha(key)))  # the auth script's KEYS[1]
    names = ["a", "b", "a", "c", "d", "e", "a"]
    wire_batches.clear()
    answers = await asyncio.gather(*(api.request("POST", "/v1/cues", key, json=worker_cue(n)) for n in names))
    assert [a.status_code for a in answers] == [201, 201, 409, 201, 201, 429, 429]
    assert_error(answers[2], 409, "duplicate_cue_name")
    assert [limits(a)[1] for a in answers[:5]] == [4, 3, 2, 1, 0]
    assert sum(1 for b in wire_batches for c in b if c[0] == "FCALL" and auth_keys in c) == 1  # 7 in one
    clock.set(T0 + 61_000_000)
    listed = (await api.request("GET", "/v1/cues", key, params={"limit": 50})).json()["cues"]
    assert sorted(c["name"] for c in listed) == ["a", "b", "c", "d", "first"]
    names_key = api.rt.keys.cue_names(await account_id(api, key))
    assert sorted(await api.rt.store.redis.hkeys(names_key)) == ["a", "b", "c", "d", "first"]


async def test_a_batch_is_counted_from_where_the_window_stands(rl: tuple[Api, FrozenClock]) -> None:
    api, _ = rl
    key = await keyed(api, 10)
    store = api.rt.store.accounts
    sha = key_sha(key)
    first = await store.authenticate(sha, count=True, now_us=T0)
    assert first.window == (True, 1, 10, T0)
    many = await asyncio.gather(*(store.authenticate(sha, count=True, now_us=T0 + i) for i in range(1, 13)))
    assert [(w.counted, w.requests) for w in (r.window for r in many) if w] == [
        *((True, n) for n in range(2, 11)),
        *((False, 10) for _ in range(3)),
    ]
    assert {r.account.id for r in many if r.account} == {first.account.id if first.account else ""}
    # a request carrying a name reservation (a create) is never batched
    assert all(r.reserved is None for r in many)
