"""The cue scripts one by one against real Redis (cues_create, cues_update, cues_delete,
cues_reserve_name, cues_release_name): arrange keys → call → assert the answer and the state (the
cue's hash and config string, its status index and due entry, the names hash, dirty marks)."""

from __future__ import annotations

from typing import Any

from cuefast.store import Status, Store
from cuefast.store.cues import RELEASE_NAME
from tests.lua.seed import ACCT, CREATED, CUE, NOW, RECURRING, S, dirty, put_cue

OTHER = "cue_bbbbbbbbbbbb"
LONG = '{"text":"' + "x" * 80 + '"}'


def new_cue(**over: Any) -> dict[str, str | int]:
    """A create's fields as the cues service builds them (``cfg`` and ``pl`` included)."""
    fields: dict[str, str | int] = {
        "acct": ACCT,
        "name": "nightly",
        "status": "active",
        "tr": "webhook",
        "nr": NOW + 60 * S,
        "ca": NOW,
        "cfg": '{"callback":{"url":"https://example.com/h"}}',
        "sch": RECURRING,
        "pl": '{"a":1}',
    }
    fields.update(over)
    return fields


# ---- cues_create ---------------------------------------------------------------------------------
async def test_create_writes_the_hash_config_index_and_due_entry(store: Store) -> None:
    k = store.keys
    p = k.cue_partition(CUE)
    assert await store.cues.create(CUE, new_cue()) is Status.OK
    assert await store.redis.hgetall(k.cue(CUE)) == {
        "acct": ACCT,
        "name": "nightly",
        "status": "active",
        "tr": "webhook",
        "nr": str(NOW + 60 * S),
        "ca": str(NOW),
        "sch": RECURRING,
        "pl": '{"a":1}',
    }
    assert await store.redis.get(k.cue_config(CUE)) == '{"callback":{"url":"https://example.com/h"}}'
    assert await store.redis.zscore(k.cue_index(p, ACCT, "active"), CUE) == NOW
    assert await store.redis.zscore(k.due(p), CUE) == NOW + 60 * S
    assert await dirty(store, k.part(p)) == {f"cue:{CUE}"}


async def test_create_without_a_next_run_has_no_due_entry_and_a_long_payload_rides_the_config(
    store: Store,
) -> None:
    k = store.keys
    p = k.cue_partition(CUE)
    assert await store.cues.create(CUE, new_cue(nr="", status="paused", pl=LONG)) is Status.OK
    assert await store.redis.zscore(k.due(p), CUE) is None
    assert await store.redis.zscore(k.cue_index(p, ACCT, "paused"), CUE) == NOW
    assert await store.redis.hget(k.cue(CUE), "pl") is None
    assert await store.redis.get(k.cue_config(CUE)) == '{"callback":{"url":"https://example.com/h"}}\n' + LONG


async def test_create_an_existing_id_answers_exists_and_changes_nothing(store: Store) -> None:
    k = store.keys
    p = k.cue_partition(CUE)
    await store.cues.create(CUE, new_cue())
    await store.redis.delete(k.dirty(k.part(p)))
    assert await store.cues.create(CUE, new_cue(name="other", cfg="{}", nr=NOW, ca=NOW + S)) is Status.EXISTS
    assert await store.redis.hget(k.cue(CUE), "name") == "nightly"
    assert await store.redis.get(k.cue_config(CUE)) == '{"callback":{"url":"https://example.com/h"}}'
    assert await store.redis.zscore(k.due(p), CUE) == NOW + 60 * S
    assert await store.redis.zscore(k.cue_index(p, ACCT, "active"), CUE) == NOW
    assert await dirty(store, k.part(p)) == set()


# ---- cues_update ---------------------------------------------------------------------------------
async def test_update_moves_status_index_clears_next_run_and_sets_fields(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW + 60 * S)
    res = await store.cues.update(CUE, ACCT, "1", status="paused", next_run="", fields={"v": 2, "ua": NOW})
    assert res is Status.OK
    h = await store.redis.hgetall(k.cue(CUE))
    assert (h["status"], h["nr"], h["v"], h["ua"]) == ("paused", "", "2", str(NOW))
    assert await store.redis.zscore(k.cue_index(p, ACCT, "active"), CUE) is None
    assert await store.redis.zscore(k.cue_index(p, ACCT, "paused"), CUE) == CREATED  # created_at score
    assert await store.redis.zscore(k.due(p), CUE) is None
    assert await store.redis.get(k.cue_config(CUE)) == "{}"  # no config given: kept
    assert await dirty(store, k.part(p)) == {f"cue:{CUE}"}


async def test_update_sets_a_next_run_and_a_new_config(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, status="paused", pl='{"short":1}')
    fields = {"v": 2, "ua": NOW, "cfg": '{"retry":{"max_attempts":1}}', "pl": LONG}
    assert await store.cues.update(CUE, ACCT, "1", status="active", next_run=str(NOW + S), fields=fields) is (
        Status.OK
    )
    h = await store.redis.hgetall(k.cue(CUE))
    assert (h["status"], h["nr"]) == ("active", str(NOW + S))
    assert "pl" not in h  # the long payload moved into the config string
    assert await store.redis.get(k.cue_config(CUE)) == '{"retry":{"max_attempts":1}}\n' + LONG
    assert await store.redis.zscore(k.due(p), CUE) == NOW + S
    assert await store.redis.zscore(k.cue_index(p, ACCT, "active"), CUE) == CREATED


async def test_update_keep_leaves_the_next_run_and_due_entry(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW + 60 * S, v=3)
    assert await store.cues.update(CUE, ACCT, "3", fields={"v": 4, "ua": NOW, "name": "renamed"}) is Status.OK
    h = await store.redis.hgetall(k.cue(CUE))
    assert (h["nr"], h["v"], h["name"], h["status"]) == (str(NOW + 60 * S), "4", "renamed", "active")
    assert await store.redis.zscore(k.due(p), CUE) == NOW + 60 * S


async def test_update_refusals_change_nothing(store: Store) -> None:
    """NOT_FOUND: another account's cue; CONFLICT: the version moved (absent 'v' means 1), or the
    new next run is the slot that already fired ('fa')."""
    k = store.keys
    p = await put_cue(store, nr=NOW + 60 * S, fa=NOW)
    await store.redis.delete(k.dirty(k.part(p)))
    before = await store.redis.hgetall(k.cue(CUE))
    calls = [
        ("other", "1", str(NOW + S), Status.NOT_FOUND),
        (ACCT, "2", str(NOW + S), Status.CONFLICT),
        (ACCT, "1", str(NOW), Status.CONFLICT),
    ]
    for acct, version, next_run, status in calls:
        res = await store.cues.update(
            CUE, acct, version, status="paused", next_run=next_run, fields={"v": 2, "ua": NOW}
        )
        assert res is status, (acct, version, next_run)
    assert await store.redis.hgetall(k.cue(CUE)) == before
    assert await store.redis.zscore(k.due(p), CUE) == NOW + 60 * S
    assert await store.redis.zscore(k.cue_index(p, ACCT, "active"), CUE) == CREATED
    assert await dirty(store, k.part(p)) == set()


# ---- cues_delete ---------------------------------------------------------------------------------
async def test_delete_removes_both_keys_and_every_index_entry(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW + 60 * S)
    await store.redis.zadd(k.cue_index(p, ACCT, "failed"), {CUE: CREATED})  # a stray entry goes too
    assert await store.cues.delete(CUE, ACCT) == f"name-{CUE}"
    assert await store.redis.exists(k.cue(CUE), k.cue_config(CUE)) == 0
    assert await store.redis.zscore(k.due(p), CUE) is None
    for status in ("active", "paused", "completed", "failed"):
        assert await store.redis.zscore(k.cue_index(p, ACCT, status), CUE) is None, status
    assert await dirty(store, k.part(p)) == {f"cue:{CUE}"}  # the snapshotter deletes its row
    assert await store.cues.delete(CUE, ACCT) is None  # a repeat: NOT_FOUND


async def test_delete_another_accounts_cue_is_not_found(store: Store) -> None:
    k = store.keys
    p = await put_cue(store, nr=NOW)
    assert await store.cues.delete(CUE, "other") is None
    assert await store.redis.exists(k.cue(CUE), k.cue_config(CUE)) == 2
    assert await store.redis.zscore(k.due(p), CUE) == NOW
    assert await dirty(store, k.part(p)) == set()


# ---- cues_reserve_name / cues_release_name ----------------------------------------------------------
async def test_reserve_name_free_repeat_and_taken(store: Store) -> None:
    names = store.keys.cue_names(ACCT)
    assert await store.cues.reserve_name(ACCT, "nightly", CUE, NOW) == (Status.OK, "")
    held = f"{CUE}:{NOW // S}"
    assert await store.redis.hgetall(names) == {"nightly": held}
    # the same cue again (a retried create): OK, its reservation unchanged
    assert await store.cues.reserve_name(ACCT, "nightly", CUE, NOW + 9 * S) == (Status.OK, "")
    assert await store.cues.reserve_name(ACCT, "nightly", OTHER, NOW) == (Status.EXISTS, held)
    assert await store.redis.hgetall(names) == {"nightly": held}
    assert await store.cues.reserve_name("acct2", "nightly", OTHER, NOW) == (Status.OK, "")  # per account


async def test_reserve_name_limit_hint_answers_count(store: Store) -> None:
    """With the hint, as many names as the limit cannot prove the limit is not hit: COUNT."""
    names = store.keys.cue_names(ACCT)
    await store.cues.reserve_name(ACCT, "a", CUE, NOW, limit_hint=2)
    assert await store.cues.reserve_name(ACCT, "b", OTHER, NOW, limit_hint=2) == (Status.OK, "")
    assert await store.cues.reserve_name(ACCT, "c", "cue_cccccccccccc", NOW, limit_hint=2) == (
        Status.COUNT,
        "",
    )
    assert sorted(await store.redis.hkeys(names)) == ["a", "b"]
    assert await store.cues.reserve_name(ACCT, "c", "cue_cccccccccccc", NOW) == (Status.OK, "")  # -1: no hint


async def test_reserve_name_takes_over_only_the_expected_stale_value(store: Store) -> None:
    names = store.keys.cue_names(ACCT)
    stale = f"{OTHER}:{NOW // S - 100}"
    await store.redis.hset(names, "nightly", stale)
    res = await store.cues.reserve_name(ACCT, "nightly", CUE, NOW, replace_if=f"{OTHER}:1")
    assert res == (Status.EXISTS, stale)
    assert await store.cues.reserve_name(ACCT, "nightly", CUE, NOW, replace_if=stale) == (Status.OK, "")
    assert await store.redis.hget(names, "nightly") == f"{CUE}:{NOW // S}"


async def test_release_name_only_by_its_holder(store: Store) -> None:
    names = store.keys.cue_names(ACCT)
    await store.cues.reserve_name(ACCT, "nightly", CUE, NOW)
    assert await store.scripts.run(RELEASE_NAME, [names], ["nightly", OTHER]) == Status.NOT_FOUND
    assert await store.redis.hexists(names, "nightly")
    assert await store.scripts.run(RELEASE_NAME, [names], ["nightly", CUE]) == Status.OK
    assert not await store.redis.hexists(names, "nightly")
    assert await store.scripts.run(RELEASE_NAME, [names], ["nightly", CUE]) == Status.NOT_FOUND
