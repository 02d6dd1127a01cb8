"""The script runner (``cuefast.store.scripts``) on a private redis-server: scripts run as Redis
functions, other versions' libraries are pruned at boot, a server that refuses functions gets
EVALSHA, and a lost function is loaded again."""

from __future__ import annotations

import uuid

import pytest
import redis

from cuefast.store import Keys, Store, connect
from cuefast.store.scripts import library_names, load_function, load_lua
from tests.chaos.backends import RedisServer
from tests.conftest import assert_error, backend_settings, make_api
from tests.refusals import KINDS, Refusal

pytestmark = pytest.mark.slow


def _libraries(url: str) -> set[str]:
    with redis.Redis.from_url(url, decode_responses=True) as r:
        return library_names(r.function_list())


async def _works(store: Store) -> None:
    """A script call that writes, and its read back."""
    assert await store.echo.save("203.0.113.9", 1, uuid.uuid4().hex, "{}", limit=10, ttl_s=60)


async def test_scripts_are_functions_and_other_versions_are_pruned(own_redis: RedisServer) -> None:
    with redis.Redis.from_url(own_redis.url) as r:
        old = load_function("echo_save").code.replace("cuefast_echo_save_", "cuefast_echo_save_0ld", 2)
        r.function_load(old)  # a library of another version of cuefast
        r.function_load("#!lua name=theirs\nredis.register_function('theirs', function() return 1 end)")
    store = Store(connect(own_redis.url), Keys(f"t{uuid.uuid4().hex[:10]}", 4))
    try:
        await store.preload()
        assert store.scripts.functions
        assert _libraries(own_redis.url) == {*store.scripts.function_names(), "theirs"}
        await _works(store)
        with redis.Redis.from_url(own_redis.url, decode_responses=True) as r:
            calls = r.info("commandstats")
        assert calls["cmdstat_fcall"]["calls"] >= 1 and "cmdstat_evalsha" not in calls
        with redis.Redis.from_url(own_redis.url) as r:  # the server forgets one (FUNCTION FLUSH, a new node)
            r.function_delete(load_function("echo_save").name)
        await _works(store)  # loaded again, then run
        assert load_function("echo_save").name in _libraries(own_redis.url)
    finally:
        await store.close()


@pytest.mark.parametrize("preload", [True, False])
async def test_a_server_that_refuses_functions_gets_evalsha(own_redis: RedisServer, preload: bool) -> None:
    """An ACL without FUNCTION (or a Redis before 7): the store says so once and runs every
    script with EVALSHA, whether it finds out at boot or at its first call."""
    with redis.Redis.from_url(own_redis.url) as r:
        r.acl_setuser("cuefast", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-function"])
    url = own_redis.url.replace("redis://", "redis://cuefast:x@")
    store = Store(connect(url), Keys(f"t{uuid.uuid4().hex[:10]}", 4))
    try:
        if preload:
            await store.preload()
        await _works(store)
        assert not store.scripts.functions
        with redis.Redis.from_url(own_redis.url, decode_responses=True) as r:
            calls = r.info("commandstats")
            assert r.script_exists(redis.client.Redis.register_script(r, load_lua("echo_save")).sha) == [True]
        assert calls["cmdstat_evalsha"]["calls"] >= 1
        assert calls.get("cmdstat_fcall", {"calls": 0})["calls"] == (0 if preload else 1)  # "not found"
        assert _libraries(own_redis.url) == set()
    finally:
        await store.close()


def test_every_script_is_a_function_of_its_own_version() -> None:
    """The function name carries a digest of the library's code; a read is flagged no-writes."""
    fn = load_function("executions_list")
    assert fn.name.startswith("cuefast_executions_list_") and fn.code.startswith(f"#!lua name={fn.name}\n")
    assert "'no-writes'" in fn.code and "'allow-cross-slot-keys'" in fn.code
    assert "'no-writes'" not in load_function("outcomes_record").code
    assert "exec_index_reset()\nrecord_outcome_reset()\n" in load_function("outcomes_record").code


@pytest.mark.parametrize("kind", KINDS)
async def test_a_redis_that_refuses_writes_gets_503_and_nothing_half_written(
    own_redis: RedisServer, database_url: str, pg_schema: str, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """Redis refuses a function that may write before it starts — past ``maxmemory``
    (noeviction), a replica since a failover (READONLY), busy with another client's long script
    (BUSY), its last save failed (MISCONF), fewer replicas than ``min-replicas-to-write``
    (NOREPLICAS): the API answers the 503 envelope, logs one line without a traceback, and nothing is
    half-written — once the server serves again the account holds exactly what it held."""
    settings = backend_settings(own_redis.url, database_url, pg_schema, f"t{uuid.uuid4().hex[:10]}")
    api, rt = await make_api(settings)
    body = {
        "name": "c",
        "schedule": {"type": "recurring", "cron": "0 9 * * *"},
        "callback": {"url": "http://127.0.0.1:9/h"},
    }
    refusal = Refusal(own_redis.url, kind)
    try:
        key = await api.register()
        assert (await api.request("POST", "/v1/cues", key, json=body)).status_code == 201
        refusal.begin()
        try:
            res = await api.request("POST", "/v1/cues", key, json={**body, "name": "d"})
            assert_error(res, 503, "service_unavailable")  # the whole envelope
        finally:
            refusal.end()
        assert refusal.logged in caplog.text and "Traceback" not in caplog.text
        cues = (await api.request("GET", "/v1/cues", key)).json()
        assert [c["name"] for c in cues["cues"]] == ["c"]
    finally:
        await api.client.aclose()
        await rt.close()
