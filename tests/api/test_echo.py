"""Echo (CONTRACT.md §16.5): the CLI quickstart's delivery target."""

from __future__ import annotations

import pytest

from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.engine.dispatcher import Dispatcher
from tests.api.worker_helpers import Env, wenv  # noqa: F401  (fixture)
from tests.conftest import assert_error, make_api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


TOKEN = "tok-0123456789abcdef"


async def test_store_and_read(wenv: Env) -> None:
    key = await wenv.api.register()
    assert (await wenv.api.request("GET", f"/v1/echo/{TOKEN}", key)).json() == {"status": "waiting"}
    res = await wenv.api.request(
        "POST", f"/v1/echo/{TOKEN}", content=b'{"a": [1, 2]}', headers={"X-Custom": "V"}
    )
    assert res.status_code == 200 and res.json() == {"stored": True}
    got = (await wenv.api.request("GET", f"/v1/echo/{TOKEN}", key)).json()
    assert got["status"] == "delivered" and got["payload"] == {"a": [1, 2]}
    assert got["headers"]["x-custom"] == "V" and got["received_at"].endswith("+00:00")
    assert_error(await wenv.api.request("GET", f"/v1/echo/{TOKEN}"), 401, "invalid_api_key")


async def test_token_size_and_rate_limit(wenv: Env) -> None:
    assert_error(await wenv.api.request("POST", "/v1/echo/short", json={}), 400, "invalid_token")
    key = await wenv.api.register()
    assert_error(await wenv.api.request("GET", "/v1/echo/short", key), 400, "invalid_token")
    res = await wenv.api.request("POST", f"/v1/echo/{TOKEN}", content=b'"' + b"x" * 1_000_000 + b'"')
    assert_error(res, 413, "payload_too_large")
    for i in range(10):
        res = await wenv.api.request("POST", f"/v1/echo/{TOKEN}{i}", json={"i": i})
        assert res.status_code == 200, res.text
    res = await wenv.api.request("POST", f"/v1/echo/{TOKEN}x", json={})
    assert_error(res, 429, "rate_limit_exceeded")
    assert int(res.headers["retry-after"]) >= 1
    assert (await wenv.api.request("GET", f"/v1/echo/{TOKEN}x", key)).json() == {"status": "waiting"}


async def test_quickstart_cue_delivers_to_own_echo(settings: Settings) -> None:
    """A one-time webhook cue pointed at the server's own /v1/echo/<token> is accepted and its
    delivery lands in the echo (the server listens on loopback: CUEFAST_ALLOW_PRIVATE_CALLBACKS)."""
    import asyncio

    import uvicorn

    from cuefast.api import create_app

    clock = FrozenClock(1_795_434_122_000_000)
    api, rt = await make_api(settings.replace(allow_private_callbacks=True), clock)
    server = uvicorn.Server(
        uvicorn.Config(create_app(rt, manage_runtime=False), host="127.0.0.1", port=0, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        key = await api.register()
        res = await api.request(
            "POST",
            "/v1/cues",
            key,
            json={
                "name": "quickstart",
                "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
                "callback": {"url": f"http://127.0.0.1:{port}/v1/echo/{TOKEN}"},
                "payload": {"hello": "world"},
            },
        )
        assert res.status_code == 201, res.text
        await api.request("POST", f"/v1/cues/{res.json()['id']}/fire", key)
        dispatcher = Dispatcher(rt.store, rt.settings, clock, rt.webhooks)
        await dispatcher.start()
        try:
            entries = await rt.store.delivery.read(dispatcher.consumer, 10, 100)
            for p, entry_id, eid in entries:
                assert await dispatcher.deliver(p, entry_id, eid) == "success"
        finally:
            await dispatcher.close()
        got = (await api.request("GET", f"/v1/echo/{TOKEN}", key)).json()
        assert got["status"] == "delivered" and got["payload"]["payload"] == {"hello": "world"}
        assert got["headers"]["x-cueapi-signature"].startswith("v1=")
    finally:
        server.should_exit = True
        await serving
        await api.client.aclose()
        await rt.close()


async def test_headers_only_for_the_delivering_account(wenv: Env) -> None:
    """Whoever knows a token can read its echo, so the stored headers (a cue's custom headers,
    its signature) are shown in full only to the account whose cue delivered them."""
    owner = await wenv.api.register()
    other = await wenv.api.register()
    cue = await wenv.cue(owner, "echo-owner")
    delivery = {
        "X-CueAPI-Cue-Id": cue["id"],
        "X-CueAPI-Signature": "v1=" + "ab" * 32,
        "Authorization": "Bearer customer-secret",
        "X-Api-Key": "another-secret",
    }
    token = TOKEN + "-own"
    res = await wenv.api.request("POST", f"/v1/echo/{token}", json={"m": 1}, headers=delivery)
    assert res.status_code == 200, res.text
    mine = (await wenv.api.request("GET", f"/v1/echo/{token}", owner)).json()
    assert mine["headers"]["authorization"] == "Bearer customer-secret"
    assert mine["headers"]["x-api-key"] == "another-secret"
    assert mine["headers"]["x-cueapi-signature"] == "v1=" + "ab" * 32
    theirs = (await wenv.api.request("GET", f"/v1/echo/{token}", other)).json()
    assert theirs["status"] == "delivered" and theirs["payload"] == {"m": 1}  # what quickstart reads
    assert theirs["headers"] == {}
    # a request that names no cue of anyone (a manual curl): secrets redacted for every reader
    token = TOKEN + "-curl"
    manual = {
        "Authorization": "Bearer mine",
        "Proxy-Authorization": "Basic eA==",
        "Cookie": "s=1",
        "X-CueAPI-Signature": "v1=00",
        "X-CueAPI-Cue-Id": "cue_000000000000",
        "X-Other": "kept",
    }
    await wenv.api.request("POST", f"/v1/echo/{token}", json={}, headers=manual)
    for key in (owner, other):
        headers = (await wenv.api.request("GET", f"/v1/echo/{token}", key)).json()["headers"]
        for name in ("authorization", "proxy-authorization", "cookie", "x-cueapi-signature"):
            assert headers[name] == "[redacted]", name
        assert headers["x-other"] == "kept" and headers["x-cueapi-cue-id"] == "cue_000000000000"
