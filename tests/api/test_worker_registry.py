"""The worker registry's bounds (POST /v1/worker/heartbeat, GET /v1/workers): the size of one
record, the number of workers per account, and the expiry of workers not seen for a day."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from cuefast.config import Settings
from tests.api.worker_helpers import Env, make_env, wenv  # noqa: F401  (fixture)
from tests.conftest import assert_error


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def heartbeat(env: Env, key: str, worker: str, handlers: Any = None) -> Any:
    body: dict[str, Any] = {"worker_id": worker}
    if handlers is not None:
        body["handlers"] = handlers
    return await env.post(key, "/v1/worker/heartbeat", body)


async def listed(env: Env, key: str) -> list[dict[str, Any]]:
    res = await env.api.request("GET", "/v1/workers", key)
    assert res.status_code == 200, res.text
    workers: list[dict[str, Any]] = res.json()["workers"]
    return workers


async def test_a_record_at_its_bounds(wenv: Env) -> None:
    key = await wenv.api.register()
    most = [f"{i:03d}" + "h" * 252 for i in range(100)]  # 100 × 255 chars: the most
    worker = "w" * 255
    assert (await heartbeat(wenv, key, worker, most)).status_code == 200
    (got,) = await listed(wenv, key)
    assert got["worker_id"] == worker and got["handlers"] == most
    err = assert_error(await heartbeat(wenv, key, "w2", [*most, "one-more"]), 422, "validation_error")
    assert err["message"] == "body.handlers: List should have at most 100 items"
    assert_error(await heartbeat(wenv, key, "w2", ["h" * 256]), 422, "validation_error")
    assert_error(await heartbeat(wenv, key, "w" * 256, ["a"]), 422, "validation_error")
    assert [w["worker_id"] for w in await listed(wenv, key)] == [worker]  # nothing half-written


async def test_workers_per_account_at_the_limit(settings: Settings) -> None:
    async with make_env(msgspec.structs.replace(settings, worker_registry_limit=3)) as env:
        key = await env.api.register()
        other = await env.api.register()
        for i in range(3):
            assert (await heartbeat(env, key, f"box-{i}", ["etl"])).status_code == 200
            env.clock.advance(1)
        assert_error(
            await heartbeat(env, key, "box-3"), 403, "worker_limit_exceeded", "Worker limit of 3 reached"
        )
        assert (await heartbeat(env, other, "box-3")).status_code == 200  # per account
        assert (await heartbeat(env, key, "box-0", ["etl", "mail"])).status_code == 200  # known: always
        # box-1 is the longest silent; once it is no longer alive, a new worker takes its place
        env.clock.advance(settings.worker_alive_seconds)
        assert (await heartbeat(env, key, "box-3")).status_code == 200
        workers = await listed(env, key)
        assert [(w["worker_id"], w["heartbeat_status"]) for w in workers] == [
            ("box-3", "active"),
            ("box-0", "stale"),  # seen ALIVE seconds ago: still alive for the registry
            ("box-2", "stale"),
        ]
        assert workers[1]["handlers"] == ["etl", "mail"]
        assert_error(await env.api.request("DELETE", "/v1/workers/box-1", key), 404, "worker_not_found")


async def test_workers_not_seen_for_a_day_are_forgotten(wenv: Env) -> None:
    key = await wenv.api.register()
    assert (await heartbeat(wenv, key, "gone", ["a"])).status_code == 200
    wenv.clock.advance(3600)
    assert (await heartbeat(wenv, key, "here")).status_code == 200
    wenv.clock.advance(86_400 - 3600)
    assert [w["worker_id"] for w in await listed(wenv, key)] == ["here", "gone"]  # a day old: kept
    assert (await listed(wenv, key))[1]["heartbeat_status"] == "dead"
    wenv.clock.advance(1)
    assert [w["worker_id"] for w in await listed(wenv, key)] == ["here"]
    assert (await heartbeat(wenv, key, "here")).status_code == 200  # its sweep drops the entry
    k = wenv.rt.store.keys
    acct = (await wenv.rt.accounts.authenticate(f"Bearer {key}")).id
    assert await wenv.rt.store.redis.hkeys(k.worker_info(acct)) == ["here"]
    assert_error(await wenv.api.request("DELETE", "/v1/workers/gone", key), 404, "worker_not_found")
