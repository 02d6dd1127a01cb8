"""Accounts' layout upgrades: accounts and cue names to the auth shards, bitmap backfill."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from cuefast.store.keys import CUE_STATUSES
from cuefast.store.repository import Repository, pairs
from cuefast.store.scripts import Script

READ = Script("accounts_upgrade_read", keys=("keys",), argv=("prefix",), rest="account_ids")
ADOPT = Script("accounts_adopt", keys=("account", "cue_partitions"), argv=("partitions",), rest="fields")
BACKFILL = Script(
    "accounts_backfill_partitions", keys=("cue_partitions",), argv=("create",), rest="partitions"
)
BATCH = 500


class AccountLayout(Repository):
    SCRIPTS = (READ, ADOPT, BACKFILL)

    async def upgrade(self) -> int:
        """Move every account of the layout before the auth shards (``<pfx>:{auth}:acct:<id>``,
        its bitmap, its key-map entry, rotated-key markers and rate-limit windows) to its shard;
        accounts without a bitmap get one (``backfill_cue_partitions``). Idempotent: processes
        starting together may both run it, and an account already on its shard is left as it
        is. Each moved account is marked dirty on its shard (the snapshot reads it from there);
        the old keys and the old slot's dirty sets are dropped last. The number moved."""
        k = self.keys
        old = k.auth + ":"
        legacy_keys = old + "keys"
        n = 0
        ids: list[str] = []
        async for key in self.redis.scan_iter(match=old + "acct:*", count=1000):
            ids.append(str(key)[len(old) + 5 :])
            if len(ids) == BATCH:
                n += await self._move(legacy_keys, old, ids)
                ids = []
        n += await self._move(legacy_keys, old, ids)
        async for key in self.redis.scan_iter(match=old + "rot:*", count=1000):
            sha = str(key)[len(old) + 4 :]
            value, ttl = await self.redis.get(key), int(await self.redis.pttl(key))
            if value is not None and ttl > 0:
                await self.redis.set(k.rotated_key(sha), value, px=ttl, nx=True)
        async for key in self.redis.scan_iter(match=old + "rl:*", count=1000):
            await self._move_window(legacy_keys, old, str(key))
        drop: list[str] = [legacy_keys, old + "dirty", old + "dirty:proc"]
        for pattern in ("acct:*", "cparts:*", "rot:*", "rl:*"):
            drop += [str(key) async for key in self.redis.scan_iter(match=old + pattern, count=1000)]
        for i in range(0, len(drop), 1000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in drop[i : i + 1000]:
                    pipe.delete(key)
                await pipe.execute()
        return n

    async def move_names(self) -> int:
        """Move every account's cue-names hash of the layout before 4 (``<pfx>:{a:<id>}:names``)
        to its auth shard (``Keys.cue_names``), where the auth script reserves a create's name.
        Merged, never overwritten: a name the new hash already holds (reserved by a process
        already upgraded) keeps its value; the old hash is dropped after. Idempotent (processes
        starting together may both run it). Processes of the previous version must be stopped
        first: a name one of them reserves in the old hash after the move is not seen. The
        number of hashes moved."""
        k = self.keys
        head, tail = f"{k.prefix}:{{a:", "}:names"
        n = 0
        match = re.sub(r"([*?\[\]\\])", r"\\\1", head) + "*" + tail  # the prefix's glob characters escaped
        async for found in self.redis.scan_iter(match=match, count=1000):
            key = str(found)
            aid = key[len(head) : -len(tail)]
            if not aid or "}" in aid or key != k.legacy_cue_names(aid):
                continue
            names = await self.redis.hgetall(key)
            if names:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for name, value in names.items():
                        pipe.hsetnx(k.cue_names(aid), name, value)
                    await pipe.execute()
            await self.redis.delete(key)
            n += 1
        return n

    async def _move(self, legacy_keys: str, old: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        k = self.keys
        rows = await self.scripts.run(READ, [legacy_keys], [old, *ids])
        untracked: list[str] = []
        calls = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for row in rows:
                aid, parts, flat = str(row[0]), str(row[1]), [str(v) for v in row[2:]]
                fields = dict(zip(flat[0::2], flat[1::2], strict=True))
                calls.append((ADOPT, [k.account(aid), k.cue_partitions(aid)], [parts, *pairs(fields)]))
                if fields.get("key_sha"):
                    pipe.hset(k.key_index(fields["key_sha"]), fields["key_sha"], aid)
                if parts == "*":
                    untracked.append(aid)
            await pipe.execute()
        moved = sum(int(r) for r in await self.scripts.run_many(calls))
        await self.backfill_cue_partitions(untracked)
        return moved

    async def _move_window(self, legacy_keys: str, old: str, key: str) -> None:
        """One rate-limit window (``rl:k:<sha>`` or ``rl:ip:<ip>``) to its shard, unless it has one."""
        k = self.keys
        tail = key[len(old) :]
        if tail.startswith("rl:k:"):
            sha = tail[5:]
            aid = await self.redis.hget(legacy_keys, sha)
            if aid is None:
                return
            target = k.key_window(k.account_shard(str(aid)), sha)
        elif tail.startswith("rl:ip:"):
            target = k.ip_window(tail[6:])
        else:
            return
        times, ttl = await self.redis.lrange(key, 0, -1), int(await self.redis.pttl(key))
        if times and ttl > 0 and not await self.redis.exists(target):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(target, *times)
                pipe.pexpire(target, ttl)
                await pipe.execute()

    async def backfill_cue_partitions(self, account_ids: Iterable[str]) -> int:
        """Give each account without a cue-partition bitmap one, naming the partitions its cue
        indexes or execution registries are on (issue 14: an account older than the bitmap, or
        restored, listed every partition). The empty bitmap is made first, so a cue created
        meanwhile sets its own bit; the partitions are read after. The number backfilled."""
        k = self.keys
        ids = list(dict.fromkeys(account_ids))
        done = 0
        for i in range(0, len(ids), BATCH):
            batch = ids[i : i + BATCH]
            made = await self.scripts.run_many([(BACKFILL, [k.cue_partitions(a)], [1]) for a in batch])
            todo = [a for a, m in zip(batch, made, strict=True) if int(m) == 1]
            if not todo:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for a in todo:
                    for p in range(k.partitions):
                        pipe.exists(*(k.cue_index(p, a, st) for st in CUE_STATUSES), k.ix_account(p, a))
                found = await pipe.execute()
            calls = []
            for j, a in enumerate(todo):
                row = found[j * k.partitions : (j + 1) * k.partitions]
                parts = [p for p, n in enumerate(row) if int(n)]
                if parts:
                    calls.append((BACKFILL, [k.cue_partitions(a)], [0, *parts]))
            if calls:
                await self.scripts.run_many(calls)
            done += len(todo)
        return done
