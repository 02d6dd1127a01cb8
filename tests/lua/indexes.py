"""The execution listing indexes (``lua/lib/exec_index.lua``) recomputed from the execution hashes
and compared with what Redis holds: every script test ends with this check, so a script that
changes an indexed field without ``exec_reindex`` (or deletes without ``exec_unindex``) fails."""

from __future__ import annotations

from collections import defaultdict

from cuefast.store import Store
from cuefast.store.executions import index_member, index_members


def registries(store: Store, p: int, h: dict[str, str]) -> list[str]:
    """The registries an execution hash belongs to (as the Lua lib names them, via ``Keys``)."""
    k = store.keys
    regs = [k.ix_account(p, h["acct"]), k.ix_cue(h["cue"])]
    if h.get("cw"):
        regs += [k.ix_worker(p, h["acct"], h["cw"]), k.ix_cue_worker(h["cue"], h["cw"])]
    return regs


async def assert_indexed(store: Store) -> None:
    k = store.keys
    want: dict[str, dict[str, float]] = defaultdict(dict)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for p in range(k.partitions):
        part = k.part(p) + ":exec:"
        async for key in store.redis.scan_iter(match=part + "*", count=1000):
            h = {str(a): str(b) for a, b in (await store.redis.hgetall(key)).items()}
            if "acct" not in h or "cue" not in h:
                continue
            eid = str(key)[len(part) :]
            cell = f"{h.get('st', '')}|{h.get('os', '')}|{h.get('tb', '')}"
            ix = f"{cell}|{'1' if h.get('cla') else ''}|{h.get('cw', '')}"
            assert h.get("ix") == ix, f"{eid}: indexed as {h.get('ix')!r}, its fields say {ix!r}"
            for reg in registries(store, p, h):
                want[f"{reg}|z|{cell}"][eid] = float(h.get("ca", 0))
                counts[reg][cell] += 1
                if h.get("cla"):
                    want[f"{reg}|c|{cell}"][eid] = float(h["cla"])
                    counts[reg][f"#{cell}"] += 1
    have: dict[str, dict[str, float]] = {}
    have_counts: dict[str, dict[str, int]] = {}
    bounds: dict[str, dict[str, float]] = {}
    async for found in store.redis.scan_iter(match=f"{k.prefix}:*:ix:*", count=1000):
        key = str(found)
        if key.endswith("|b"):
            bounds[key[:-2]] = {
                str(m): float(sc) for m, sc in await store.redis.zrange(key, 0, -1, withscores=True)
            }
        elif await store.redis.type(key) == "zset":
            have[key] = dict(await index_members(store.redis, key))
        else:
            have_counts[key] = {str(c): int(n) for c, n in (await store.redis.hgetall(key)).items()}
    assert have == dict(want)
    assert have_counts == {reg: dict(c) for reg, c in counts.items()}
    assert_bounded(want, counts, bounds)


def assert_bounded(
    want: dict[str, dict[str, float]], counts: dict[str, dict[str, int]], bounds: dict[str, dict[str, float]]
) -> None:
    """Every cell of an account's or a worker's registry has bounds that hold: "z<cell>" no older
    than its newest created, "c<cell>" (negated) no later than its oldest claimed_at; no bound for
    a cell that is gone, no bounds key for another registry."""
    for reg, found in bounds.items():
        assert ":ix:a:" in reg or ":ix:w:" in reg, f"bounds of {reg}"
        assert found, f"{reg}|b is empty"
        for member in found:
            field = ("#" if member[0] == "c" else "") + member[1:]
            assert field in counts.get(reg, {}), f"{reg}: bound {member} of no cell"
    for reg, cells in counts.items():
        if ":ix:a:" not in reg and ":ix:w:" not in reg:
            continue
        for field in cells:
            cell = field.removeprefix("#")
            if field.startswith("#"):
                oldest = min(want[f"{reg}|c|{cell}"].values())
                assert -bounds[reg][f"c{cell}"] <= oldest, f"{reg} {field}"
            else:
                newest = max(want[f"{reg}|z|{cell}"].values())
                assert bounds[reg][f"z{cell}"] >= newest, f"{reg} {field}"


async def listed(store: Store, acct: str, eid: str, cue_id: str | None = None) -> float | None:
    """The created µs the account's listing index (the cue's, with ``cue_id``) holds for an
    execution (None: not listed)."""
    k = store.keys
    p = k.execution_partition(eid)
    assert p is not None
    reg = k.ix_account(p, acct) if cue_id is None else k.ix_cue(cue_id)
    for cell in await store.redis.hkeys(reg):
        score = await store.redis.zscore(f"{reg}|z|{cell}", index_member(eid))
        if score is not None:
            return float(score)
    return None


async def unindex(store: Store, eid: str) -> None:
    """Take an execution out of the listing indexes as ``exec_unindex`` does (a test that then
    deletes or rewrites its hash by hand leaves no stale entry behind)."""
    k = store.keys
    p = k.execution_partition(eid)
    assert p is not None
    key = k.execution(p, eid)
    h = {str(a): str(b) for a, b in (await store.redis.hgetall(key)).items()}
    st, os_, tb, cla, _ = h["ix"].split("|", 4)
    cell = f"{st}|{os_}|{tb}"
    for reg in registries(store, p, h):
        await store.redis.zrem(f"{reg}|z|{cell}", index_member(eid))
        if await store.redis.hincrby(reg, cell, -1) <= 0:
            await store.redis.hdel(reg, cell)
            await store.redis.zrem(f"{reg}|b", f"z{cell}")
        if (
            cla
            and await store.redis.zrem(f"{reg}|c|{cell}", index_member(eid))
            and await store.redis.hincrby(reg, f"#{cell}", -1) <= 0
        ):
            await store.redis.hdel(reg, f"#{cell}")
            await store.redis.zrem(f"{reg}|b", f"c{cell}")
    await store.redis.hdel(key, "ix")
