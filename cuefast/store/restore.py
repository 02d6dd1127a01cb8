"""Restore: a snapshot written back into an empty keyspace (``cuefast restore``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from cuefast.store.keys import AUTH_SHARDS
from cuefast.store.repository import Repository
from cuefast.store.scripts import Script

CUES = Script("restore_cues", keys=("due",), argv=("prefix",), rest="cues")
EXECUTIONS = Script("restore_executions", keys=("outbox",), argv=("now", "prefix"), rest="executions")


class RestoredAlert(NamedTuple):
    """An alert hash to write back on its execution's partition."""

    partition: int
    alert_id: str
    doc: dict[str, Any]


class Restore(Repository):
    SCRIPTS = (CUES, EXECUTIONS)

    async def keyspace_empty(self) -> bool:
        """No tenant data under this install's prefix (restore refuses to write over data): no
        account maps, and no partition with due times, an outbox or unsnapshotted changes. Keys a
        running API writes on its own (rate-limit windows, meta, the poller) do not count."""
        k = self.keys
        names = [k.emails, k.slugs, k.auth + ":keys", k.auth + ":dirty"]  # the latter two: before the shards
        for n in range(AUTH_SHARDS):
            names += [k.api_keys(n), k.dirty(k.shard(n))]
        for p in range(k.partitions):
            names += [k.due(p), k.outbox(p), k.dirty(k.part(p)), k.retries(p), k.delayed(p)]
        return int(await self.redis.exists(*names)) == 0

    async def accounts(self, docs: Sequence[Mapping[str, str]]) -> None:
        """Account hashes (their shards) with their key-hash (the key's shard), e-mail and slug maps
        (global auth slot), one pipeline. Their cue-partition bitmaps are backfilled once the
        cues and executions are back (``AccountLayout.backfill_cue_partitions``)."""
        k = self.keys
        async with self.wire.pipeline() as pipe:
            for h in docs:
                aid = h["id"]
                pipe.hset(k.account(aid), mapping=dict(h))
                pipe.hset(k.key_index(h["key_sha"]), {h["key_sha"]: aid})
                pipe.hset(k.emails, {h["email_lc"]: aid})
                if h.get("slug"):
                    pipe.hset(k.slugs, {h["slug"]: aid})
            await pipe.execute()

    async def cues(self, batches: Sequence[tuple[int, Sequence[tuple[str, str]]]]) -> int:
        """Cue hashes (id, JSON) with their indexes; (partition, rows) per script call, one
        round trip. Returns the number written."""
        k = self.keys
        calls = []
        for p, rows in batches:
            args: list[str] = [k.part(p) + ":"]
            for cue_id, doc in rows:
                args += [cue_id, doc]
            calls.append((CUES, [k.due(p)], args))
        return sum(int(n) for n in await self.scripts.run_many(calls))

    async def names(self, names: Mapping[str, Mapping[str, str]]) -> None:
        """Cue-name reservations, {account id: {name: "<cue id>:<reserved at>"}}, one pipeline."""
        async with self.wire.pipeline() as pipe:
            for account_id, mapping in names.items():
                pipe.hset(self.keys.cue_names(account_id), mapping=dict(mapping))
            await pipe.execute()

    async def executions(
        self,
        batches: Sequence[tuple[int, Sequence[str]]],
        now_us: int,
        claimed: list[tuple[str, str, str, int]] | None = None,
    ) -> int:
        """Execution hashes (JSON) with their indexes; (partition, docs) per script call, one
        round trip. Returns the number written; the worker executions restored as claimed are
        added to ``claimed`` as (account id, execution id, task, lease expiry µs)."""
        k = self.keys
        res = await self.scripts.run_many(
            [(EXECUTIONS, [k.outbox(p)], [now_us, k.part(p) + ":", *docs]) for p, docs in batches]
        )
        for r in res:
            if claimed is not None:
                claimed += [
                    (str(r[i]), str(r[i + 1]), str(r[i + 2]), int(r[i + 3])) for i in range(1, len(r), 4)
                ]
        return sum(int(r[0]) for r in res)

    async def alerts(self, alerts: Sequence[RestoredAlert]) -> None:
        """Alert hashes with the account's indexes (all, and of the alert's type), one pipeline."""
        k = self.keys
        async with self.wire.pipeline() as pipe:
            for a in alerts:
                acct, created = str(a.doc.get("acct", "")), int(a.doc.get("ca", 0))
                pipe.hset(k.alert(a.partition, a.alert_id), mapping=a.doc)
                pipe.zadd(k.alert_index(a.partition, acct), {a.alert_id: created})
                pipe.zadd(k.alert_index(a.partition, acct, str(a.doc.get("type", ""))), {a.alert_id: created})
            await pipe.execute()
