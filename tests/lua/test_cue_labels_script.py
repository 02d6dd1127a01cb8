"""cues_set_labels against real Redis: the account's label index ('add', 'set', 'set_if'), the
hash that records what the index holds per cue, and the has-key zsets."""

from __future__ import annotations

from cuefast.store import Store
from tests.lua.seed import ACCT, CREATED, CUE, NOW

OTHER = "cue_bbbbbbbbbbbb"


async def index(store: Store) -> dict[str, dict[str, float]]:
    """Every label zset of the account: tail after ``lbl:`` → {cue id: score}."""
    prefix = store.keys.label_index(ACCT, "")
    out: dict[str, dict[str, float]] = {}
    async for key in store.redis.scan_iter(match=prefix + "*", count=1000):
        rows = await store.redis.zrange(key, 0, -1, withscores=True)
        out[str(key)[len(prefix) :]] = {str(m): s for m, s in rows}
    return out


async def test_add_keeps_and_set_replaces(store: Store) -> None:
    cues = store.cues
    await cues.index_labels(ACCT, CUE, CREATED, {"team": "a", "env": "prod"}, NOW, add=True)
    assert await index(store) == {
        "team=a": {CUE: CREATED},
        "team": {CUE: CREATED},
        "env=prod": {CUE: CREATED},
        "env": {CUE: CREATED},
    }
    assert await cues.indexed_labels(ACCT, [CUE]) == [f"{NOW},env=prod,team=a"]
    # 'add' before a write that changes team=a → team=b: both are indexed meanwhile
    await cues.index_labels(ACCT, CUE, CREATED, {"team": "b"}, NOW + 1, add=True)
    got = await index(store)
    assert set(got) == {"team=a", "team=b", "team", "env=prod", "env"}
    # 'set' after the write: exactly the cue's labels; the has-key zset keeps a key still held
    await cues.index_labels(ACCT, CUE, CREATED, {"team": "b"}, NOW + 2, add=False)
    assert await index(store) == {"team=b": {CUE: CREATED}, "team": {CUE: CREATED}}
    assert await cues.indexed_labels(ACCT, [CUE, OTHER]) == [f"{NOW + 2},team=b", None]
    # candidates: AND of the zsets, newest first
    await cues.index_labels(ACCT, OTHER, CREATED + 5, {"team": "b", "x": ""}, NOW, add=True)
    assert await cues.label_candidates(ACCT, [("team", "b")]) == [OTHER, CUE]
    assert await cues.label_candidates(ACCT, [("team", None), ("x", "")]) == [OTHER]
    assert await cues.label_candidates(ACCT, [("team", "a")]) == []
    # 'set' to nothing removes every entry and the record
    await cues.index_labels(ACCT, CUE, CREATED, {}, NOW + 3, add=False)
    assert await cues.indexed_labels(ACCT, [CUE]) == [None]
    assert await cues.label_candidates(ACCT, [("team", "b")]) == [OTHER]


async def test_set_if_repairs_only_what_it_read(store: Store) -> None:
    cues = store.cues
    await cues.index_labels(ACCT, CUE, CREATED, {"team": "a"}, NOW, add=True)
    seen = f"{NOW},team=a"
    # a write since the read (the value moved): the repair does nothing
    await cues.index_labels(ACCT, CUE, CREATED, {"team": "c"}, NOW + 1, add=True)
    await cues.repair_labels(ACCT, [(CUE, CREATED, seen, {})], NOW + 2)
    assert await cues.label_candidates(ACCT, [("team", "c")]) == [CUE]
    # unchanged since the read: the index holds exactly the cue's labels ({} = a deleted cue)
    seen = (await cues.indexed_labels(ACCT, [CUE]))[0]
    assert seen is not None
    await cues.repair_labels(ACCT, [(CUE, CREATED, seen, {"team": "a"})], NOW + 3)
    assert await index(store) == {"team=a": {CUE: CREATED}, "team": {CUE: CREATED}}
    seen = (await cues.indexed_labels(ACCT, [CUE]))[0]
    assert seen is not None
    await cues.repair_labels(ACCT, [(CUE, CREATED, seen, {})], NOW + 4)
    assert await index(store) == {}
    assert await cues.indexed_labels(ACCT, [CUE]) == [None]
