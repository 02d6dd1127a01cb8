"""Snapshotter: dirty tracking, batched upserts, the one-active lease, crash safety."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from cuefast.config import Settings
from cuefast.durability.snapshots import BATCH, LeaseLost, Snapshotter
from cuefast.ids import key_sha, new_execution_id
from cuefast.months import month_of
from cuefast.services.usage import count_executions, quota_blocked
from tests.snap_env import Env, fire, new_cue, snap_env


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def _bulk_executions(env: Env, account_id: str, cue_id: str, n: int) -> list[str]:
    """``n`` manual executions straight through executions_create.lua (the API path, minus HTTP)."""
    store = env.rt.store
    p = store.keys.cue_partition(cue_id)
    ids = [new_execution_id(p) for _ in range(n)]
    now = env.clock.now_us()
    for i in range(0, n, 500):
        await asyncio.gather(
            *(
                store.executions.create(
                    execution_id=eid,
                    cue_id=cue_id,
                    account_id=account_id,
                    scheduled_us=now,
                    payload_json='{"task":"bulk"}',
                    triggered_by="manual_fire",
                    now_us=now,
                )
                for eid in ids[i : i + 500]
            )
        )
    return ids


async def _account_id(env: Env, key: str) -> str:
    return str(await env.rt.store.accounts.account_of_key(key_sha(key)))


async def _pg_execs(env: Env, account_id: str) -> dict[str, dict[str, Any]]:
    async with env.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id::text AS id, doc::text AS doc FROM executions WHERE account_id = $1", account_id
        )
    return {r["id"]: msgspec.json.decode(r["doc"]) for r in rows}


@pytest.mark.slow
async def test_thousands_of_changes_go_out_in_a_few_batched_statements(settings: Settings) -> None:
    async with snap_env(settings) as env:
        key = await env.api.register()
        acct = await _account_id(env, key)
        cue = await new_cue(env.api, key, "bulk")
        n = 2 * BATCH + 1234
        ids = await _bulk_executions(env, acct, cue["id"], n)
        assert await env.rt.store.snapshots.dirty_count() == n + 2  # + the account and the cue
        began = env.rt.clock.now_us()
        stats = await env.snap.snapshot()
        assert stats.rows == n + 2
        last_ok = await env.rt.store.redis.hget(env.rt.keys.snapshot, "last_ok_us")
        assert last_ok is not None and int(last_ok) >= began  # what /metrics reports as snapshot lag
        # one partition holds every execution: ceil(n / BATCH) takes, plus one each for the
        # account (auth slot) and the cue's partition shares the executions' batches
        assert stats.batches <= n // BATCH + 2
        assert stats.statements <= stats.batches * 2  # one multi-row upsert per table and batch
        assert await env.rt.store.snapshots.dirty_count() == 0
        pg = await _pg_execs(env, acct)
        assert set(pg) == set(ids)
        async with env.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM cues WHERE id = $1", cue["id"]) == 1
            assert await conn.fetchval("SELECT key_sha FROM accounts WHERE id = $1", acct)
        again = await env.snap.snapshot()  # nothing changed: nothing written
        assert again.rows == 0 and again.statements == 0


async def test_docs_keep_every_string_exactly(settings: Settings) -> None:
    """The take script JSON-encodes each hash (cjson): unicode, quotes, slashes, backslashes and
    control characters reach PostgreSQL's doc unchanged."""
    async with snap_env(settings) as env:
        key = await env.api.register()
        tricky = 'café/ü 😀 "q" \\ </tag> \n\t\u0001 end'
        cue = await new_cue(env.api, key, "tricky é/😀", payload={"text": tricky, "n": [1, 2.5, None]})
        await env.snap.snapshot()
        h = await env.rt.store.redis.hgetall(env.rt.keys.cue(cue["id"]))
        async with env.pool.acquire() as conn:
            doc = await conn.fetchval("SELECT doc::text FROM cues WHERE id = $1", cue["id"])
            name = await conn.fetchval("SELECT name FROM cues WHERE id = $1", cue["id"])
        got = msgspec.json.decode(doc)
        blob = await env.rt.store.redis.get(env.rt.keys.cue_config(cue["id"]))
        assert got.pop("_cfg") == blob and tricky in msgspec.json.decode(blob.partition("\n")[2])["text"]
        assert h and got == h  # the cue hash, and its config string as '_cfg', exactly
        assert name == "tricky é/😀"


async def test_outcomes_evidence_and_deletes_reach_postgres(settings: Settings) -> None:
    async with snap_env(settings) as env:
        key = await env.api.register()
        acct = await _account_id(env, key)
        cue = await new_cue(env.api, key, "w")
        [eid] = await fire(env.api, key, cue["id"])
        await env.snap.snapshot()
        assert (await _pg_execs(env, acct))[eid]["st"] == "pending"
        res = await env.api.request(
            "POST",
            f"/v1/executions/{eid}/outcome",
            key,
            json={"success": True, "result": "done", "metadata": {"n": 1}},
        )
        assert res.status_code == 200, res.text
        await env.snap.snapshot()
        doc = (await _pg_execs(env, acct))[eid]
        assert doc["st"] == "success" and msgspec.json.decode(doc["oc"])["result"] == "done"
        res = await env.api.request("DELETE", f"/v1/cues/{cue['id']}", key)
        assert res.status_code == 204, res.text
        await env.snap.snapshot()
        async with env.pool.acquire() as conn:
            assert await conn.fetchval("SELECT deleted FROM cues WHERE id = $1", cue["id"]) is True
        assert await _pg_execs(env, acct) == {}


async def test_one_snapshotter_is_active_and_another_takes_over_a_lapsed_lease(settings: Settings) -> None:
    async with snap_env(settings, snapshot_interval=0.05) as env:
        first = env.snap
        second = Snapshotter(env.rt.store, env.settings, env.clock, env.pool)
        assert not await second.acquire()  # first holds it
        key = await env.api.register()
        stopping = asyncio.Event()
        task = asyncio.create_task(second.run(stopping))
        try:
            await first.snapshot()  # the holder works; the other idles
            assert not second.active and second.cycles == 0
            # the first one stops renewing (it died): its lease lapses and the second takes over
            first.lease_ms = 50
            await first._renew()
            async with asyncio.timeout(10):
                while second.cycles == 0:
                    await asyncio.sleep(0.01)
            assert second.active
            try:
                await first.snapshot()
                raise AssertionError("a snapshotter without the lease must not write")
            except LeaseLost:
                pass
            await new_cue(env.api, key, "after-takeover")
            async with asyncio.timeout(10):
                while await env.rt.store.snapshots.dirty_count():
                    await asyncio.sleep(0.01)
        finally:
            stopping.set()
            await task
        assert not second.active  # released on stop
        assert await env.rt.store.snapshots.lease("acquire", "someone", 1000)


class _FailingPool:
    """A pool whose execution upserts fail (PostgreSQL died mid-batch)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def acquire(self) -> Any:
        outer = self

        class Ctx:
            async def __aenter__(self) -> Any:
                self.cm = outer.pool.acquire()
                conn = await self.cm.__aenter__()

                class Conn:
                    def transaction(self) -> Any:
                        return conn.transaction()

                    async def execute(self, sql: str, *args: Any) -> Any:
                        if "INSERT INTO executions" in sql:
                            raise ConnectionError("postgres went away")
                        return await conn.execute(sql, *args)

                    async def copy_records_to_table(self, table: str, **kw: Any) -> Any:
                        return await conn.copy_records_to_table(table, **kw)

                return Conn()

            async def __aexit__(self, *exc: Any) -> Any:
                return await self.cm.__aexit__(*exc)

        return Ctx()


async def test_a_crash_between_take_and_commit_loses_nothing(settings: Settings) -> None:
    async with snap_env(settings) as env:
        key = await env.api.register()
        acct = await _account_id(env, key)
        cue = await new_cue(env.api, key, "w")
        ids = await fire(env.api, key, cue["id"], 5)
        # a snapshotter takes every batch into processing, then its PostgreSQL commit fails
        dying = Snapshotter(env.rt.store, env.settings, env.clock, _FailingPool(env.pool))
        dying.token = env.snap.token  # same lease holder: the process restarted
        dying.active = True
        try:
            await dying.snapshot()
            raise AssertionError("the upsert should have failed")
        except ConnectionError:
            pass
        assert await _pg_execs(env, acct) == {}
        # one more change to an id that sits in processing: it is dirty again
        res = await env.api.request("POST", f"/v1/executions/{ids[0]}/outcome", key, json={"success": False})
        assert res.status_code == 200, res.text
        stats = await env.snap.snapshot()  # the restart retries the processing batch first
        assert stats.rows >= 7
        pg = await _pg_execs(env, acct)
        assert set(pg) == set(ids)
        assert pg[ids[0]]["st"] == "failed"
        assert await env.rt.store.snapshots.dirty_count() == 0


async def test_a_recorded_terminal_execution_is_never_overwritten(settings: Settings) -> None:
    """The upsert's rule: a row is replaced only by a later version of the same execution (same
    created_at), a terminal status stays, and a recorded outcome stays recorded."""
    async with snap_env(settings) as env:
        key = await env.api.register()
        acct = await _account_id(env, key)
        cue = await new_cue(env.api, key, "w")
        [eid] = await fire(env.api, key, cue["id"])
        res = await env.api.request("POST", f"/v1/executions/{eid}/outcome", key, json={"success": True})
        assert res.status_code == 200, res.text
        await env.snap.snapshot()
        # a terminal execution still changes legitimately: evidence appended later goes out
        env.clock.advance(5)
        res = await env.api.request(
            "PATCH", f"/v1/executions/{eid}/evidence", key, json={"external_id": "ext-9"}
        )
        assert res.status_code == 200, res.text
        await env.snap.snapshot()
        recorded = (await _pg_execs(env, acct))[eid]
        assert recorded["st"] == "success" and msgspec.json.decode(recorded["oc"])["external_id"] == "ext-9"

        store = env.rt.store
        p = store.keys.execution_partition(eid)
        assert p is not None
        ek = store.keys.execution(p, eid)
        h = await store.redis.hgetall(ek)
        env.clock.advance(60)
        now = str(env.clock.now_us())
        stale = [
            # the same id created again (a second firing of the slot): a new created_at
            {**{f: h[f] for f in ("cue", "acct", "tr", "sf", "pl")}, "st": "pending", "ca": now},
            # the same execution, its outcome gone
            {**{f: v for f, v in h.items() if f not in ("oc", "os")}, "ua": now},
            # the same execution, another terminal status
            {**h, "st": "failed", "ua": now},
        ]
        for fields in stale:
            await store.redis.delete(ek)
            await store.redis.hset(ek, mapping=fields)
            await store.snapshots.mark_dirty({store.keys.part(p): [f"exec:{eid}"]})
            await env.snap.snapshot()
            assert (await _pg_execs(env, acct))[eid] == recorded, fields


@pytest.mark.slow
async def test_only_a_new_request_cuts_the_interval_short(settings: Settings) -> None:
    """The active snapshotter starts a cycle at once for a new ``cuefast snapshot`` request, but
    a request its last attempt already saw (and failed to serve) waits for the interval: a
    failing snapshot is not retried four times a second."""
    async with snap_env(settings, snapshot_interval=2.0) as env:
        store = env.rt.store
        stopping = asyncio.Event()
        await env.snap.snapshot()  # sees no request
        ticket, _ = await store.snapshots.request("ask")
        t0 = asyncio.get_running_loop().time()
        await env.snap._idle(stopping)
        assert asyncio.get_running_loop().time() - t0 < 1.5
        env.snap._requests_seen = ticket  # an attempt began after the request and failed
        t0 = asyncio.get_running_loop().time()
        await env.snap._idle(stopping)
        assert asyncio.get_running_loop().time() - t0 >= 1.9
        await env.snap.snapshot()
        assert await store.snapshots.request("read") == (ticket, ticket)


async def test_usage_mirror_fields_of_the_account_reach_postgres(settings: Settings) -> None:
    """The executions counter's mirror (``ex:<month>``, written by ``store.usage.count_executions``)
    and the quota grace start (``qg:<month>``, ``services.usage.quota_blocked``) live in the account
    hash: the account is marked dirty with them, so after a snapshot PostgreSQL's copy equals
    Redis (the chaos run found accounts whose PostgreSQL doc lacked ``ex:<month>``)."""
    async with snap_env(settings) as env:
        store = env.rt.store
        acct = await _account_id(env, await env.api.register())
        await store.accounts.set_fields(acct, {"exec_limit": 2})
        await env.snap.snapshot()
        now = env.clock.now_us()
        await count_executions(store, {(acct, month_of(now)): 3})
        await env.snap.snapshot()
        assert await _pg_account(env, acct) == await store.redis.hgetall(store.keys.account(acct))
        assert await quota_blocked(store, [acct], now) == set()  # the grace period starts now
        await env.snap.snapshot()
        redis_doc = await store.redis.hgetall(store.keys.account(acct))
        assert {f"ex:{month_of(now)}", f"qg:{month_of(now)}"} <= set(redis_doc)
        assert await _pg_account(env, acct) == redis_doc


async def test_a_fragment_of_a_vanished_account_never_replaces_its_snapshot(settings: Settings) -> None:
    """After a FLUSHDB (or any loss of the account hash) a late usage-mirror HINCRBY recreates the
    hash as a fragment (``ex:<month>`` alone) and marks it dirty: the snapshot must keep the
    complete copy in PostgreSQL, or ``cuefast restore`` would read an account without an id."""
    async with snap_env(settings) as env:
        store = env.rt.store
        acct = await _account_id(env, await env.api.register())
        await env.snap.snapshot()
        complete = await _pg_account(env, acct)
        await store.redis.delete(store.keys.account(acct))
        await count_executions(store, {(acct, month_of(env.clock.now_us())): 1})
        await env.snap.snapshot()
        assert await _pg_account(env, acct) == complete


async def _pg_account(env: Env, account_id: str) -> dict[str, Any]:
    async with env.pool.acquire() as conn:
        doc = await conn.fetchval("SELECT doc::text FROM accounts WHERE id = $1", account_id)
    return dict(msgspec.json.decode(doc))
