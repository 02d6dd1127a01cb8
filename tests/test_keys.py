"""Keyspace: partitions, hash tags, and one hash slot per script call (DESIGN.md §3.7)."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import pytest
from redis.crc import key_slot

from cuefast.ids import (
    is_cue_id,
    new_cue_id,
    new_execution_id,
    scheduled_execution_id,
    scheduled_execution_id_member,
)
from cuefast.store import Store
from cuefast.store.executions import index_member
from cuefast.store.keys import CUE_SPREAD, Keys
from cuefast.store.scripts import Script, Scripts
from tests.api.test_cues import create, webhook_cue
from tests.conftest import WIRE_SLOT_ERRORS, Api, several_slots


def test_execution_ids_carry_their_partition() -> None:
    keys = Keys("cf", 16)
    for p in range(16):
        eid = new_execution_id(p)
        assert keys.execution_partition(eid) == p
        sid = scheduled_execution_id("cue_abcdefghijkl", 1_795_434_120_000_000, p)
        assert keys.execution_partition(sid) == p
        assert sid == scheduled_execution_id("cue_abcdefghijkl", 1_795_434_120_000_000, p)
        for slot in (1, 1_795_434_120_000_000 + p):  # the scheduler's pair: the same id, its member
            sid = scheduled_execution_id("cue_abcdefghijkl", slot, p)
            assert scheduled_execution_id_member("cue_abcdefghijkl", slot, p) == (sid, index_member(sid))
    assert scheduled_execution_id("cue_a", 1, 0) != scheduled_execution_id("cue_a", 2, 0)
    for bad in ("nope", "ZZZZZZZZ-0000-0000-0000-000000000000", ""):
        assert keys.execution_partition(bad) is None
    assert keys.execution_partition("00000000-0000-0000-0000-0000000000ff") == 15  # the byte modulo P


@pytest.mark.parametrize("partitions", [1, 4, 16, 64, 128, 256])
def test_an_id_names_its_cues_partition_under_every_power_of_two(partitions: int) -> None:
    """The byte is crc32 % 256: an id made under any power-of-two count names its cue's partition
    under every other (what lets ``cuefast repartition`` keep ids); another count: the partition."""
    keys = Keys("cf", partitions)
    for cue_id in [new_cue_id() for _ in range(300)]:
        eid = new_execution_id(keys.cue_byte(cue_id))
        for other in (1, 2, 16, 64, 256):
            assert Keys("cf", other).execution_partition(eid) == Keys("cf", other).cue_partition(cue_id)
    odd = Keys("cf", 10)
    cue_id = new_cue_id()
    assert odd.cue_byte(cue_id) == odd.cue_partition(cue_id)
    assert odd.execution_partition(new_execution_id(odd.cue_byte(cue_id))) == odd.cue_partition(cue_id)


@pytest.mark.parametrize("partitions", [1, 16])
def test_cue_partitions_spread_and_are_stable(partitions: int) -> None:
    keys = Keys("cf", partitions)
    ids = [new_cue_id() for _ in range(2000)]
    parts = {keys.cue_partition(i) for i in ids}
    assert parts == set(range(partitions))
    assert all(keys.cue_partition(i) == keys.cue_partition(i) for i in ids[:10])
    assert all(keys.cue(i).startswith(keys.part(keys.cue_partition(i))) for i in ids[:50])


def test_new_cue_ids_are_well_formed_unique_and_uniform() -> None:
    """``cue_`` + 12 of [a-z0-9], each character uniform over the 36 (chi-square over 24,000
    draws: ``byte % 36`` without the rejection, +14 % on 4 characters, gives ~560)."""
    ids = [new_cue_id() for _ in range(24_000)]
    assert all(is_cue_id(i) for i in ids) and len(set(ids)) == len(ids)
    counts = Counter(c for i in ids for c in i[4:])
    expected = len(ids) * 12 / 36
    chi2 = sum((counts[c] - expected) ** 2 / expected for c in "abcdefghijklmnopqrstuvwxyz0123456789")
    assert chi2 < 80  # 35 degrees of freedom: p < 1e-5 that a uniform draw exceeds it


async def test_every_script_call_touches_one_slot(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []
    original = Scripts.run

    async def spy(self: Scripts, script: Script, keys: Any, args: Any) -> Any:
        calls.append((script.name, list(keys)))
        return await original(self, script, keys, args)

    monkeypatch.setattr(Scripts, "run", spy)
    key = await api.register()
    a = await create(api, key, webhook_cue("a"))
    await api.request("PATCH", f"/v1/cues/{a['id']}", key, json={"name": "b", "status": "paused"})
    await api.request("PATCH", "/v1/auth/me", key, json={"email": "new@example.com"})
    res = await api.request("POST", "/v1/auth/key/regenerate", key, headers={"X-Confirm-Destructive": "true"})
    res = await api.request("DELETE", f"/v1/cues/{a['id']}", res.json()["api_key"])
    assert res.status_code == 204
    seen = {name for name, _ in calls}
    assert {
        "accounts_authenticate",
        "accounts_register",
        "cues_reserve_name",
        "cues_create",
        "cues_update",
        "cues_release_name",
        "cues_delete",
        "accounts_change_email",
        "accounts_rotate_key",
    } <= seen
    for name, ks in calls:
        slots = {key_slot(k.encode()) for k in ks}
        assert len(slots) == 1, (name, ks)


async def test_a_wire_command_over_several_slots_is_caught(api: Api) -> None:
    """The suite's guard (``conftest._one_slot_per_wire_command``) records a wire command whose
    keys span slots — which Redis Cluster refuses (CROSSSLOT) — and passes one slot's keys."""
    keys = api.rt.store.keys
    one = keys.part(0) + ":x", keys.part(0) + ":y"
    two = keys.part(0) + ":x", keys.part(1) + ":x"
    assert several_slots(("DEL", *one)) == [] and several_slots(("DEL", *two)) == list(two)
    assert await api.rt.store.scripts.wire.execute([("EXISTS", *one)]) == [0]
    assert WIRE_SLOT_ERRORS == []
    await api.rt.store.scripts.wire.execute([("EXISTS", *two)])  # one Redis answers; a cluster would not
    assert [f"EXISTS touches several hash slots: {list(two)}"] == WIRE_SLOT_ERRORS
    WIRE_SLOT_ERRORS.clear()


async def test_partition_count_is_fixed_once_data_exists(api: Api) -> None:
    from cuefast.errors import ConfigError

    other = Store(api.rt.store.redis, Keys(api.rt.keys.prefix, api.rt.keys.partitions + 1))
    with pytest.raises(ConfigError, match="CUEFAST_PARTITIONS"):
        await other.system.check_partitions()


@pytest.mark.parametrize("partitions", [16, 64, 128, 256])
def test_an_accounts_cue_ids_fall_on_eight_partitions(partitions: int) -> None:
    """``Keys.cue_group``: every id drawn for an account is on one of its CUE_SPREAD
    partitions, each of them is reached, and the ids stay well-formed and unique, their
    characters uniform (the last one is chosen among those that fit the group)."""
    keys = Keys("cf", partitions)
    for account in ("acct_a", "acct_b", "acct_c"):
        group = keys.cue_group(account)
        assert group is not None
        ids = [new_cue_id(group) for _ in range(3000)]
        assert all(is_cue_id(i) for i in ids) and len(set(ids)) == len(ids)
        parts = Counter(keys.cue_partition(i) for i in ids)
        assert len(parts) == CUE_SPREAD and min(parts.values()) > 3000 / CUE_SPREAD / 2
        counts = Counter(c for i in ids for c in i[4:])
        expected = len(ids) * 12 / 36
        assert sum((counts[c] - expected) ** 2 / expected for c in counts) < 80


def test_no_cue_group_where_it_would_not_narrow() -> None:
    assert Keys("cf", 8).cue_group("acct_a") is None  # P ≤ CUE_SPREAD: every partition anyway
    assert Keys("cf", 1).cue_group("acct_a") is None
    assert Keys("cf", 24).cue_group("acct_a") is None  # not a power of two


async def test_an_accounts_cues_mark_at_most_eight_partitions(api: Api) -> None:
    """Creating many cues sets at most CUE_SPREAD bits of the account's bitmap (listings read
    only those partitions), and every cue is on a marked one."""
    key = await api.register()
    ids = [(await create(api, key, webhook_cue(f"c{i}")))["id"] for i in range(40)]
    store = api.rt.store
    k = store.keys
    account_id = await store.accounts.account_of_key(hashlib.sha256(key.encode()).hexdigest())
    assert account_id is not None
    bits = {p for p in range(k.partitions) if await store.redis.getbit(k.cue_partitions(account_id), p)}
    assert {k.cue_partition(i) for i in ids} <= bits
    assert len(bits) <= min(CUE_SPREAD, k.partitions)
