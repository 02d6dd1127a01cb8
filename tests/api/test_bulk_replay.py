"""cuefast's bulk replay: POST /v1/executions/replay selects by filter from the listing indexes,
the runner replays at the job's rate, idempotently per (job, source), and GET /v1/replays/{id}
shows the progress."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cuefast.clock import FrozenClock
from cuefast.config import Settings
from tests.conftest import Api, make_api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


S = 1_000_000


@pytest.fixture
async def env(settings: Settings, frozen_clock: FrozenClock) -> AsyncIterator[tuple[Api, FrozenClock]]:
    api, rt = await make_api(settings, frozen_clock)
    try:
        yield api, frozen_clock
    finally:
        await api.client.aclose()
        await rt.close()


async def worker_cue(api: Api, key: str, name: str) -> str:
    body = {"name": name, "transport": "worker", "schedule": {"type": "recurring", "cron": "0 0 1 1 *"}}
    res = await api.request("POST", "/v1/cues", key, json={**body, "payload": {"n": name}})
    assert res.status_code == 201, res.text
    return str(res.json()["id"])


async def fire(api: Api, key: str, cue: str, success: bool | None) -> str:
    res = await api.request("POST", f"/v1/cues/{cue}/fire", key)
    assert res.status_code == 200, res.text
    eid = str(res.json()["id"])
    if success is not None:
        res = await api.request("POST", f"/v1/executions/{eid}/outcome", key, json={"success": success})
        assert res.status_code == 200, res.text
    return eid


async def replays_of(api: Api, key: str) -> list[dict[str, Any]]:
    res = await api.request("GET", "/v1/executions?triggered_by=replay&limit=100", key)
    return list(res.json()["executions"])


async def test_failed_executions_are_replayed_at_the_jobs_rate(env: tuple[Api, FrozenClock]) -> None:
    api, clock = env
    key = await api.register()
    cue, other = await worker_cue(api, key, "a"), await worker_cue(api, key, "b")
    failed = [await fire(api, key, cue, False) for _ in range(5)]
    await fire(api, key, cue, True)
    await fire(api, key, other, False)  # another cue's failure: not selected
    res = await api.request(
        "POST",
        "/v1/executions/replay",
        key,
        json={"filter": {"cue_id": cue, "status": "failed"}, "rate_per_second": 2},
    )
    assert res.status_code == 201, res.text
    job = res.json()
    assert job["status"] == "running" and job["selected"] == 5 and job["replayed"] == 0
    assert job["filter"] == {"cue_id": cue, "status": "failed"} and job["rate_per_second"] == 2
    runner = api.rt.replays
    assert await runner.step() == 2
    assert await runner.step() == 0  # one batch a second
    clock.advance(1)
    assert await runner.step() == 2
    clock.advance(1)
    assert await runner.step() == 1
    done = (await api.request("GET", f"/v1/replays/{job['id']}", key)).json()
    assert (done["status"], done["replayed"], done["skipped"]) == ("done", 5, 0) and done["finished_at"]
    made = await replays_of(api, key)
    assert sorted(e["replayed_from"] for e in made) == sorted(failed)
    assert {e["cue_id"] for e in made} == {cue} and {e["status"] for e in made} == {"pending"}
    clock.advance(1)
    assert await runner.step() == 0  # a finished job is never run again


async def test_a_batch_whose_runner_died_is_redone_without_duplicates(env: tuple[Api, FrozenClock]) -> None:
    api, clock = env
    key = await api.register()
    cue = await worker_cue(api, key, "a")
    for _ in range(3):
        await fire(api, key, cue, False)
    job = (await api.request("POST", "/v1/executions/replay", key, json={"rate_per_second": 3})).json()
    store, runner = api.rt.store, api.rt.replays
    batch = await store.replays.take(job["id"], clock.now_us(), 60 * S)
    assert batch is not None and len(batch.ids) == 3
    for src in batch.ids[:2]:  # replayed two of three, then "crashed" before advancing
        await api.rt.executions.replay_one(batch.account_id, src, job_id=job["id"])
    assert await runner.step() == 0  # leased: no one else takes it
    clock.advance(61)
    assert await runner.step() == 3
    assert not await store.replays.advance(  # the dead runner's late advance changes nothing
        job["id"],
        batch,
        replayed=2,
        skipped=0,
        next_at_us=clock.now_us(),
        last_error="",
        now_us=clock.now_us(),
    )
    got = (await api.request("GET", f"/v1/replays/{job['id']}", key)).json()
    assert (got["status"], got["replayed"]) == ("done", 3)
    assert len(await replays_of(api, key)) == 3


async def test_since_until_limit_and_unfinished_sources(env: tuple[Api, FrozenClock]) -> None:
    api, clock = env
    key = await api.register()
    cue = await worker_cue(api, key, "a")
    times, ids = [], []
    for _ in range(6):
        clock.advance(10)
        times.append(clock.now_us())
        ids.append(await fire(api, key, cue, True))
    pending = await fire(api, key, cue, None)
    mid = (await api.request("GET", f"/v1/executions/{ids[1]}", key)).json()["created_at"]
    end = (await api.request("GET", f"/v1/executions/{ids[4]}", key)).json()["created_at"]
    body = {"filter": {"since": mid, "until": end}, "limit": 3, "rate_per_second": 10}
    job = (await api.request("POST", "/v1/executions/replay", key, json=body)).json()
    assert job["selected"] == 3  # ids[4], ids[3], ids[2]: newest first, until inclusive, limit 3
    await api.rt.replays.step()
    assert sorted(e["replayed_from"] for e in await replays_of(api, key)) == sorted(ids[2:5])
    job = (
        await api.request("POST", "/v1/executions/replay", key, json={"filter": {"status": "pending"}})
    ).json()
    await api.rt.replays.step()
    got = (await api.request("GET", f"/v1/replays/{job['id']}", key)).json()
    assert got["selected"] == got["skipped"] >= 1 and got["replayed"] == 0
    assert got["last_error"].endswith("execution_in_flight") and pending in str(
        [
            e["id"]
            for e in (await api.request("GET", "/v1/executions?status=pending", key)).json()["executions"]
        ]
    )


async def test_outcome_state_and_trigger_filters(env: tuple[Api, FrozenClock]) -> None:
    """The issue's ``outcome_state`` filter (and ``triggered_by``): only executions whose agent
    reported that outcome are replayed; the replays themselves are not picked up again."""
    api, clock = env
    key = await api.register()
    cue = await worker_cue(api, key, "o")
    good, bad = [], []
    for _ in range(2):
        clock.advance(1)
        good.append(await fire(api, key, cue, True))
        bad.append(await fire(api, key, cue, False))
    body = {"filter": {"outcome_state": "reported_failure", "triggered_by": "manual_fire"}}
    job = (await api.request("POST", "/v1/executions/replay", key, json=body)).json()
    assert job["selected"] == 2, job
    await api.rt.replays.step()
    assert sorted(e["replayed_from"] for e in await replays_of(api, key)) == sorted(bad)
    body = {"filter": {"cue_id": cue, "outcome_state": "reported_success"}}
    job = (await api.request("POST", "/v1/executions/replay", key, json=body)).json()
    assert job["selected"] == 2, job
    await api.rt.replays.step()
    assert sorted(e["replayed_from"] for e in await replays_of(api, key)) == sorted(bad + good)


async def test_idempotency_and_isolation(env: tuple[Api, FrozenClock]) -> None:
    api, _ = env
    key, stranger = await api.register(), await api.register()
    cue = await worker_cue(api, key, "a")
    await fire(api, key, cue, False)
    body = {"filter": {"status": "failed"}, "idempotency_key": "deploy-42"}
    first = await api.request("POST", "/v1/executions/replay", key, json=body)
    again = await api.request("POST", "/v1/executions/replay", key, json=body)
    assert first.status_code == again.status_code == 201  # the same answer, the same job
    assert again.json()["id"] == first.json()["id"]
    other = await api.request("POST", "/v1/executions/replay", key, json={**body, "limit": 7})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_conflict"
    assert (await api.request("GET", f"/v1/replays/{first.json()['id']}", stranger)).status_code == 404
    theirs = await api.request("POST", "/v1/executions/replay", stranger, json={"filter": {"cue_id": cue}})
    assert theirs.status_code == 201 and theirs.json()["selected"] == 0 and theirs.json()["status"] == "done"
    for bad in ("rpl_nope", "x" * 300, "rpl_" + "0" * 18):
        assert (await api.request("GET", f"/v1/replays/{bad}", key)).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        ({"limit": 0}, 422, "body.limit"),
        ({"limit": 10_001}, 422, "body.limit"),
        ({"rate_per_second": 0}, 422, "body.rate_per_second"),
        ({"nope": 1}, 422, "body.nope"),
        ({"filter": {"since": "yesterday"}}, 422, "body.filter.since"),
        ({"filter": {"color": "red"}}, 422, "body.filter.color"),
        ({"filter": {"status__in": []}}, 422, "body.filter.status__in"),
        ({"filter": []}, 422, "body.filter"),
        ({"filter": {"status": "failed", "status__in": ["success"]}}, 400, None),
        ([], 422, "body"),
    ],
)
async def test_bad_requests(env: tuple[Api, FrozenClock], body: Any, status: int, where: str | None) -> None:
    api, _ = env
    key = await api.register()
    res = await api.request("POST", "/v1/executions/replay", key, json=body)
    assert res.status_code == status, res.text
    if where is not None:
        assert res.json()["error"]["details"][0]["field"] == where


@pytest.mark.slow
async def test_two_dispatchers_replay_a_job_once(settings: Settings, tmp_path: Any) -> None:
    """Real processes: ``cuefast serve`` and another ``cuefast dispatcher`` both run replays;
    40 failed executions at 20 a second are replayed exactly once each."""
    import httpx

    from tests.conftest import wait_for
    from tests.procs import Processes, free_port, process_env

    port = free_port()
    environ = process_env(settings, CUEFAST_PORT=str(port))
    async with Processes(tmp_path / "logs", lifetime=110) as procs:
        procs.start("serve", "serve", env=environ)
        procs.start("dispatcher", "dispatcher", env=environ)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(up, 60, "the server")
            res = await http.post("/v1/auth/register", json={"email": "bulk@example.com"})
            auth = {"Authorization": f"Bearer {res.json()['api_key']}"}
            body = {
                "name": "w",
                "transport": "worker",
                "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
            }
            cue = (await http.post("/v1/cues", json=body, headers=auth)).json()["id"]
            failed = []
            for _ in range(40):
                eid = (await http.post(f"/v1/cues/{cue}/fire", json={}, headers=auth)).json()["id"]
                await http.post(f"/v1/executions/{eid}/outcome", json={"success": False}, headers=auth)
                failed.append(eid)
            job = (
                await http.post(
                    "/v1/executions/replay",
                    json={"filter": {"status": "failed"}, "rate_per_second": 20},
                    headers=auth,
                )
            ).json()
            assert job["selected"] == 40

            async def done() -> dict[str, Any] | None:
                got = (await http.get(f"/v1/replays/{job['id']}", headers=auth)).json()
                return got if got["status"] == "done" else None

            final = await wait_for(done, 30, "the replay job")
            assert (final["replayed"], final["skipped"]) == (40, 0)
            listed = (await http.get("/v1/executions?triggered_by=replay&limit=100", headers=auth)).json()
            assert sorted(e["replayed_from"] for e in listed["executions"]) == sorted(failed)
