"""Executions: manual fires and replays, reads and listings, compare-and-set, a deleted cue's purge."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec
import redis.asyncio as aioredis
from redis.client import NEVER_DECODE

from cuefast.store.batch import Batch
from cuefast.store.repository import Repository, pairs
from cuefast.store.scripts import Arg, Call, Script
from cuefast.store.status import Status
from cuefast.store.turn_batches import Batches

CREATE = Script(
    "executions_create", keys=("cue", "outbox", "delayed", "work"), argv=("now", "account_id"), rest="creates"
)
CAS = Script(
    "executions_cas", keys=("execution",), argv=("outcome", "outcome_state", "alert_at"), rest="fields"
)
PURGE_CUE = Script(
    "executions_purge_cue",
    keys=("registry", "leases", "retries", "delayed", "work"),
    argv=("prefix", "batch"),
)
CUES = Script("executions_cues", keys=("registry",), argv=("prefix", "account_id"), rest="execution_ids")
LIST = Script(
    "executions_list",
    keys=("registry",),
    argv=("depth", "outcome_state", "triggered_by", "rows", "rows_from", "after"),
    rest="statuses",
)
REINDEX = Script("executions_reindex", keys=("registry",), argv=("prefix",), rest="execution_ids")
UPGRADE_MEMBERS = Script("executions_upgrade_members", keys=("zset",), argv=("cursor", "count"))
BOUND = Script("executions_bound", keys=("registry",), argv=())


SHARE_FACTOR = 3
"""a listing over n ≥ ``SHARE_FROM`` registries first asks each for this × depth ÷ n of the
newest: with executions spread evenly, one registry holds more of a page than that rarely
enough that asking it again costs less than every registry returning the whole depth"""
SHARE_FROM = 8
"""below this many registries each is asked for the whole depth: a share of 3/4 to 3/7 of it
saves little merging and still sends a partition that holds much of the page (an account's
few busy cues) a second call (measured: bench/README.md "Seventeenth session")"""


def index_member(execution_id: str) -> bytes:
    """An execution's member in the listing index zsets (``ix_member`` of lua/lib/exec_index.lua):
    the id's 16 bytes (an id that is no canonical UUID: itself)."""
    if len(execution_id) == 36:
        try:
            return bytes.fromhex(execution_id.replace("-", ""))
        except ValueError:
            pass
    return execution_id.encode()


def index_id(member: bytes) -> str:
    """The execution id of a listing index member (``ix_id``; a pre-layout-2 member is the id)."""
    if len(member) != 16:
        return member.decode()
    h = member.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def index_members(redis: aioredis.Redis, zset: str) -> list[tuple[str, float]]:
    """(execution id, score) of every member of a listing index zset, lowest score first (read
    undecoded: members are bytes; for tests and tools, never a request path)."""
    rows = await redis.execute_command(  # type: ignore[no-untyped-call]
        "ZRANGE", zset, 0, -1, "WITHSCORES", **{NEVER_DECODE: True}
    )
    if rows and isinstance(rows[0], list | tuple):  # RESP3 pairs
        return [(index_id(m), float(sc)) for m, sc in rows]
    return [(index_id(rows[i]), float(rows[i + 1])) for i in range(0, len(rows), 2)]


Execution = dict[str, str]
"""an execution hash (fields named in cuefast/services/executions.py)"""


def _execution(execution_id: str, data: Mapping[Any, Any]) -> Execution | None:
    """A stored hash as an Execution, with its ``id`` (the key's: no hash field since layout 2;
    None when the hash is gone)."""
    if not data:
        return None
    return {"id": execution_id, **{str(k): str(v) for k, v in data.items()}}


_ROW = msgspec.json.Decoder(list[str])


def execution_of(execution_id: str, row: str) -> Execution | None:
    """A hash as ``executions_list.lua`` returns it (``Listing.rows``: the JSON array of HGETALL's
    fields and values) as an Execution (None: the hash is gone, "")."""
    if not row:
        return None
    it = iter(_ROW.decode(row))
    h: Execution = dict(zip(it, it, strict=True))  # the wire decodes replies: str already
    h["id"] = execution_id
    return h


class Created(NamedTuple):
    """``executions.create``: OK | REPEAT (``detail``: the remembered response JSON) | CONFLICT
    (``detail``: the execution the idempotency key made) | NOT_FOUND (no such cue)."""

    status: Status
    detail: str


def list_rows(reply: Sequence[Any]) -> list[tuple[int, str]]:
    """(created µs, id) of the members in one ``executions_list.lua`` reply, newest first."""
    return [(int(reply[i + 1]), str(reply[i])) for i in range(3, len(reply), 2)]


class Listing(NamedTuple):
    """``executions.listing``: the page's ids (newest first), the filtered total, the earliest
    claimed_at µs in the filtered set (None: none has one), the replies of ``also``, and the
    page's hashes when the script could return them (one registry read), each as the JSON text
    of HGETALL's flat field, value list ("" = gone: ``execution_of``); None: read them with
    ``get_many``."""

    ids: list[str]
    total: int
    oldest_claimed_us: int | None
    extra: list[Any]
    rows: list[str] | None = None
    created_us: list[int] | None = None
    """each page id's created µs, when the reply carried them (None with ``rows``: the rows do)"""


class ExecutionCue(NamedTuple):
    cue_id: str
    created_us: int


class _Create(NamedTuple):
    """One execution to create (``Executions.create``'s arguments, the script's order)."""

    execution_id: str
    scheduled_us: int
    payload_json: str
    triggered_by: str
    replayed_from: str
    idem_digest: str
    fingerprint: str
    response_json: str
    idem_ttl_ms: int


class Executions(Repository):
    SCRIPTS = (CREATE, CAS, PURGE_CUE, CUES, LIST, REINDEX, UPGRADE_MEMBERS, BOUND)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches: Batches[tuple[str, str], _Create, Created] = Batches(self._create)

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
        """A manual fire or replay, queued (``fingerprint`` "": no idempotency key). Creates of one
        cue for one account that arrive in the same event-loop iteration share one script call
        (``turn_batches``), made in arrival order — each answered as its own call, sent after the
        others, would have been (an idempotency key used twice: the second is a REPEAT)."""
        made = _Create(
            execution_id,
            scheduled_us,
            payload_json,
            triggered_by,
            replayed_from,
            idem_digest,
            fingerprint,
            response_json,
            idem_ttl_ms,
        )
        return await self._batches.join((cue_id, account_id), now_us, made)

    async def _create(self, group: tuple[str, str], made: Sequence[_Create], now_us: int) -> list[Created]:
        """One ``executions_create.lua`` call for ``made`` (of one cue and account), in order."""
        cue_id, account_id = group
        k = self.keys
        p = k.cue_partition(cue_id)
        args: list[Arg] = [now_us, account_id]
        for m in made:
            args += m
        keys = [k.cue(cue_id), k.outbox(p), k.delayed(p), k.work(p, account_id)]
        res = await self.scripts.run(CREATE, keys, args)
        return [Created(Status(int(res[i])), str(res[i + 1])) for i in range(0, len(res), 2)]

    async def cas(
        self,
        execution_id: str,
        expected_outcome: str,
        expected_state: str,
        fields: Mapping[str, str | int],
        *,
        alert_at_us: int | None = None,
    ) -> Status:
        """Set ``fields`` only if the outcome and outcome_state are still the expected ones: OK |
        CONFLICT (re-read and retry) | NOT_FOUND. With ``alert_at_us``, fields that make the
        outcome_state ``verification_failed`` raise that alert in the same step."""
        p = self.keys.execution_partition(execution_id)
        if p is None:
            return Status.NOT_FOUND
        alert = "" if alert_at_us is None else alert_at_us
        res = await self.scripts.run(
            CAS,
            [self.keys.execution(p, execution_id)],
            [expected_outcome, expected_state, alert, *pairs(fields)],
        )
        return Status(int(res))

    async def get(self, execution_id: str) -> Execution | None:
        p = self.keys.execution_partition(execution_id)
        if p is None:
            return None
        data = (await self.wire.pipeline().hgetall(self.keys.execution(p, execution_id)).execute())[0]
        return _execution(execution_id, data)

    async def get_many(self, execution_ids: Sequence[str]) -> list[Execution | None]:
        if not execution_ids:
            return []
        pipe = self.wire.pipeline()
        for eid in execution_ids:
            pipe.hgetall(self._key(eid))
        rows = await pipe.execute()
        return [_execution(eid, row) for eid, row in zip(execution_ids, rows, strict=True)]

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
            async with self.wire.pipeline() as pipe:  # follows ASK while a slot migrates
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

    async def listing(
        self,
        account_id: str,
        *,
        offset: int,
        limit: int,
        cue_id: str | None = None,
        worker_id: str | None = None,
        statuses: Sequence[str] | None = None,
        outcome_state: str | None = None,
        triggered_by: str | None = None,
        partitions: Sequence[int] | None = None,
        rows: bool = False,
        after: tuple[int, str] | None = None,
        created: bool = False,
        also: Sequence[Callable[[Batch], None]] = (),
    ) -> Listing:
        """A page of the account's executions (of one cue when ``cue_id`` is given, whatever its
        account: the caller checks it), newest first (ties: id descending), from the listing
        indexes (``lua/lib/exec_index.lua``): one ``executions_list.lua`` call per registry — the
        cue's, or the account's on each of ``partitions`` (None: every partition; the account's
        cue-partition bitmap as authentication read it, a superset of where its executions
        are) — in one round trip with ``also``. With ``rows`` and one registry, the script also
        returns the page's hashes (``Listing.rows``). ``after`` = (created µs, id): a keyset
        cursor — only executions after it in that order count (``offset`` then counts from
        it). With ``created``, ``Listing.created_us`` holds each page id's created µs (not with
        ``rows``: the rows do). Work per call grows with the matching cells and
        ``offset + limit``, never with the
        account or with how deep the cursor is."""
        k = self.keys
        parts = range(k.partitions) if partitions is None else partitions
        if cue_id is not None:
            registries = [k.ix_cue(cue_id) if worker_id is None else k.ix_cue_worker(cue_id, worker_id)]
            parts = [k.cue_partition(cue_id)]
        elif worker_id is None:
            registries = [k.ix_account(p, account_id) for p in parts]
        else:
            registries = [k.ix_worker(p, account_id, worker_id) for p in parts]
        depth = offset + limit
        inline = rows and len(registries) == 1
        os_arg = "" if outcome_state is None else "=" + outcome_state
        tb_arg = "" if triggered_by is None else "=" + triggered_by
        tail = tuple(statuses or ())
        cursor = "" if after is None else f"{after[0]} {after[1]}"
        n = len(registries)
        share = depth if n < SHARE_FROM else min(depth, -(-SHARE_FACTOR * depth // n))

        def call(reg: str, p: int, want: int) -> Call:
            """The script's call for ``want`` of the newest (with the page's rows: from ``offset``)."""
            if inline:
                return (LIST, [reg], [want, os_arg, tb_arg, k.part(p) + ":exec:", offset, cursor, *tail])
            return (LIST, [reg], [want, os_arg, tb_arg, "", 0, cursor, *tail])

        res = await self.scripts.run_many(
            [call(reg, p, share) for reg, p in zip(registries, parts, strict=True)], also
        )
        if n == 1:
            reply = res[0]
            oldest = int(reply[1]) if reply[1] else None
            if inline:  # the page alone: its ids, then their hashes
                return Listing([str(eid) for eid in reply[3:]], int(reply[0]), oldest, res[1:], reply[2])
            page = list_rows(reply)[offset:depth]
            ids = [eid for _, eid in page]
            return Listing(
                ids, int(reply[0]), oldest, res[1:], None, [c for c, _ in page] if created else None
            )
        replies = res[:n]
        listed = [list_rows(reply) for reply in replies]
        merged = sorted((row for rows in listed for row in rows), reverse=True)
        if share < depth:
            # a registry that returned its whole share may hold more of the page: those whose
            # last member is newer than the page's last (or all such, short of a page) are
            # asked again for the full depth, in one more round trip (rare unless the newest
            # executions crowd onto few partitions)
            edge = merged[depth - 1] if len(merged) >= depth else None
            again = [
                i for i, rows in enumerate(listed) if len(rows) == share and (edge is None or rows[-1] > edge)
            ]
            if again:
                more = await self.scripts.run_many([call(registries[i], parts[i], depth) for i in again])
                for i, reply in zip(again, more, strict=True):
                    replies[i], listed[i] = reply, list_rows(reply)
                merged = sorted((row for rows in listed for row in rows), reverse=True)
        total, oldest = 0, None
        for reply in replies:
            total += int(reply[0])
            if reply[1]:
                oldest = int(reply[1]) if oldest is None else min(oldest, int(reply[1]))
        page = merged[offset:depth]
        return Listing(
            [eid for _, eid in page],
            total,
            oldest,
            res[n:],
            None,
            [c for c, _ in page] if created else None,
        )

    def _by_partition(self, execution_ids: Sequence[str]) -> dict[int, list[str]]:
        """Well-formed ids grouped by the partition they carry (malformed ones left out)."""
        by_p: dict[int, list[str]] = {}
        for eid in execution_ids:
            p = self.keys.execution_partition(eid)
            if p is not None:
                by_p.setdefault(p, []).append(eid)
        return by_p

    async def reindex(self, execution_ids: Sequence[str]) -> int:
        """Put executions where their fields say in the listing indexes (an upgrade of data written
        before them; test seeding); the number that exist."""
        k = self.keys
        by_p = self._by_partition(execution_ids)
        calls: list[Call] = [
            (REINDEX, [k.ix_account(p, "")], [k.part(p) + ":", *ids[i : i + 1000]])
            for p, ids in by_p.items()
            for i in range(0, len(ids), 1000)
        ]
        return sum(int(n) for n in await self.scripts.run_many(calls))

    async def _upgrade_hashes(self, part: str, execution_ids: Sequence[str]) -> int:
        """Layout 2 of a batch of one partition's hashes: no ``id`` field (the key has it), and
        the listing indexes where the fields say (``reindex``)."""
        if execution_ids:
            async with self.wire.pipeline() as pipe:
                for eid in execution_ids:
                    pipe.hdel(f"{part}exec:{eid}", "id")
                await pipe.execute()
        return await self.reindex(execution_ids)

    async def upgrade_indexes(self) -> int:
        """Bring the executions to the current layout (idempotent, so processes starting together
        may both run it): every execution hash rid of its ``id`` field and reindexed (``reindex``
        per partition, by SCAN: data written before the indexes gets indexed, an ``ix`` of
        layout 1 — which held the claimed_at itself — is rewritten), then every index zset's
        members still spelled as 36-character ids (layout 1) rewritten as their 16 bytes, and
        the zsets the indexes replaced (``idx:<account>:execs``, ``claimed:<account>``,
        ``cue:<cue>:execs``) dropped.
        The number of executions indexed."""
        k = self.keys
        n = 0
        for p in range(k.partitions):
            part = k.part(p) + ":"
            batch: list[str] = []
            async for key in self.redis.scan_iter(match=part + "exec:*", count=1000):
                batch.append(str(key)[len(part) + 5 :])
                if len(batch) == 1000:
                    n += await self._upgrade_hashes(part, batch)
                    batch = []
            n += await self._upgrade_hashes(part, batch)
            async for key in self.redis.scan_iter(match=part + "ix:*|[zc]|*", count=1000, _type="zset"):
                cursor = "0"
                while True:
                    cursor, _ = await self.scripts.run(UPGRADE_MEMBERS, [str(key)], [cursor, 1000])
                    if str(cursor) == "0":
                        break
            for pattern in ("idx:*:execs", "claimed:*", "cue:*:execs"):
                async for key in self.redis.scan_iter(match=part + pattern, count=1000):
                    await self.redis.delete(key)
        return n

    async def upgrade_bounds(self) -> int:
        """Layout 5: every account and worker registry (``ix:a:*``, ``ix:w:*``, found by SCAN) given
        the bounds of what its cells hold (``executions_bound.lua``; idempotent, and the puts keep
        them from then on), so a listing skips the cells that cannot hold its page. The number
        of cells bounded."""
        k = self.keys
        n = 0
        for p in range(k.partitions):
            part = k.part(p) + ":"
            for pattern in ("ix:a:*", "ix:w:*"):
                async for key in self.redis.scan_iter(match=part + pattern, count=1000, _type="hash"):
                    n += int(await self.scripts.run(BOUND, [str(key)], []))
        return n

    async def cues(self, account_id: str, execution_ids: Sequence[str]) -> dict[str, ExecutionCue]:
        """The cue and created time of each of the account's executions (absent: not found), one
        script per partition, one round trip."""
        k = self.keys
        by_p = self._by_partition(execution_ids)
        parts = list(by_p.items())
        res = await self.scripts.run_many(
            [(CUES, [k.ix_account(p, account_id)], [k.part(p) + ":", account_id, *ids]) for p, ids in parts]
        )
        out: dict[str, ExecutionCue] = {}
        for (_, ids), rows in zip(parts, res, strict=True):
            for eid, row in zip(ids, rows, strict=True):
                if row:
                    cue, _, created = str(row).partition(" ")
                    out[eid] = ExecutionCue(cue, int(float(created)))
        return out

    async def purge_cue(
        self, cue_id: str, account_id: str, batch: int = 500, claimed: list[str] | None = None
    ) -> int:
        """Remove a deleted cue's executions in bounded batches (the ids of those that were claimed
        added to ``claimed``: their task cap permits are the caller's to give back)."""
        k = self.keys
        p = k.cue_partition(cue_id)
        keys = [
            k.ix_cue(cue_id),
            k.leases(p),
            k.retries(p),
            k.delayed(p),
            k.work(p, account_id),
        ]
        removed = 0
        while True:
            res = await self.scripts.run(PURGE_CUE, keys, [k.part(p) + ":", batch])
            n = int(res[0])
            if claimed is not None:
                claimed += [str(v) for v in res[1:]]
            removed += n
            if n < batch:
                return removed
