"""The layout-3 upgrade (accounts from the one ``{auth}`` slot to the auth shards:
accounts_upgrade_read, accounts_adopt) and the cue-partition bitmap backfill
(accounts_backfill_partitions) against real Redis."""

from __future__ import annotations

from cuefast.store import Status, Store
from cuefast.store.accounts import Window
from tests.lua.seed import NOW, put_cue, put_execution

MONTH = "2027-01"
IP = "198.51.100.7"


def fields(n: int, sha: str) -> dict[str, str | int]:
    return {
        "id": f"acct-{n}",
        "email": f"u{n}@example.com",
        "email_lc": f"u{n}@example.com",
        "slug": f"u{n}",
        "plan": "free",
        "cue_limit": 10,
        "exec_limit": 1000,
        "rate_limit": 5,
        "wh_secret": "w",
        "alert_secret": "a",
        "key_sha": sha,
        "key_prefix": "cue_sk_x",
        "key_enc": "",
        "created": NOW,
        "updated": NOW,
    }


async def _old_layout(store: Store) -> None:
    """Two accounts as the layout before the shards wrote them: acct-1 with a bitmap (partitions
    1 and 3), a rate-limit window and a rotated key; acct-2 older than the bitmap, with a cue and
    an execution of a cue since deleted on other partitions; an IP window; a dirty mark."""
    r, old = store.redis, store.keys.auth + ":"
    for n in (1, 2):
        await r.hset(f"{old}acct:acct-{n}", mapping=fields(n, f"sha-{n}"))  # type: ignore[arg-type]
        await r.hset(f"{old}keys", f"sha-{n}", f"acct-{n}")
        await r.hset(store.keys.emails, f"u{n}@example.com", f"acct-{n}")
    for p in (1, 3):
        await r.setbit(f"{old}cparts:acct-1", p, 1)
    await r.rpush(f"{old}rl:k:sha-1", NOW - 2, NOW - 1)
    await r.pexpire(f"{old}rl:k:sha-1", 60_000)
    await r.rpush(f"{old}rl:ip:{IP}", NOW - 1)
    await r.pexpire(f"{old}rl:ip:{IP}", 60_000)
    await r.set(f"{old}rot:sha-0", "acct-1", px=3_600_000)
    await r.sadd(f"{old}dirty", "acct:acct-1")


async def test_upgrade_moves_accounts_keys_windows_and_backfills_bitmaps(store: Store) -> None:
    k = store.keys
    await _old_layout(store)
    cue_p = await put_cue(store, "cue_aaaaaaaaaaaa", acct="acct-2")
    gone_p, _ = await put_execution(store, "cue_deletedxxxx", acct="acct-2")
    assert await store.account_layout.upgrade() == 2
    assert await store.account_layout.upgrade() == 0  # idempotent: nothing left to move

    one = await store.accounts.authenticate("sha-1", ip=IP, ip_limit=9, month=MONTH, count=True, now_us=NOW)
    assert one.status is Status.OK and one.account is not None
    assert one.account.partitions == (1, 3) and one.account.slug == "u1"
    assert one.window == Window(True, 3, 5, NOW - 2)  # the window came along: exact counting
    two = await store.accounts.authenticate("sha-2", month=MONTH, count=False, now_us=NOW)
    assert two.account is not None and two.account.partitions == tuple(sorted({cue_p, gone_p}))
    rotated = await store.accounts.authenticate(
        "sha-0", ip=IP, ip_limit=9, month=MONTH, count=True, now_us=NOW
    )
    assert rotated.status is Status.ROTATED and rotated.window == Window(True, 2, 9, NOW - 1)

    for n in (1, 2):
        assert f"acct:acct-{n}" in {
            str(m) for m in await store.redis.smembers(k.dirty(k.account_slot(f"acct-{n}")))
        }
    leftovers = [key async for key in store.redis.scan_iter(match=k.auth + ":*")]
    assert sorted(str(key) for key in leftovers) == [k.emails]  # the global slot keeps only its maps


async def test_backfill_gives_untracked_accounts_their_partitions_and_keeps_tracked_ones(
    store: Store,
) -> None:
    k = store.keys
    p = await put_cue(store, "cue_bbbbbbbbbbbb", acct="acct-9", status="paused")
    assert await store.account_layout.backfill_cue_partitions(["acct-9", "acct-8"]) == 2
    assert await store.redis.getbit(k.cue_partitions("acct-9"), p) == 1
    assert await store.redis.bitcount(k.cue_partitions("acct-9")) == 1
    assert await store.redis.get(k.cue_partitions("acct-8")) == ""  # no cues: tracked, empty
    await store.accounts.note_cue_partition("acct-8", 2)
    assert await store.account_layout.backfill_cue_partitions(["acct-8"]) == 0  # tracked: left alone
    assert await store.redis.getbit(k.cue_partitions("acct-8"), 2) == 1


async def test_move_names_merges_each_accounts_names_into_its_shard_and_drops_the_old_hash(
    store: Store,
) -> None:
    """Layout 4: ``{a:<id>}:names`` to the account's auth shard; a name the new hash already
    holds (reserved by an upgraded process) keeps its value; idempotent."""
    k = store.keys
    await store.redis.hset(k.legacy_cue_names("acct-1"), mapping={"a": "cue_a:1", "b": "cue_b:2"})
    await store.redis.hset(k.legacy_cue_names("acct-2"), mapping={"c": "cue_c:3"})
    await store.redis.hset(k.cue_names("acct-1"), "b", "cue_new:9")
    await store.redis.hset(k.cue_labels("acct-1"), "cue_a", "1,x=y")  # same slot, not a names hash
    assert await store.account_layout.move_names() == 2
    assert await store.account_layout.move_names() == 0
    assert await store.redis.hgetall(k.cue_names("acct-1")) == {"a": "cue_a:1", "b": "cue_new:9"}
    assert await store.redis.hgetall(k.cue_names("acct-2")) == {"c": "cue_c:3"}
    assert await store.redis.exists(k.legacy_cue_names("acct-1"), k.legacy_cue_names("acct-2")) == 0
    assert await store.redis.hget(k.cue_labels("acct-1"), "cue_a") == "1,x=y"
