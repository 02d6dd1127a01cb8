"""Snapshots and retention: the dirty sets, the snapshotter's lease and requests, trimming to history."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from cuefast.store.batch import Batch
from cuefast.store.connect import UNREACHABLE
from cuefast.store.repository import Repository
from cuefast.store.scripts import Arg, Call, Script
from cuefast.store.status import Status

LEASE = Script("snapshots_lease", keys=("lease",), argv=("mode", "token", "lease_ms"))
REQUEST = Script("snapshots_request", keys=("requests",), argv=("mode", "number"))
TAKE = Script("snapshots_take", keys=("dirty", "processing"), argv=("batch",))
TRIM = Script("snapshots_trim", keys=("dirty", "processing", "handoff"), argv=("prefix",), rest="executions")


class Requests(NamedTuple):
    """``cuefast snapshot`` requests made so far, and the highest one a complete snapshot served."""

    asked: int
    served: int


class Trimmed(NamedTuple):
    """Executions removed from Redis (or already gone), and those kept because they changed."""

    gone: list[str]
    kept: list[str]


class HistoryState(NamedTuple):
    """Whether the account has executions only PostgreSQL holds, and the ids a trim has removed
    from Redis whose rows are not yet marked history (any account's; usually none)."""

    has_history: bool
    handed_off: list[str]


class Snapshots(Repository):
    SCRIPTS = (LEASE, REQUEST, TAKE, TRIM)

    async def lease(self, mode: Literal["acquire", "renew", "release"], token: str, ms: int) -> bool:
        """The one-active-snapshotter lease: acquire (SET NX PX), renew or release it; whether
        ``token`` holds it afterwards (release: whether it held it)."""
        res = await self.scripts.run(LEASE, [self.keys.snapshot_lease], [mode, token, ms])
        return Status(int(res)) is Status.OK

    async def request(self, mode: Literal["ask", "read", "served"], number: int = 0) -> Requests:
        """On-demand snapshots: ask for one (its number is ``asked`` afterwards), read, or record
        that a snapshot which began after request ``number`` was made has completed."""
        res = await self.scripts.run(REQUEST, [self.keys.snapshot_requests], [mode, number])
        return Requests(int(res[0]), int(res[1]))

    async def dirty_slots(self, slots: Sequence[str]) -> list[str]:
        """Those of ``slots`` with dirty members or an uncommitted batch (one pipeline); a slot
        whose node could not be reached (Redis Cluster) is listed too: the others are written,
        and its own write fails the snapshot, which is then not recorded as complete."""
        async with self.wire.pipeline() as pipe:  # follows ASK while a slot migrates
            for slot in slots:
                pipe.exists(self.keys.dirty(slot), self.keys.dirty_processing(slot))
            counts = await pipe.execute(raise_on_error=False)
        out = []
        for slot, n in zip(slots, counts, strict=True):
            if isinstance(n, Exception) and not isinstance(n, UNREACHABLE):
                raise n
            if isinstance(n, Exception) or int(n):
                out.append(slot)
        return out

    async def take(self, slot: str, batch: int) -> list[tuple[str, str]]:
        """Dirty members of ``slot`` to snapshot now (an uncommitted earlier batch first), each
        with its current hash as one JSON object (``""`` when it is gone): one script call."""
        k = self.keys
        res = await self.scripts.run(TAKE, [k.dirty(slot), k.dirty_processing(slot)], [batch])
        return list(zip(res[0::2], res[1::2], strict=True))

    async def commit(self, slot: str, members: Sequence[str]) -> None:
        """The batch is in PostgreSQL: drop it from the processing set."""
        key = self.keys.dirty_processing(slot)
        for i in range(0, len(members), 5000):
            await self.wire.call("SREM", key, *members[i : i + 5000])

    async def record(self, began_us: int) -> None:
        """A snapshot that began at ``began_us`` is in PostgreSQL (``/metrics`` snapshot lag)."""
        await self.wire.call("HSET", self.keys.snapshot, "last_ok_us", began_us)

    async def dirty_count(self) -> int:
        """Members waiting for a snapshot (dirty + in flight) over every slot."""
        k = self.keys
        async with self.wire.pipeline() as pipe:
            for slot in k.slots():
                pipe.scard(k.dirty(slot))
                pipe.scard(k.dirty_processing(slot))
            return sum(int(n) for n in await pipe.execute())

    async def mark_dirty(self, members_by_slot: Mapping[str, Sequence[str]]) -> None:
        async with self.wire.pipeline() as pipe:
            for slot, members in members_by_slot.items():
                if members:
                    pipe.sadd(self.keys.dirty(slot), *members)
            await pipe.execute()

    # ---- retention: executions PostgreSQL holds leave Redis ------------------------------------
    async def trim(self, rows_by_p: Mapping[int, Sequence[tuple[str, int, str]]]) -> Trimmed:
        """Retention, the Redis half: remove finished executions whose snapshotted (id, updated
        µs, status) is still current; one ``snapshots_trim.lua`` call per partition, one round
        trip. The removed (and already gone) ids are handed off (``Keys.trim_handoff``) in the
        same step, until ``trim_confirmed``."""
        k = self.keys
        await self.wire.call("SET", k.trim_pending, 1)  # before any hand-off: listings read the sets
        calls: list[Call] = []
        for p, rows in rows_by_p.items():
            slot = k.part(p)
            args: list[Arg] = [slot + ":"]
            for eid, ua, st in rows:
                args += [eid, ua, st]
            calls.append((TRIM, [k.dirty(slot), k.dirty_processing(slot), k.trim_handoff(slot)], args))
        gone: list[str] = []
        kept: list[str] = []
        for res in await self.scripts.run_many(calls):
            vals = [str(v) for v in res]
            cut = vals.index("|")
            gone += vals[:cut]
            kept += vals[cut + 1 :]
        return Trimmed(gone, kept)

    async def trim_handoff(self) -> dict[int, list[str]]:
        """Executions trimmed from Redis whose PostgreSQL rows are not yet marked history, per
        partition (at most one trim batch: the snapshotter confirms each before the next)."""
        k = self.keys
        async with self.wire.pipeline() as pipe:
            for p in range(k.partitions):
                pipe.smembers(k.trim_handoff(k.part(p)))
            res = await pipe.execute()
        return {p: sorted(str(m) for m in ids) for p, ids in enumerate(res) if ids}

    async def trim_confirmed(self, handed: Mapping[int, Sequence[str]]) -> None:
        """These hand-offs are history rows in PostgreSQL now: drop them (and the pending flag once
        every set is empty)."""
        k = self.keys
        async with self.wire.pipeline() as pipe:
            for p, ids in handed.items():
                for i in range(0, len(ids), 5000):
                    pipe.srem(k.trim_handoff(k.part(p)), *ids[i : i + 5000])
            for p in range(k.partitions):
                pipe.scard(k.trim_handoff(k.part(p)))
            res = await pipe.execute()
        if sum(int(n) for n in res[len(res) - k.partitions :]) == 0:
            await self.wire.call("DEL", k.trim_pending)

    def queue_history_flags(self, pipe: Batch, account_id: str) -> None:
        """Queue the two reads ``history_state`` starts with on another repository's pipeline
        (``history_flags`` of their replies are its ``flags``): a read that needs them saves a
        round trip."""
        pipe.exists(self.keys.has_history(account_id))
        pipe.exists(self.keys.trim_pending)

    @staticmethod
    def history_flags(replies: Sequence[Any]) -> tuple[int, int]:
        """The ``flags`` of ``history_state`` from the two replies ``queue_history_flags`` queued."""
        return int(replies[0]), int(replies[1])

    async def history_state(self, account_id: str, flags: tuple[int, int] | None = None) -> HistoryState:
        """One pipeline with the ``has_history`` check (none when ``flags`` were read already,
        see ``queue_history_flags``); the hand-off sets are read only while a trim may have
        filled them."""
        if flags is None:
            pipe = self.wire.pipeline()
            self.queue_history_flags(pipe, account_id)
            has, pending = await pipe.execute()
        else:
            has, pending = flags
        if not has or not pending:
            return HistoryState(bool(has), [])
        return HistoryState(True, [eid for ids in (await self.trim_handoff()).values() for eid in ids])

    async def mark_history(self, account_ids: Iterable[str]) -> None:
        """These accounts have executions only PostgreSQL holds (listings then read it too)."""
        async with self.wire.pipeline() as pipe:
            for account_id in account_ids:
                pipe.set(self.keys.has_history(account_id), 1)
            await pipe.execute()
