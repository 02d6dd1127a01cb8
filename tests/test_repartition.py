"""``cuefast repartition``: an install moved to another partition count answers as before (real Redis)."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from msgspec.structs import replace

from cuefast.config import DEFAULT_PARTITIONS, Settings, load_settings
from cuefast.errors import ConfigError
from cuefast.ids import new_execution_id
from cuefast.runtime import Runtime
from cuefast.store import repartition as rp
from cuefast.store.keys import Keys
from cuefast.store.system import REPARTITION
from tests.api.test_cues import create, webhook_cue
from tests.conftest import Api, make_api, wait_for


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    return replace(settings_on, partitions=16)


def worker_cue(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "transport": "worker",
        "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
        "payload": {"task": "t"},
    }


async def _seed(api: Api) -> dict[str, Any]:
    """Two accounts with webhook, worker and one-time cues, fired (with idempotency keys),
    some executions with an outcome, some worker executions claimed."""
    keys = [await api.register(), await api.register()]
    cues: list[tuple[str, str]] = []
    executions: list[tuple[str, str]] = []
    claimed: list[tuple[str, str]] = []
    for n, key in enumerate(keys):
        for i in range(10):
            cue = await create(api, key, webhook_cue(f"h{i}", labels={"team": "ab"[i % 2], "i": str(i)}))
            cues.append((key, cue["id"]))
            res = await api.request(
                "POST",
                f"/v1/cues/{cue['id']}/fire",
                key,
                json={"idempotency_key": f"k{i}", "payload_override": {"i": i}},
            )
            assert res.status_code == 200, res.text
            executions.append((key, res.json()["id"]))
            if i % 2 == 0:
                out = await api.request(
                    "POST",
                    f"/v1/executions/{res.json()['id']}/outcome",
                    key,
                    json={"success": i % 4 == 0, "result": "r"},
                )
                assert out.status_code == 200, out.text
        for i in range(6 + n):
            cue = await create(api, key, worker_cue(f"w{i}"))
            cues.append((key, cue["id"]))
            res = await api.request("POST", f"/v1/cues/{cue['id']}/fire", key, json={})
            assert res.status_code == 200, res.text
            executions.append((key, res.json()["id"]))
            if i % 3 == 0:
                got = await api.request(
                    "POST", f"/v1/executions/{res.json()['id']}/claim", key, json={"worker_id": "w1"}
                )
                assert got.status_code == 200, got.text
                claimed.append((key, res.json()["id"]))
        flaky = await create(api, key, webhook_cue("flaky", alerts={"consecutive_failures": 2}))
        cues.append((key, flaky["id"]))
        for _ in range(2):
            res = await api.request("POST", f"/v1/cues/{flaky['id']}/fire", key, json={})
            executions.append((key, res.json()["id"]))
            out = await api.request(
                "POST", f"/v1/executions/{res.json()['id']}/outcome", key, json={"success": False}
            )
            assert out.status_code == 200, out.text
        once = await create(
            api, key, webhook_cue("once", schedule={"type": "once", "at": "2099-01-01T00:00:00Z"})
        )
        cues.append((key, once["id"]))
    return {"keys": keys, "cues": cues, "executions": executions, "claimed": claimed}


async def _view(api: Api, seed: dict[str, Any]) -> dict[str, Any]:
    """Everything a client sees of the seeded data."""
    out: dict[str, Any] = {}

    async def get(path: str, key: str) -> Any:
        res = await api.request("GET", path, key)
        assert res.status_code == 200, (path, res.text)
        return res.json()

    for key in seed["keys"]:
        out[f"cues {key}"] = await get("/v1/cues?limit=100", key)
        out[f"labelled {key}"] = await get("/v1/cues?limit=100&label=team:a", key)
        out[f"labelled2 {key}"] = await get("/v1/cues?limit=3&offset=2&label=i&label=team:b", key)
        assert out[f"labelled {key}"]["total"] == 5 and out[f"labelled2 {key}"]["total"] == 5
        out[f"execs {key}"] = await get("/v1/executions?limit=100", key)
        out[f"claimable {key}"] = await get("/v1/executions/claimable", key)
        out[f"alerts {key}"] = await get("/v1/alerts", key)
        assert out[f"alerts {key}"]["alerts"], "the seed raises an alert per account"
        out[f"failed {key}"] = await get("/v1/executions?outcome_state=reported_failure&limit=100", key)
    for key, cue_id in seed["cues"]:
        out[cue_id] = await get(f"/v1/cues/{cue_id}", key)
        out[f"execs {cue_id}"] = await get(f"/v1/executions?cue_id={cue_id}", key)
    for key, eid in seed["executions"]:
        out[eid] = await get(f"/v1/executions/{eid}", key)
    return out


def _placement(store_keys: Keys, keys: list[str]) -> list[str]:
    """Keys of cues and executions that are not on the partition their id names."""
    wrong = []
    for key in keys:
        m = re.search(r"\{p(\d+)\}:(cue|exec):([^:]+)", key)
        if m is None:
            continue
        p, kind, ident = int(m.group(1)), m.group(2), m.group(3)
        want = store_keys.cue_partition(ident) if kind == "cue" else store_keys.execution_partition(ident)
        if p != want:
            wrong.append(key)
    return wrong


async def _all_keys(rt: Runtime) -> list[str]:
    return [str(k) async for k in rt.store.redis.scan_iter(match=f"{rt.keys.prefix}:*", count=1000)]


async def test_repartition_keeps_every_answer(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    api, rt = await make_api(settings)
    try:
        seed = await _seed(api)
        before = await _view(api, seed)
        # a live process: refused, nothing changed
        await wait_for(lambda: rt.store.redis.zcard(rt.keys.metrics_processes), what="metrics flush")
        with pytest.raises(rp.Refused, match="running"):
            await rp.repartition(rt.store.redis, settings.key_prefix, 64, rt.clock.now_us())
    finally:
        await api.client.aclose()
        await rt.close()

    unset = replace(settings, partitions=0)
    probe = Runtime(unset)
    redis = probe.store.redis
    try:
        # interrupted after the cues moved: start-up refuses, a second run finishes it
        real = rp._move_executions

        async def crash(*a: Any, **kw: Any) -> Any:
            raise RuntimeError("killed")

        monkeypatch.setattr(rp, "_move_executions", crash)
        with pytest.raises(RuntimeError):
            await rp.repartition(redis, settings.key_prefix, 64, probe.clock.now_us())
        monkeypatch.setattr(rp, "_move_executions", real)
        assert await redis.hget(probe.keys.meta, REPARTITION) == "16>64"
        with pytest.raises(ConfigError, match="repartition"):
            await probe.store.system.check_partitions(explicit=False)
        with pytest.raises(rp.Refused, match="--to 64"):
            await rp.repartition(redis, settings.key_prefix, 128, probe.clock.now_us())
        stats = await rp.repartition(redis, settings.key_prefix, 64, probe.clock.now_us())
        assert (stats.source, stats.target) == (16, 64)
        assert stats.cues == len(seed["cues"]) and stats.executions == len(seed["executions"])
        assert stats.idempotency == 20 and stats.moved > 0 and stats.alerts == 2
    finally:
        await probe.close()

    # an explicit CUEFAST_PARTITIONS other than the stored count stops start-up
    wrong = Runtime(settings)
    with pytest.raises(ConfigError, match="repartition"):
        await wrong.start()
    await wrong.close()

    api, rt = await make_api(unset)  # unset: the stored count
    try:
        assert rt.keys.partitions == 64
        assert await rt.store.redis.hget(rt.keys.meta, "partitions") == "64"
        assert not _placement(rt.keys, await _all_keys(rt))
        after = await _view(api, seed)
        assert after == before
        # idempotency keys answer with the execution they made
        key, cue_id = seed["cues"][0]
        again = await api.request(
            "POST",
            f"/v1/cues/{cue_id}/fire",
            key,
            json={"idempotency_key": "k0", "payload_override": {"i": 0}},
        )
        assert again.status_code == 200 and again.json()["id"] == seed["executions"][0][1]
        # an old id takes its outcome; a claimed one its heartbeat and outcome; work is claimable
        key, eid = seed["executions"][1]
        res = await api.request("POST", f"/v1/executions/{eid}/outcome", key, json={"success": True})
        assert res.status_code == 200, res.text
        key, eid = seed["claimed"][0]
        res = await api.request("POST", f"/v1/executions/{eid}/heartbeat", key, json={"worker_id": "w1"})
        assert res.status_code == 200, res.text
        res = await api.request("POST", f"/v1/executions/{eid}/outcome", key, json={"success": True})
        assert res.status_code == 200, res.text
        key = seed["keys"][1]
        items = before[f"claimable {key}"]["executions"]
        assert items
        for item in items:
            res = await api.request(
                "POST", f"/v1/executions/{item['execution_id']}/claim", key, json={"worker_id": "w2"}
            )
            assert res.status_code == 200, res.text
        res = await api.request("GET", "/v1/executions/claimable", key)
        assert res.json()["executions"] == []
        # new cues land on the new partitions and list with the old ones
        new = await create(api, key, webhook_cue("new"))
        assert rt.keys.cue_partition(new["id"]) < 64
        listed = await api.request("GET", "/v1/cues?limit=100", key)
        assert len(listed.json()["cues"]) == len(before[f"cues {key}"]["cues"]) + 1
        # the label index followed the cues: bulk pause by labels finds every one
        res = await api.request("POST", "/v1/cues/pause", key, json={"labels": {"team": "a"}})
        assert res.json()["changed"] == 5, res.text
        res = await api.request("GET", "/v1/cues?limit=100&label=team:a&status=paused", key)
        assert res.json()["total"] == 5
    finally:
        await api.client.aclose()
        await rt.close()


async def test_refusals_change_nothing(settings: Settings) -> None:
    api, rt = await make_api(settings)
    try:
        key = await api.register()
        # an execution whose id carries the partition itself (written before ids carried the
        # cue's byte) that would not name its partition under 64
        k, k64 = rt.keys, Keys(rt.keys.prefix, 64)
        cue = await create(api, key, webhook_cue("a0"))
        for n in range(1, 40):
            if k64.cue_partition(cue["id"]) != k.cue_partition(cue["id"]):
                break
            await api.request("DELETE", f"/v1/cues/{cue['id']}", key)
            cue = await create(api, key, webhook_cue(f"a{n}"))
        legacy = new_execution_id(k.cue_partition(cue["id"]))
        assert k64.execution_partition(legacy) != k64.cue_partition(cue["id"])
        owner = str(await rt.store.redis.hget(k.cue(cue["id"]), "acct"))
        await rt.store.executions.create(
            execution_id=legacy,
            cue_id=cue["id"],
            account_id=owner,
            scheduled_us=rt.clock.now_us(),
            payload_json="",
            triggered_by="manual_fire",
            now_us=rt.clock.now_us(),
        )
    finally:
        await api.client.aclose()
        await rt.close()
    probe = Runtime(settings)
    try:
        redis = probe.store.redis
        before = sorted(await _all_keys(probe))
        with pytest.raises(rp.Refused, match="1 executions"):
            await rp.repartition(redis, settings.key_prefix, 64, probe.clock.now_us())
        with pytest.raises(rp.Refused, match="powers of two"):
            await rp.repartition(redis, settings.key_prefix, 48, probe.clock.now_us())
        with pytest.raises(rp.Refused, match="no cuefast install"):
            await rp.repartition(redis, settings.key_prefix + "x", 64, probe.clock.now_us())
        assert sorted(await _all_keys(probe)) == before
        assert await redis.hget(probe.keys.meta, "partitions") == "16"
        # shrinking by a power of two keeps even such ids naming their partition
        stats = await rp.repartition(redis, settings.key_prefix, 4, probe.clock.now_us())
        assert (stats.cues, stats.executions) == (1, 1)
    finally:
        await probe.close()


def test_default_partitions_apply_to_new_installs_only() -> None:
    assert load_settings({}).partitions == 0
    assert (
        Runtime(load_settings({"CUEFAST_REDIS_URL": "redis://127.0.0.1:1"})).keys.partitions
        == DEFAULT_PARTITIONS
    )
    with pytest.raises(ConfigError):
        load_settings({"CUEFAST_PARTITIONS": "257"})


def test_the_command(
    redis_url: str, database_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """``cuefast repartition --to N``: exit 0 and a summary; again: nothing to do; refused: exit 1."""
    import asyncio

    from cuefast.__main__ import main

    async def install() -> None:
        rt = Runtime(load_settings({}, redis_url=redis_url, key_prefix=key_prefix, partitions=16))
        await rt.start()
        await rt.close()

    asyncio.run(install())
    for name in [n for n in os.environ if n.startswith("CUEFAST_")]:  # e.g. the tests' own
        monkeypatch.delenv(name)
    monkeypatch.setenv("CUEFAST_REDIS_URL", redis_url)
    monkeypatch.setenv("CUEFAST_DATABASE_URL", database_url)
    monkeypatch.setenv("CUEFAST_KEY_PREFIX", key_prefix)
    assert main(["repartition", "--to", "32"]) == 0
    assert "repartitioned 16 -> 32 partitions" in capsys.readouterr().out
    assert main(["repartition", "--to", "32"]) == 0
    assert "already has 32 partitions" in capsys.readouterr().out
    assert main(["repartition", "--to", "24"]) == 1
    assert "powers of two" in capsys.readouterr().err


async def test_an_install_keeps_its_count_when_the_variable_is_unset(settings: Settings) -> None:
    """Data written at 16, CUEFAST_PARTITIONS unset (the new default is 128): runs at 16, meta unchanged."""
    api, rt = await make_api(settings)
    key = await api.register()
    cue = await create(api, key, webhook_cue("a"))
    await api.client.aclose()
    await rt.close()
    api, rt = await make_api(replace(settings, partitions=0))
    try:
        assert rt.keys.partitions == 16 and DEFAULT_PARTITIONS == 128
        assert await rt.store.redis.hget(rt.keys.meta, "partitions") == "16"
        res = await api.request("GET", f"/v1/cues/{cue['id']}", key)
        assert res.status_code == 200, res.text
    finally:
        await api.client.aclose()
        await rt.close()
