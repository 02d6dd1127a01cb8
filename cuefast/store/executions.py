"""Executions: manual fires and replays, reads and listings, compare-and-set, a deleted cue's purge."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from cuefast.store.repository import Repository, pairs
from cuefast.store.scripts import Script
from cuefast.store.status import Status

CREATE = Script(
    "executions_create",
    keys=("execution", "cue", "cue_executions", "index", "outbox", "delayed", "work", "idempotency"),
    argv=(
        "now",
        "execution_id",
        "account_id",
        "scheduled_for",
        "payload",
        "triggered_by",
        "replayed_from",
        "fingerprint",
        "response",
        "ttl_ms",
    ),
)
CAS = Script("executions_cas", keys=("execution",), argv=("outcome", "outcome_state"), rest="fields")
PURGE_CUE = Script(
    "executions_purge_cue",
    keys=("cue_executions", "index", "leases", "retries", "delayed", "work"),
    argv=("prefix", "batch"),
)
CUES = Script("executions_cues", keys=("index",), argv=("prefix", "account_id"), rest="execution_ids")

Execution = dict[str, str]
"""an execution hash (fields named in cuefast/services/executions.py)"""


class Created(NamedTuple):
    """``executions.create``: OK | REPEAT (``detail``: the remembered response JSON) | CONFLICT
    (``detail``: the execution the idempotency key made) | NOT_FOUND (no such cue)."""

    status: Status
    detail: str


class ExecutionCue(NamedTuple):
    cue_id: str
    created_us: int


class Executions(Repository):
    SCRIPTS = (CREATE, CAS, PURGE_CUE, CUES)

    def _key(self, execution_id: str) -> str:
        """The hash key of an id (a malformed id: a key on partition 0 that cannot exist)."""
        p = self.keys.execution_partition(execution_id)
        return self.keys.execution(p if p is not None else 0, execution_id)

    async def create(
        self,
        *,
        execution_id: str,
        cue_id: str,
        account_id: str,
        scheduled_us: int,
        payload_json: str,
        triggered_by: str,
        replayed_from: str = "",
        idem_digest: str = "",
        fingerprint: str = "",
        response_json: str = "",
        idem_ttl_ms: int = 24 * 3600 * 1000,
        now_us: int,
    ) -> Created:
        """A manual fire or replay, queued (``fingerprint`` "": no idempotency key)."""
        k = self.keys
        p = k.cue_partition(cue_id)
        res = await self.scripts.run(
            CREATE,
            [
                k.execution(p, execution_id),
                k.cue(cue_id),
                k.cue_executions(cue_id),
                k.execution_index(p, account_id),
                k.outbox(p),
                k.delayed(p),
                k.work(p, account_id),
                k.idempotency(cue_id, idem_digest),
            ],
            [
                now_us,
                execution_id,
                account_id,
                scheduled_us,
                payload_json,
                triggered_by,
                replayed_from,
                fingerprint,
                response_json,
                idem_ttl_ms,
            ],
        )
        return Created(Status(int(res[0])), str(res[1]) if len(res) > 1 else "")

    async def cas(
        self, execution_id: str, expected_outcome: str, expected_state: str, fields: Mapping[str, str | int]
    ) -> Status:
        """Set ``fields`` only if the outcome and outcome_state are still the expected ones: OK |
        CONFLICT (re-read and retry) | NOT_FOUND."""
        p = self.keys.execution_partition(execution_id)
        if p is None:
            return Status.NOT_FOUND
        res = await self.scripts.run(
            CAS, [self.keys.execution(p, execution_id)], [expected_outcome, expected_state, *pairs(fields)]
        )
        return Status(int(res))

    async def get(self, execution_id: str) -> Execution | None:
        p = self.keys.execution_partition(execution_id)
        if p is None:
            return None
        data = await self.redis.hgetall(self.keys.execution(p, execution_id))
        return {str(k): str(v) for k, v in data.items()} or None

    async def get_many(self, execution_ids: Sequence[str]) -> list[Execution | None]:
        if not execution_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for eid in execution_ids:
                pipe.hgetall(self._key(eid))
            rows = await pipe.execute()
        return [{str(k): str(v) for k, v in row.items()} or None for row in rows]

    async def exists(self, execution_id: str) -> bool:
        p = self.keys.execution_partition(execution_id)
        if p is None:
            return False
        return bool(await self.redis.exists(self.keys.execution(p, execution_id)))

    async def fields(
        self, execution_ids: Sequence[str], fields: Sequence[str]
    ) -> list[dict[str, str | None] | None]:
        """``fields`` of each execution (None where it is gone), pipelined in chunks."""
        out: list[dict[str, str | None] | None] = []
        for i in range(0, len(execution_ids), 1000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for eid in execution_ids[i : i + 1000]:
                    pipe.hmget(self._key(eid), list(fields))
                rows = await pipe.execute()
            for row in rows:
                out.append(
                    None
                    if all(v is None for v in row)
                    else {f: None if v is None else str(v) for f, v in zip(fields, row, strict=True)}
                )
        return out

    def _indexes(self, account_id: str, cue_id: str | None) -> list[str]:
        k = self.keys
        if cue_id is not None:
            return [k.cue_executions(cue_id)]
        return [k.execution_index(p, account_id) for p in range(k.partitions)]

    async def page(
        self, account_id: str, offset: int, limit: int, also: Sequence[Callable[[Any], None]] = ()
    ) -> tuple[list[str], int, list[Any]]:
        """A page of the account's execution ids, newest first (ties: id descending), and the
        total: each partition's index contributes its newest ``offset + limit`` members. Each of
        ``also`` queues more reads on the same pipeline (another repository's ``queue_…``); their
        replies come back third, in order: one round trip for the whole listing's reads."""
        depth = offset + limit
        indexes = self._indexes(account_id, None)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in indexes:
                pipe.zrevrange(key, 0, depth - 1, withscores=True)
                pipe.zcard(key)
            for queue in also:
                queue(pipe)
            res = await pipe.execute()
        merged: list[tuple[float, str]] = []
        total = 0
        for i in range(0, 2 * len(indexes), 2):
            merged.extend((float(score), str(member)) for member, score in res[i])
            total += int(res[i + 1])
        merged.sort(reverse=True)
        return [member for _, member in merged[offset:depth]], total, res[2 * len(indexes) :]

    async def members(self, account_id: str, cue_id: str | None = None) -> list[tuple[float, str]]:
        """Every execution of the account (of one cue, whatever its account, when ``cue_id`` is
        given) as (created µs, id), newest first (ties: id descending)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self._indexes(account_id, cue_id):
                pipe.zrange(key, 0, -1, withscores=True)
            res = await pipe.execute()
        merged = [(float(row[1]), str(row[0])) for rows in res for row in rows]
        merged.sort(reverse=True)
        return merged

    async def cues(self, account_id: str, execution_ids: Sequence[str]) -> dict[str, ExecutionCue]:
        """The cue and created time of each of the account's executions (absent: not found), one
        script per partition, one round trip."""
        k = self.keys
        by_p: dict[int, list[str]] = {}
        for eid in execution_ids:
            p = k.execution_partition(eid)
            if p is not None:
                by_p.setdefault(p, []).append(eid)
        parts = list(by_p.items())
        res = await self.scripts.run_many(
            [
                (CUES, [k.execution_index(p, account_id)], [k.part(p) + ":", account_id, *ids])
                for p, ids in parts
            ]
        )
        out: dict[str, ExecutionCue] = {}
        for (_, ids), rows in zip(parts, res, strict=True):
            for eid, row in zip(ids, rows, strict=True):
                if row:
                    cue, _, created = str(row).partition(" ")
                    out[eid] = ExecutionCue(cue, int(float(created)))
        return out

    async def purge_cue(self, cue_id: str, account_id: str, batch: int = 500) -> int:
        """Remove a deleted cue's executions in bounded batches."""
        k = self.keys
        p = k.cue_partition(cue_id)
        keys = [
            k.cue_executions(cue_id),
            k.execution_index(p, account_id),
            k.leases(p),
            k.retries(p),
            k.delayed(p),
            k.work(p, account_id),
        ]
        removed = 0
        while True:
            n = int(await self.scripts.run(PURGE_CUE, keys, [k.part(p) + ":", batch]))
            removed += n
            if n < batch:
                return removed
