"""Identical reads in flight shared (``api/shared.py``): one Redis read answers the identical
listings and cue reads that arrived before it left, and never one that arrived after a write."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cuefast.api.shared import Shared
from cuefast.store import connect
from cuefast.store.wire import Wire
from tests.api.test_executions_listing import fire_cues
from tests.conftest import Api


async def test_identical_listings_in_flight_share_one_read(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await api.register()
    cues = await fire_cues(api, key, 3)
    executions = api.rt.executions
    reads = 0
    list_ = executions.list

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await list_(*args, **kwargs)

    monkeypatch.setattr(executions, "list", counted)
    answers = await asyncio.gather(*(api.request("GET", "/v1/executions?limit=2", key) for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert answers[0].json()["total"] == 3
    assert reads < 5, reads  # 20 requests, one read (a background write between them: two)
    # each request keeps its own request id and rate-limit headers
    assert len({a.headers["x-request-id"] for a in answers}) == 20
    # another query, another read; a cue read is shared the same way
    other = await asyncio.gather(
        api.request("GET", "/v1/executions?limit=1", key), api.request("GET", "/v1/executions?limit=2", key)
    )
    assert [len(a.json()["executions"]) for a in other] == [1, 2]
    gets = await asyncio.gather(*(api.request("GET", f"/v1/cues/{cues[0]}", key) for _ in range(10)))
    assert {g.status_code for g in gets} == {200} and len({g.content for g in gets}) == 1


async def test_errors_are_shared_and_each_key_is_still_checked(api: Api) -> None:
    key = await api.register()
    bad = await asyncio.gather(*(api.request("GET", "/v1/executions?limit=0", key) for _ in range(5)))
    assert {(a.status_code, a.json()["error"]["code"]) for a in bad} == {(422, "validation_error")}
    mixed = await asyncio.gather(
        api.request("GET", "/v1/executions?limit=2", key),
        api.request("GET", "/v1/executions?limit=2", "cue_sk_" + "0" * 32),
    )
    assert [a.status_code for a in mixed] == [200, 401]


class Gate:
    """A read held in flight until ``open``: what it answers, and how often it ran."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.runs = 0
        self.opened = asyncio.Event()

    async def __call__(self) -> str:
        self.runs += 1
        await self.opened.wait()
        return self.answer


async def test_a_read_after_a_write_to_redis_is_never_shared_with_one_from_before(redis_url: str) -> None:
    client = connect(redis_url)
    wire = Wire.of(client)
    try:
        await one_write_apart(wire)
    finally:
        await wire.aclose()
        await client.aclose()


async def one_write_apart(wire: Wire) -> None:
    shared: Shared[str] = Shared()
    first, second, third = Gate("first"), Gate("second"), Gate("third")
    a = asyncio.ensure_future(shared.answer("k", first))
    b = asyncio.ensure_future(shared.answer("k", second))  # the same turn: shares a's read
    await asyncio.sleep(0)
    await wire.call("PING")  # a Redis round trip (a write may have completed since a): turns later
    c = asyncio.ensure_future(shared.answer("k", third))
    await asyncio.sleep(0)
    first.opened.set(), second.opened.set(), third.opened.set()
    assert await asyncio.gather(a, b, c) == ["first", "first", "third"]
    assert (first.runs, second.runs, third.runs) == (1, 0, 1)
    assert await shared.answer("k", first) == "first"  # nothing in flight: its own read
    assert first.runs == 2


async def test_a_waiter_that_goes_away_does_not_cancel_the_shared_read() -> None:
    shared: Shared[str] = Shared()
    gate = Gate("x")
    a = asyncio.ensure_future(shared.answer("k", gate))
    b = asyncio.ensure_future(shared.answer("k", Gate("y")))
    await asyncio.sleep(0)
    a.cancel()
    gate.opened.set()
    assert await b == "x"
    assert a.cancelled()


async def test_a_failed_read_fails_every_waiter() -> None:
    shared: Shared[str] = Shared()

    async def boom() -> str:
        raise RuntimeError("down")

    results = await asyncio.gather(shared.answer("k", boom), shared.answer("k", boom), return_exceptions=True)
    assert [str(r) for r in results] == ["down", "down"]
