"""The account scripts through their store calls against real Redis (accounts_create with
accounts_register, accounts_authenticate (and a create's name reserved in the same call),
accounts_rotate_key with accounts_retire_key,
accounts_reserve_email / accounts_change_email / accounts_release_email): arrange keys → call →
assert the answer and the state of the auth shards and the global auth slot (key, e-mail and
slug maps, the account hash, rate-limit windows, dirty marks)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec

from cuefast.models import Account
from cuefast.store import Status, Store
from cuefast.store.accounts import AuthResult, Reservation, Window
from cuefast.store.keys import Keys
from tests.lua.seed import NOW, S, dirty

MONTH = "2027-01"
DAY_MS = 24 * 3600 * 1000
IP = "203.0.113.9"


def sha_in(shard: int, tag: str) -> str:
    """A stand-in key hash ``<tag>…`` of auth shard ``shard`` (as a drawn key is)."""
    i = 0
    while Keys.key_shard(f"{tag}-{i}") != shard:
        i += 1
    return f"{tag}-{i}"


def sha_of(account_id: str, tag: str) -> str:
    """A stand-in key hash of the account's shard."""
    return sha_in(Keys.account_shard(account_id), tag)


def account(n: int = 1, *, rate_limit: int = 100, exec_limit: int = 1000) -> Account:
    return Account(
        id=f"acct-{n}",
        email=f"User{n}@Example.com",
        email_lc=f"user{n}@example.com",
        plan="free",
        cue_limit=10,
        exec_limit=exec_limit,
        rate_limit=rate_limit,
        wh_secret=f"whsec_{n}",
        alert_secret=f"alert_{n}",
        key_sha=sha_of(f"acct-{n}", f"sha-{n}"),
        key_prefix=f"cue_sk_{n}",
        key_enc=f"enc-{n}",
        created=NOW,
        updated=NOW,
    )


async def register(store: Store, a: Account, slugs: tuple[str, ...] = ("user",)) -> tuple[Status, str]:
    return await store.accounts.register(a, list(slugs))


# ---- accounts_register ---------------------------------------------------------------------------
async def test_register_writes_the_account_and_its_three_maps(store: Store) -> None:
    k, a = store.keys, account()
    assert await register(store, a, ("user", "user-1")) == (Status.OK, "user")
    assert await store.redis.hget(k.emails, a.email_lc) == a.id
    assert await store.redis.hget(k.key_index(a.key_sha), a.key_sha) == a.id
    assert await store.redis.hget(k.slugs, "user") == a.id
    stored = await store.redis.hgetall(k.account(a.id))
    assert msgspec.convert(stored, Account, strict=False) == msgspec.structs.replace(a, slug="user")
    assert await dirty(store, k.account_slot(a.id)) == {f"acct:{a.id}"}


async def test_register_a_taken_email_answers_exists_and_writes_nothing(store: Store) -> None:
    k = store.keys
    await register(store, account(1))
    second = msgspec.structs.replace(account(2), email="USER1@example.com", email_lc="user1@example.com")
    assert await register(store, second, ("other",)) == (Status.EXISTS, "")
    assert await store.redis.hget(k.emails, "user1@example.com") == "acct-1"
    assert await store.redis.hget(k.key_index(second.key_sha), second.key_sha) is None
    assert await store.redis.hget(k.slugs, "other") is None
    assert await store.redis.exists(k.account(second.id)) == 0


async def test_register_takes_the_first_free_slug_or_answers_exhausted(store: Store) -> None:
    k = store.keys
    await register(store, account(1), ("user",))
    assert await register(store, account(2), ("user", "user-a", "user-b")) == (Status.OK, "user-a")
    assert await store.redis.hget(k.slugs, "user-a") == "acct-2"
    a3 = account(3)
    assert await register(store, a3, ("user", "user-a")) == (Status.EXHAUSTED, "")
    assert await store.redis.hget(k.emails, a3.email_lc) is None
    assert await store.redis.hget(k.key_index(a3.key_sha), a3.key_sha) is None
    assert await store.redis.exists(k.account(a3.id)) == 0
    assert await store.redis.hlen(k.slugs) == 2


# ---- accounts_authenticate -----------------------------------------------------------------------
async def test_authenticate_a_valid_key_counts_in_the_key_window(store: Store) -> None:
    k, a = store.keys, account(rate_limit=100)
    await register(store, a)
    res = await store.accounts.authenticate(a.key_sha, ip=IP, ip_limit=5, month=MONTH, count=True, now_us=NOW)
    assert res.status is Status.OK and res.warn is False
    assert res.account == msgspec.structs.replace(a, slug="user", partitions=())
    assert res.window == Window(True, 1, 100, NOW)
    assert await store.redis.lrange(k.key_window(k.account_shard(a.id), a.key_sha), 0, -1) == [str(NOW)]
    assert 60_000 < await store.redis.pttl(k.key_window(k.account_shard(a.id), a.key_sha)) <= 61_000
    assert await store.redis.exists(k.ip_window(IP)) == 0


async def test_authenticate_reads_the_cue_partition_bitmap(store: Store) -> None:
    """A registered account has an empty bitmap (tracked from the start); accounts_cue_partition
    sets bits (partitions past the first byte too); an account without one (older than the
    bitmap, or restored) reads as None — any partition — and stays without one."""
    k, a = store.keys, account()
    await register(store, a)

    async def partitions() -> tuple[int, ...] | None:
        res = await store.accounts.authenticate(a.key_sha, month=MONTH, count=False, now_us=NOW)
        assert res.account is not None
        return res.account.partitions

    assert await partitions() == ()
    for p in (12, 3, 3, 0):
        await store.accounts.note_cue_partition(a.id, p)
    assert await partitions() == (0, 3, 12)
    assert await partitions() is await partitions()  # decoded once per bitmap (remembered)
    for p in range(255, -1, -1):  # the widest bitmap (256 partitions), set high bit first
        await store.redis.setbit(k.cue_partitions(a.id), p, 1)
    assert await partitions() == tuple(range(256))
    await store.redis.delete(k.cue_partitions(a.id))
    assert await partitions() is None
    await store.accounts.note_cue_partition(a.id, 5)
    assert await store.redis.exists(k.cue_partitions(a.id)) == 0
    assert await partitions() is None


async def test_authenticate_without_counting_writes_nothing(store: Store) -> None:
    k, a = store.keys, account()
    await register(store, a)
    res = await store.accounts.authenticate(a.key_sha, month=MONTH, count=False, now_us=NOW)
    assert res.status is Status.OK and res.window is None and res.account is not None
    assert await store.redis.exists(k.key_window(k.account_shard(a.id), a.key_sha), k.ip_window("")) == 0


async def test_authenticate_no_key_and_unknown_key_count_against_the_ip(store: Store) -> None:
    k = store.keys
    for i, sha in enumerate(["", "not-a-key"]):
        res = await store.accounts.authenticate(
            sha, ip=IP, ip_limit=5, month=MONTH, count=True, now_us=NOW + i
        )
        assert res.status is (Status.NO_KEY if sha == "" else Status.NOT_FOUND)
        assert res.account is None and res.warn is False
        assert res.window == Window(True, i + 1, 5, NOW)
    assert await store.redis.lrange(k.ip_window(IP), 0, -1) == [str(NOW), str(NOW + 1)]
    assert await store.redis.exists(k.key_window(k.key_shard("not-a-key"), "not-a-key")) == 0


async def test_authenticate_a_key_whose_account_is_gone_is_unknown(store: Store) -> None:
    k, a = store.keys, account()
    await register(store, a)
    await store.redis.delete(k.account(a.id))
    res = await store.accounts.authenticate(a.key_sha, ip=IP, ip_limit=5, month=MONTH, count=True, now_us=NOW)
    assert res.status is Status.NOT_FOUND and res.window == Window(True, 1, 5, NOW)
    assert await store.redis.llen(k.ip_window(IP)) == 1


async def test_authenticate_a_rotated_key_inside_and_after_its_24_hours(store: Store) -> None:
    k, a = store.keys, account()
    await register(store, a)
    new_sha = sha_of(a.id, "sha-new")
    await store.accounts.rotate_key(a.id, a.key_sha, new_sha, "cue_sk_new", "", ttl_ms=DAY_MS, now_us=NOW)
    res = await store.accounts.authenticate(a.key_sha, ip=IP, ip_limit=5, month=MONTH, count=True, now_us=NOW)
    assert res.status is Status.ROTATED and res.account is None
    assert res.window == Window(True, 1, 5, NOW)  # counted against the IP
    assert await store.redis.llen(k.ip_window(IP)) == 1
    new = await store.accounts.authenticate(new_sha, month=MONTH, count=False, now_us=NOW)
    assert new.status is Status.OK and new.account is not None and new.account.key_sha == new_sha
    # after 24 h the marker's PX has removed it: the old key is simply unknown
    assert DAY_MS - 1000 < await store.redis.pttl(k.rotated_key(a.key_sha)) <= DAY_MS
    await store.redis.delete(k.rotated_key(a.key_sha))
    later = await store.accounts.authenticate(a.key_sha, month=MONTH, count=False, now_us=NOW)
    assert later.status is Status.NOT_FOUND


async def test_authenticate_rate_limit_window(store: Store) -> None:
    """At most ``rate_limit`` requests whose time > now - 60 s; a rejected one is not counted;
    the requests that left the window are trimmed."""
    k, a = store.keys, account(rate_limit=3)
    await register(store, a)
    key = k.key_window(k.account_shard(a.id), a.key_sha)
    for i in range(3):
        res = await store.accounts.authenticate(a.key_sha, month=MONTH, count=True, now_us=NOW + i * S)
        assert res.window == Window(True, i + 1, 3, NOW)
    over = await store.accounts.authenticate(a.key_sha, month=MONTH, count=True, now_us=NOW + 59 * S)
    assert over.status is Status.OK and over.window == Window(False, 3, 3, NOW)
    assert await store.redis.llen(key) == 3  # not counted
    # at NOW + 60 s the first request (at NOW) is out of the window: room for one
    res = await store.accounts.authenticate(a.key_sha, month=MONTH, count=True, now_us=NOW + 60 * S)
    assert res.window == Window(True, 3, 3, NOW + S)
    assert await store.redis.lrange(key, 0, -1) == [str(NOW + S), str(NOW + 2 * S), str(NOW + 60 * S)]


async def test_authenticate_window_stays_sorted_when_a_clock_lags(store: Store) -> None:
    k, a = store.keys, account()
    await register(store, a)
    await store.accounts.authenticate(a.key_sha, month=MONTH, count=True, now_us=NOW)
    await store.accounts.authenticate(a.key_sha, month=MONTH, count=True, now_us=NOW - 5)  # a slower process
    assert await store.redis.lrange(k.key_window(k.account_shard(a.id), a.key_sha), 0, -1) == [
        str(NOW),
        str(NOW),
    ]


async def test_authenticate_warns_at_80_percent_of_the_monthly_limit(store: Store) -> None:
    k, a = store.keys, account(exec_limit=10)
    await register(store, a)
    for used, warn in [(7, False), (8, True)]:
        await store.redis.hset(k.account(a.id), f"ex:{MONTH}", used)
        res = await store.accounts.authenticate(a.key_sha, month=MONTH, count=False, now_us=NOW)
        assert res.warn is warn, used
    res = await store.accounts.authenticate(a.key_sha, month="2027-02", count=False, now_us=NOW)
    assert res.warn is False  # another month's count


# ---- accounts_rotate_key -------------------------------------------------------------------------
async def test_rotate_key_replaces_the_key_and_marks_the_old_one(store: Store) -> None:
    k, a = store.keys, account()
    await register(store, a)
    await store.redis.delete(k.dirty(k.account_slot(a.id)))
    new_sha = sha_of(a.id, "sha-new")
    assert await store.accounts.rotate_key(
        a.id, a.key_sha, new_sha, "cue_sk_new", "enc", ttl_ms=DAY_MS, now_us=NOW + S
    ) is (Status.OK)
    assert await store.redis.hgetall(k.key_index(new_sha)) == {new_sha: a.id}
    assert await store.redis.get(k.rotated_key(a.key_sha)) == a.id
    h = await store.redis.hgetall(k.account(a.id))
    assert (h["key_sha"], h["key_prefix"], h["key_enc"], h["updated"]) == (
        new_sha,
        "cue_sk_new",
        "enc",
        str(NOW + S),
    )
    assert await dirty(store, k.account_slot(a.id)) == {f"acct:{a.id}"}


async def test_rotate_key_with_a_key_no_longer_current_is_a_conflict(store: Store) -> None:
    """Two concurrent rotations authenticated with the same key: the second changes nothing."""
    k, a = store.keys, account()
    await register(store, a)
    sha_b, sha_c = sha_of(a.id, "sha-b"), sha_of(a.id, "sha-c")
    await store.accounts.rotate_key(a.id, a.key_sha, sha_b, "p-b", "", ttl_ms=DAY_MS, now_us=NOW)
    before = await store.redis.hgetall(k.account(a.id))
    assert await store.accounts.rotate_key(
        a.id, a.key_sha, sha_c, "p-c", "", ttl_ms=DAY_MS, now_us=NOW + 1
    ) is (Status.CONFLICT)
    assert await store.redis.hgetall(k.account(a.id)) == before
    assert await store.redis.hgetall(k.key_index(sha_b)) == {sha_b: a.id}
    assert await store.redis.exists(k.rotated_key(sha_b)) == 0


# ---- accounts_change_email -----------------------------------------------------------------------
async def test_change_email_moves_the_unique_entry(store: Store) -> None:
    k, a = store.keys, account()
    await register(store, a)
    await store.redis.delete(k.dirty(k.account_slot(a.id)))
    assert await store.accounts.change_email(a.id, "New@Example.com", NOW + S) is Status.OK
    assert await store.redis.hgetall(k.emails) == {"new@example.com": a.id}
    h = await store.redis.hgetall(k.account(a.id))
    assert (h["email"], h["email_lc"], h["updated"]) == ("New@Example.com", "new@example.com", str(NOW + S))
    assert await dirty(store, k.account_slot(a.id)) == {f"acct:{a.id}"}
    # the same address again (another spelling): still the account's, nothing else moves
    assert await store.accounts.change_email(a.id, "NEW@example.com", NOW + 2 * S) is Status.OK
    assert await store.redis.hgetall(k.emails) == {"new@example.com": a.id}
    assert await store.redis.hget(k.account(a.id), "email") == "NEW@example.com"


async def test_change_email_to_another_accounts_address_answers_exists(store: Store) -> None:
    k = store.keys
    await register(store, account(1), ("one",))
    await register(store, account(2), ("two",))
    await store.redis.delete(k.dirty(k.account_slot("acct-2")))
    before = await store.redis.hgetall(k.account("acct-2"))
    assert await store.accounts.change_email("acct-2", "USER1@example.com", NOW) is Status.EXISTS
    assert await store.redis.hgetall(k.emails) == {
        "user1@example.com": "acct-1",
        "user2@example.com": "acct-2",
    }
    assert await store.redis.hgetall(k.account("acct-2")) == before
    assert await dirty(store, k.account_slot("acct-2")) == set()


# ---- keys issued before the auth shards ----------------------------------------------------------
def legacy(n: int = 1) -> Account:
    """An account whose key maps to another shard than the account's (issued before the shards)."""
    a = account(n)
    other = (Keys.account_shard(a.id) + 1) % 64
    return msgspec.structs.replace(a, key_sha=sha_in(other, f"old-{n}"))


async def _store_legacy(store: Store, a: Account) -> None:
    """What the layout upgrade writes for such an account: its hash on its shard, its key's map
    entry on the key's shard."""
    k = store.keys
    fields = {f: v for f, v in msgspec.structs.asdict(a).items() if f not in ("partitions", "slug")}
    await store.redis.hset(k.account(a.id), mapping=fields)  # type: ignore[arg-type]
    await store.redis.set(k.cue_partitions(a.id), "")
    await store.redis.hset(k.key_index(a.key_sha), a.key_sha, a.id)


async def test_a_key_from_before_the_shards_authenticates_in_two_steps(store: Store) -> None:
    """The key's shard names the account; its shard answers and counts the key's window there."""
    k, a = store.keys, legacy()
    assert k.key_shard(a.key_sha) != k.account_shard(a.id)
    await _store_legacy(store, a)
    res = await store.accounts.authenticate(a.key_sha, ip=IP, ip_limit=5, month=MONTH, count=True, now_us=NOW)
    assert res.status is Status.OK and res.account is not None and res.account.id == a.id
    assert res.account.partitions == () and res.window == Window(True, 1, 100, NOW)
    assert await store.redis.lrange(k.key_window(k.account_shard(a.id), a.key_sha), 0, -1) == [str(NOW)]


async def test_rotating_a_key_from_before_the_shards_retires_it_on_its_own_shard(store: Store) -> None:
    k, a = store.keys, legacy()
    await _store_legacy(store, a)
    new_sha = sha_of(a.id, "sha-new")
    assert (
        await store.accounts.rotate_key(a.id, a.key_sha, new_sha, "p", "", ttl_ms=DAY_MS, now_us=NOW)
        is Status.OK
    )
    assert await store.redis.hget(k.key_index(a.key_sha), a.key_sha) is None
    assert await store.redis.get(k.rotated_key(a.key_sha)) == a.id
    old = await store.accounts.authenticate(a.key_sha, month=MONTH, count=False, now_us=NOW)
    new = await store.accounts.authenticate(new_sha, month=MONTH, count=False, now_us=NOW)
    assert old.status is Status.ROTATED and new.status is Status.OK


async def test_a_map_entry_the_account_no_longer_holds_answers_rotated(store: Store) -> None:
    """A rotation that stopped after its first step: the account's key_sha is the truth."""
    k, a = store.keys, account()
    await register(store, a)
    new_sha = sha_of(a.id, "sha-new")
    await store.redis.hset(k.account(a.id), "key_sha", new_sha)  # step one of a rotation, alone
    res = await store.accounts.authenticate(a.key_sha, ip=IP, ip_limit=5, month=MONTH, count=True, now_us=NOW)
    assert res.status is Status.ROTATED and res.window == Window(True, 1, 5, NOW)  # the IP's window
    assert await store.redis.llen(k.ip_window(IP)) == 1


async def test_change_email_completes_when_retried_after_a_stop(store: Store) -> None:
    """Reserved but not yet changed (a process stopped after step one): the retry finishes."""
    k, a = store.keys, account()
    await register(store, a)
    await store.redis.hset(k.emails, "new@example.com", a.id)
    assert await store.accounts.change_email(a.id, "new@example.com", NOW) is Status.OK
    assert await store.redis.hgetall(k.emails) == {"new@example.com": a.id}


# ---- accounts_authenticate: a create's name reserved in the same call ------------------------------
async def _auth(store: Store, a: Account, reserve: Reservation | None, *, now: int = NOW) -> AuthResult:
    return await store.accounts.authenticate(
        a.key_sha, ip=IP, ip_limit=5, month=MONTH, count=True, now_us=now, reserve=reserve
    )


async def test_authenticate_reserves_a_creates_name_on_the_accounts_shard(store: Store) -> None:
    k, a = store.keys, account()
    await register(store, a)
    res = await _auth(store, a, Reservation("nightly", "cue_aaaaaaaaaaaa", a.id, True))
    assert res.status is Status.OK and res.reserved == (Status.OK, "")
    held = f"cue_aaaaaaaaaaaa:{NOW // 1_000_000}"
    assert await store.redis.hgetall(k.cue_names(a.id)) == {"nightly": held}
    assert k.cue_names(a.id).startswith(k.account_slot(a.id) + ":")
    # the same cue again: its own name; another cue: the holder, nothing written
    again = await _auth(store, a, Reservation("nightly", "cue_aaaaaaaaaaaa", a.id, True))
    assert again.reserved == (Status.OK, "")
    other = await _auth(store, a, Reservation("nightly", "cue_bbbbbbbbbbbb", a.id, True))
    assert other.reserved == (Status.EXISTS, held)
    assert await store.redis.hgetall(k.cue_names(a.id)) == {"nightly": held}


async def test_authenticate_reservation_asks_for_a_count_at_the_cue_limit_hint(store: Store) -> None:
    k, a = store.keys, account()  # cue_limit 10
    await register(store, a)
    await store.redis.hset(k.cue_names(a.id), mapping={f"n{i}": f"cue_x{i}:1" for i in range(10)})
    res = await _auth(store, a, Reservation("eleventh", "cue_aaaaaaaaaaaa", a.id, True))
    assert res.reserved == (Status.COUNT, "")
    assert await store.redis.hlen(k.cue_names(a.id)) == 10
    unlimited = await _auth(store, a, Reservation("eleventh", "cue_aaaaaaaaaaaa", a.id, False))
    assert unlimited.reserved == (Status.OK, "") and await store.redis.hlen(k.cue_names(a.id)) == 11


async def test_authenticate_reserves_nothing_for_a_refused_request_or_another_account(store: Store) -> None:
    """Over the rate limit (429), an unknown key (401), a cue id drawn for another account (a
    wrong hint): nothing reserved, and the verdicts as without a reservation."""
    k, a = store.keys, account(rate_limit=1)
    await register(store, a)
    wrong = await _auth(store, a, Reservation("x", "cue_aaaaaaaaaaaa", "acct-other", True))
    assert wrong.status is Status.OK and wrong.reserved is None and wrong.window == Window(True, 1, 1, NOW)
    over = await _auth(store, a, Reservation("x", "cue_aaaaaaaaaaaa", a.id, True), now=NOW + 1)
    assert over.window is not None and over.window.counted is False and over.reserved is None
    unknown = msgspec.structs.replace(a, key_sha=sha_of(a.id, "nobody"))
    res = await _auth(store, unknown, Reservation("x", "cue_aaaaaaaaaaaa", a.id, True))
    assert res.status is Status.NOT_FOUND and res.reserved is None
    assert await store.redis.exists(k.cue_names(a.id)) == 0


async def test_a_key_from_before_the_shards_reserves_on_its_accounts_shard(store: Store) -> None:
    k, a = store.keys, legacy()
    await _store_legacy(store, a)
    res = await _auth(store, a, Reservation("nightly", "cue_aaaaaaaaaaaa", a.id, True))
    assert res.status is Status.OK and res.reserved == (Status.OK, "")
    assert await store.redis.hget(k.cue_names(a.id), "nightly") == f"cue_aaaaaaaaaaaa:{NOW // 1_000_000}"


async def test_creates_of_one_iteration_reserve_in_one_call_in_order(
    store: Store, wire_batches: list[list[Sequence[Any]]]
) -> None:
    """``turn_batches``: creates (name reservations) and other requests of one key arriving
    together share one auth call, which counts them and makes the reservations in arrival order
    — exactly what separate calls, one after another, would have answered: the counted creates
    reserve (a second create of one name gets the first's holder), the refused ones reserve
    nothing, a plain request in between is counted in its place."""
    k, a = store.keys, account(rate_limit=5)
    await register(store, a)
    wire_batches.clear()
    asks = [
        Reservation("a", "cue_aaaaaaaaaaaa", a.id, True),
        None,  # a GET
        Reservation("b", "cue_bbbbbbbbbbbb", a.id, True),
        Reservation("a", "cue_cccccccccccc", a.id, True),  # the name the first took
        Reservation("d", "cue_dddddddddddd", "acct-other", True),  # drawn for another account
        Reservation("e", "cue_eeeeeeeeeeee", a.id, True),  # over the rate limit (the 6th)
        None,
    ]
    got = await asyncio.gather(*(_auth(store, a, r) for r in asks))
    assert sum(1 for b in wire_batches for c in b if c[0] == "FCALL") == 1
    held = f"cue_aaaaaaaaaaaa:{NOW // 1_000_000}"
    assert [r.reserved for r in got] == [
        (Status.OK, ""),
        None,
        (Status.OK, ""),
        (Status.EXISTS, held),
        None,
        None,
        None,
    ]
    assert [(r.window.counted, r.window.requests) for r in got if r.window] == [
        *((True, n) for n in range(1, 6)),
        (False, 5),
        (False, 5),
    ]
    assert await store.redis.hgetall(k.cue_names(a.id)) == {
        "a": held,
        "b": f"cue_bbbbbbbbbbbb:{NOW // 1_000_000}",
    }


async def test_creates_of_one_batch_stop_at_the_cue_limit_hint_in_order(store: Store) -> None:
    k, a = store.keys, account()  # cue_limit 10
    await register(store, a)
    await store.redis.hset(k.cue_names(a.id), mapping={f"n{i}": f"cue_x{i}:1" for i in range(8)})
    asks = [Reservation(f"new{i}", f"cue_{i:012d}", a.id, True) for i in range(4)]
    got = await asyncio.gather(*(_auth(store, a, r) for r in asks))
    assert [r.reserved for r in got] == [
        (Status.OK, ""),
        (Status.OK, ""),
        (Status.COUNT, ""),
        (Status.COUNT, ""),
    ]
    assert await store.redis.hlen(k.cue_names(a.id)) == 10
