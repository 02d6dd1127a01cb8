"""Per-(account, task) caps on worker claims held at once (PUT /v1/worker/task-caps/{task}):
every claim door respects them, executions over the cap stay pending and go in order, gives and
lease expiry free permits, and a freed permit wakes a long poll."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cuefast.config import Settings
from cuefast.ids import key_sha
from cuefast.services.claim_caps import Reservation
from tests.api.worker_helpers import Env, wenv  # noqa: F401  (fixture)
from tests.conftest import assert_error

CAP_PATH = "/v1/worker/task-caps/{}"


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def set_cap(env: Env, key: str, task: str, n: int) -> dict[str, Any]:
    res = await env.api.request("PUT", CAP_PATH.format(task), key, json={"max_concurrency": n})
    assert res.status_code == 200, res.text
    out: dict[str, Any] = res.json()
    return out


async def get_cap(env: Env, key: str, task: str) -> dict[str, Any]:
    res = await env.api.request("GET", CAP_PATH.format(task), key)
    assert res.status_code == 200, res.text
    out: dict[str, Any] = res.json()
    return out


async def account_id(env: Env, key: str) -> str:
    found = await env.rt.store.accounts.account_of_key(key_sha(key))
    assert found
    return str(found)


async def claim(env: Env, key: str, worker: str = "w1", **body: Any) -> list[dict[str, Any]]:
    res = await env.post(key, "/v1/worker/claim", {"worker_id": worker, **body})
    assert res.status_code == 200, res.text
    items: list[dict[str, Any]] = res.json()["executions"]
    return items


async def outcome(env: Env, key: str, eid: str, worker: str = "w1") -> None:
    res = await env.post(
        key,
        "/v1/worker/outcomes",
        {"worker_id": worker, "outcomes": [{"execution_id": eid, "success": True}]},
    )
    assert res.status_code == 200 and res.json()["results"][0]["outcome_recorded"], res.text


async def fired(env: Env, key: str, cue_id: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        ids.append(await env.fire(key, cue_id))
        env.clock.advance(0.001)  # distinct scheduled_for: a strict order
    return ids


async def test_set_read_and_remove_a_cap(wenv: Env) -> None:
    key = await wenv.api.register()
    assert await get_cap(wenv, key, "etl") == {"task": "etl", "max_concurrency": None, "held": 0}
    assert await set_cap(wenv, key, "etl", 2) == {"task": "etl", "max_concurrency": 2, "held": 0}
    assert (await get_cap(wenv, key, "etl"))["max_concurrency"] == 2
    res = await wenv.api.request("DELETE", CAP_PATH.format("etl"), key)
    assert res.status_code == 200 and res.json() == {"task": "etl", "max_concurrency": None, "held": 0}
    assert (await get_cap(wenv, key, "etl"))["max_concurrency"] is None
    for body in ({}, {"max_concurrency": 0}, {"max_concurrency": "2"}, {"max_concurrency": 10001}, []):
        res = await wenv.api.request("PUT", CAP_PATH.format("etl"), key, json=body)
        assert_error(res, 422, "validation_error")
    res = await wenv.api.request("PUT", CAP_PATH.format("x" * 256), key, json={"max_concurrency": 1})
    assert_error(res, 422, "validation_error")
    res = await wenv.api.request("GET", CAP_PATH.format("etl"), "cf_sk_" + "0" * 32)
    assert res.status_code == 401


async def test_every_claim_door_respects_the_cap_and_order_holds(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, "capped", {"task": "t"})
    other = await wenv.cue(key, "free", {"task": "u"})
    ids = await fired(wenv, key, cue["id"], 5)
    free_ids = await fired(wenv, key, other["id"], 3)
    await set_cap(wenv, key, "t", 2)
    # batch pull: at most the free permits, oldest first; uncapped work is not held back
    got = await claim(wenv, key, max=50)
    assert [i["execution_id"] for i in got if i["task"] == "t"] == ids[:2]
    assert sorted(i["execution_id"] for i in got if i["task"] == "u") == sorted(free_ids)
    assert (await get_cap(wenv, key, "t"))["held"] == 2
    assert await claim(wenv, key, tasks=["t"]) == []
    # the CueAPI doors: claim-next and claim-by-id answer "not available"
    res = await wenv.post(key, "/v1/executions/claim", {"worker_id": "w2", "task": "t"})
    assert_error(res, 409, "claim_failed")
    assert_error(await wenv.claim(key, ids[4], "w2"), 409, "claim_failed")
    # over the cap: still pending, still listed as claimable
    assert (await wenv.get(key, ids[2]))["status"] == "pending"
    # an outcome frees one permit: the next oldest goes, one at a time
    for done, nxt in zip(ids[:3], ids[2:5], strict=True):
        await outcome(wenv, key, done)
        assert [i["execution_id"] for i in await claim(wenv, key, tasks=["t"], max=50)] == [nxt]
    # a release gives the permit back too
    res = await wenv.post(key, "/v1/worker/release", {"worker_id": "w1", "execution_ids": [ids[4]]})
    assert res.json() == {"released": 1}
    res = await wenv.post(key, "/v1/executions/claim", {"worker_id": "w2", "task": "t"})
    assert res.status_code == 200 and res.json()["execution_id"] == ids[4]


async def test_a_claimer_that_dies_frees_its_permits_at_lease_expiry(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, "capped", {"task": "t"})
    ids = await fired(wenv, key, cue["id"], 3)
    await set_cap(wenv, key, "t", 2)
    assert len(await claim(wenv, key, "dead", max=10, lease_seconds=60)) == 2
    assert await claim(wenv, key, "w2") == []
    await wenv.tick(30)
    assert await claim(wenv, key, "w2") == []  # not yet
    await wenv.tick(31)  # the leases (and so the permits) are over; the reaper re-offers
    got = await claim(wenv, key, "w2", max=10)
    assert [i["execution_id"] for i in got] == ids[:2]  # the re-offered ones, oldest first
    assert (await get_cap(wenv, key, "t"))["held"] == 2


async def test_heartbeats_and_lease_extensions_move_the_permit(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, "capped", {"task": "t"})
    (eid,) = await fired(wenv, key, cue["id"], 1)
    await set_cap(wenv, key, "t", 1)
    (item,) = await claim(wenv, key, lease_seconds=60)
    store = wenv.rt.store
    prefix, _ = store.keys.task_permits(await account_id(wenv, key))
    first = await store.redis.zscore(prefix + "t", eid)
    wenv.clock.advance(10)
    res = await wenv.post(key, "/v1/worker/leases", {"worker_id": "w1", "execution_ids": [eid]})
    assert res.status_code == 200 and res.json()["extended"], res.text
    assert await store.redis.zscore(prefix + "t", eid) > first
    moved = await store.redis.zscore(prefix + "t", eid)
    wenv.clock.advance(10)
    res = await wenv.api.request("POST", f"/v1/executions/{eid}/heartbeat", key)
    assert res.status_code == 200, res.text
    assert await store.redis.zscore(prefix + "t", eid) > moved


async def test_a_freed_permit_wakes_a_long_poll(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, "capped", {"task": "t"})
    ids = await fired(wenv, key, cue["id"], 2)
    await set_cap(wenv, key, "t", 1)
    (held,) = await claim(wenv, key)
    acct = await account_id(wenv, key)
    _, waiting = wenv.rt.store.keys.task_permits(acct)
    await wenv.rt.store.redis.delete(waiting)
    poll = asyncio.create_task(claim(wenv, key, "w2", tasks=["t"], wait_seconds=20))
    deadline = asyncio.get_running_loop().time() + 10
    while not await wenv.rt.store.redis.hexists(waiting, "t"):  # the poll met the full cap
        assert asyncio.get_running_loop().time() < deadline and not poll.done()
        await asyncio.sleep(0.01)
    await outcome(wenv, key, held["execution_id"])
    got = await asyncio.wait_for(poll, 15)
    assert [i["execution_id"] for i in got] == [ids[1]]


async def test_two_concurrent_claim_loops_never_hold_more_than_the_cap(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, "capped", {"task": "t"})
    ids = await fired(wenv, key, cue["id"], 40)
    cap = 3
    await set_cap(wenv, key, "t", cap)
    holding: set[str] = set()
    most = 0
    done: list[str] = []

    async def loop(worker: str) -> None:
        nonlocal most
        idle = 0
        while len(done) < len(ids) and idle < 200:
            got = await claim(wenv, key, worker, max=2)
            if not got:
                idle += 1
                await asyncio.sleep(0)
                continue
            holding.update(i["execution_id"] for i in got)
            most = max(most, len(holding))
            await asyncio.sleep(0.005)  # the handlers' work, while the other loop claims
            for item in got:
                holding.discard(item["execution_id"])
                done.append(item["execution_id"])
                await outcome(wenv, key, item["execution_id"], worker)

    await asyncio.gather(loop("a"), loop("b"))
    assert sorted(done) == sorted(ids)  # every execution went once
    assert 1 <= most <= cap
    assert (await get_cap(wenv, key, "t"))["held"] == 0


async def test_a_lease_the_reaper_renews_keeps_its_permit(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, "capped", {"task": "t"})
    ids = await fired(wenv, key, cue["id"], 2)
    await set_cap(wenv, key, "t", 1)
    res = await wenv.post(key, "/v1/worker/heartbeat", {"worker_id": "alive"})
    assert res.status_code == 200, res.text
    (item,) = await claim(wenv, key, "alive", lease_seconds=60)
    assert item["execution_id"] == ids[0]
    await wenv.tick(61)  # the lease expired, but its worker is alive: renewed, permit too
    assert (await wenv.get(key, ids[0]))["status"] == "delivering"
    assert await claim(wenv, key, "w2") == []
    assert (await get_cap(wenv, key, "t"))["held"] == 1


async def test_the_cap_holds_over_partitions(wenv: Env) -> None:
    """One claim call per partition, each enforcing its own share: the shares never add up to
    more than the permits reserved."""
    key = await wenv.api.register()
    keys = wenv.rt.store.keys
    cues: dict[int, str] = {}
    for i in range(40):  # cues of one task on several partitions
        cue = await wenv.cue(key, f"c{i}", {"task": "t"})
        cues.setdefault(keys.cue_partition(cue["id"]), cue["id"])
        if len(cues) == 3:
            break
    assert len(cues) == 3
    ids = [await wenv.fire(key, c) for c in cues.values() for _ in range(2)]
    await set_cap(wenv, key, "t", 2)
    for body in ({"max": 50}, {"max": 50, "tasks": ["t"]}):
        got = await claim(wenv, key, **body)
        assert len(got) == 2, body
        assert (await get_cap(wenv, key, "t"))["held"] == 2
        for item in got:
            await outcome(wenv, key, item["execution_id"])
    got = await claim(wenv, key, max=50)
    assert len(got) == 2 and {i["execution_id"] for i in got} <= set(ids)


async def test_a_claimer_dying_between_claim_and_bind_cannot_pass_the_cap(
    wenv: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim holds its permit only as a placeholder until the bind, scored by its first lease:
    a claimer that dies before the bind leaves a live claim whose placeholder expires with that
    lease. Its worker's heartbeat writes the claim's own permit (the heartbeat knows its task), so
    past the first lease the claim is still counted and the cap is not passed."""
    key = await wenv.api.register()
    cue = await wenv.cue(key, "capped", {"task": "t"})
    ids = await fired(wenv, key, cue["id"], 2)
    await set_cap(wenv, key, "t", 1)

    async def dies(*_: Any) -> None:
        raise RuntimeError("the claiming process died before the bind")

    monkeypatch.setattr(Reservation, "bind", dies)
    res = await wenv.post(key, "/v1/worker/claim", {"worker_id": "w1", "lease_seconds": 60})
    assert res.status_code == 500
    monkeypatch.undo()
    assert (await wenv.get(key, ids[0]))["status"] == "delivering"  # claimed, never bound
    wenv.clock.advance(30)
    res = await wenv.post(key, "/v1/worker/leases", {"worker_id": "w1", "execution_ids": [ids[0]]})
    assert res.status_code == 200 and res.json()["extended"], res.text
    await wenv.tick(40)  # past the first lease (the placeholder's), within the extended one
    assert (await wenv.get(key, ids[0]))["status"] == "delivering"
    assert await claim(wenv, key, "w2", max=10) == []  # still counted: the cap holds
    assert (await get_cap(wenv, key, "t"))["held"] == 1
    await outcome(wenv, key, ids[0])
    assert [i["execution_id"] for i in await claim(wenv, key, "w2", max=10)] == [ids[1]]


async def test_deleting_a_cue_gives_its_claims_permits_back(wenv: Env) -> None:
    """A cue delete removes its executions, claimed ones too: their permits go back with them (not
    when their leases end), so another cue's work of the same task is claimable at once."""
    key = await wenv.api.register()
    gone = await wenv.cue(key, "gone", {"task": "t"})
    kept = await wenv.cue(key, "kept", {"task": "t"})
    (held,) = await fired(wenv, key, gone["id"], 1)
    (nxt,) = await fired(wenv, key, kept["id"], 1)
    await set_cap(wenv, key, "t", 1)
    assert [i["execution_id"] for i in await claim(wenv, key, max=10)] == [held]
    res = await wenv.api.request("DELETE", f"/v1/cues/{gone['id']}", key)
    assert res.status_code in (200, 204), res.text
    assert (await get_cap(wenv, key, "t"))["held"] == 0
    assert [i["execution_id"] for i in await claim(wenv, key, "w2", max=10)] == [nxt]
