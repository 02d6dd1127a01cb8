"""Consumer-group streams (the outbox, the notices): groups recreated when Redis lost them."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import ResponseError

from cuefast.store.outage import unavailable
from cuefast.store.repository import Repository

WARN_EVERY_S = 5.0
"""streams on a node that is down are logged at most this often"""

log = logging.getLogger(__name__)


class GroupStreams(Repository):
    """One stream per partition, read by the consumer group ``GROUP``. Every group read goes
    through ``read_group`` or ``claim_group``: a stream or group that no longer exists (NOGROUP:
    Redis lost its data, FLUSHDB, ``cuefast restore``) is recreated, so a reader never stops on it."""

    GROUP = ""
    _warned = -3600.0

    def streams(self) -> list[str]:
        raise NotImplementedError

    async def ensure_groups(self, streams: Sequence[str] | None = None) -> None:
        """Create the group on these streams (all by default; MKSTREAM; from the stream's start,
        so entries written before it are read too); an existing group is left as it is. One round
        trip."""
        async with self.wire.pipeline() as pipe:  # follows ASK while a slot migrates
            for key in self.streams() if streams is None else streams:
                pipe.xgroup_create(key, self.GROUP, id="0", mkstream=True)
            results = await pipe.execute(raise_on_error=False)
        for res in results:
            if unavailable(res):  # its node down or refusing writes: NOGROUP recreates it later
                continue
            if isinstance(res, Exception) and "BUSYGROUP" not in str(res):
                raise res

    def _unavailable(self, count: int, stream: str, why: str) -> None:
        """Streams whose node could not serve them (Redis Cluster: a primary down, full, busy…;
        ``outage.unavailable``): the others were read; logged at most once per ``WARN_EVERY_S``."""
        at = time.monotonic()
        if at - self._warned >= WARN_EVERY_S:
            self._warned = at
            log.warning(
                "%s: %d streams not read, their node is unavailable (%s: %s…); the others are",
                self.GROUP,
                count,
                why,
                stream,
            )

    async def _group_missing(self, streams: Sequence[str]) -> None:
        log.warning(
            "consumer group %s missing on %d streams (Redis lost its data, or was restored): recreated",
            self.GROUP,
            len(streams),
        )
        await self.ensure_groups(streams)

    async def read_group(self, consumer: str, count: int, block_ms: int | None) -> list[tuple[int, str, Any]]:
        """XREADGROUP of new entries (">") on every partition's stream: (partition, entry id,
        fields). A missing stream or group (UNBLOCKED: it vanished while the read blocked) is
        recreated and the read made again."""
        streams = self.streams()
        if self.cluster:
            return await self._read_group_per_slot(streams, consumer, count, block_ms)
        ids: dict[Any, Any] = dict.fromkeys(streams, ">")
        res: Any
        try:
            res = await self.redis.xreadgroup(self.GROUP, consumer, ids, count=count, block=block_ms)
        except ResponseError as exc:
            if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                raise
            await self._group_missing(streams)
            res = await self.redis.xreadgroup(self.GROUP, consumer, ids, count=count, block=block_ms)
        index = {key: p for p, key in enumerate(streams)}
        return [
            (index[str(stream)], str(entry_id), fields)
            for stream, entries in res or []
            for entry_id, fields in entries
        ]

    async def settle_reads(self, timeout_s: float = 2.0) -> list[tuple[int, str, Any]]:
        """At a reader's stop on Redis Cluster: what its still-blocking reads answered (``Fanout.
        settle``), as ``read_group`` returns it; on one Redis nothing is left in flight."""
        if not self.cluster:
            return []
        index = {key: p for p, key in enumerate(self.streams())}
        return [
            (index[str(stream)], str(entry_id), fields)
            for _, res in await self.fanout.settle(timeout_s)
            for stream, entries in res or []
            for entry_id, fields in entries
        ]

    async def _read_group_per_slot(
        self, streams: list[str], consumer: str, count: int, block_ms: int | None
    ) -> list[tuple[int, str, Any]]:
        """``read_group`` on Redis Cluster, where each stream is its own slot: first one
        non-blocking XREADGROUP per stream, in one wire batch (one round trip per node), so what
        is queued anywhere comes back together (a stream whose group was missing is read again
        once it is recreated, as on one Redis); when nothing is, the blocking reads, one per
        stream, through ``fanout.Fanout``."""
        index = {key: p for p, key in enumerate(streams)}
        out: list[tuple[int, str, Any]] = []
        for _, res in self.fanout.take_answered():  # a blocking read of an earlier call answered since
            out.extend(
                (index[str(stream)], str(entry_id), fields)
                for stream, entries in res
                for entry_id, fields in entries
            )
        down: dict[str, str] = {}  # stream → why its node did not serve it
        todo, again = streams, True
        while todo:
            batch = [
                ("XREADGROUP", "GROUP", self.GROUP, consumer, "COUNT", count, "STREAMS", key, ">")
                for key in todo
            ]
            missing: list[str] = []
            for key, res in zip(todo, await self.wire.execute(batch), strict=True):
                if isinstance(res, ResponseError) and str(res).startswith("NOGROUP"):
                    missing.append(key)
                elif why := unavailable(res):  # its node down or refusing writes: read next call
                    down[key] = why
                elif isinstance(res, Exception):
                    raise res
                else:
                    out.extend(
                        (index[str(stream)], str(entry_id), _fields(fields))
                        for stream, entries in res or []
                        for entry_id, fields in entries
                    )
            if missing:
                await self._group_missing(missing)
            todo, again = (missing if again else []), False  # read once more, as on one Redis
        if down:
            self._unavailable(len(down), *next(iter(down.items())))
        if out or block_ms is None:
            return out

        def one(key: str) -> Callable[[], Awaitable[Any]]:
            async def read() -> Any:
                ids: dict[Any, Any] = {key: ">"}
                try:
                    return await self.redis.xreadgroup(self.GROUP, consumer, ids, count=count, block=block_ms)
                except ResponseError as exc:
                    if str(exc).startswith("UNBLOCKED"):  # the stream left the node (a slot migrated)
                        await self.ensure_groups([key])  # or vanished: recreated (existing: left as is)
                    elif str(exc).startswith("NOGROUP"):
                        await self._group_missing([key])
                    else:
                        raise
                    return await self.redis.xreadgroup(self.GROUP, consumer, ids, count=count, block=block_ms)

            return read

        reads = {(key, ">"): one(key) for key in streams if key not in down}  # no wait on a node down
        answered = await self.fanout.read(reads)
        return [
            (index[str(stream)], str(entry_id), fields)
            for _, res in answered
            for stream, entries in res or []
            for entry_id, fields in entries
        ]

    async def claim_group(self, consumer: str, min_idle_ms: int, count: int) -> list[tuple[int, str, Any]]:
        """XAUTOCLAIM on every partition's stream (one pipeline): the entries another consumer read
        and left idle for ``min_idle_ms``, as (partition, entry id, fields). Streams or groups that
        no longer exist are recreated (nothing to claim there)."""
        streams = self.streams()
        async with self.wire.pipeline() as pipe:
            for key in streams:
                pipe.xautoclaim(key, self.GROUP, consumer, min_idle_ms, "0-0", count=count)
            rows: list[Any] = await pipe.execute(raise_on_error=False)
        missing: list[str] = []
        out: list[tuple[int, str, Any]] = []
        for p, (key, res) in enumerate(zip(streams, rows, strict=True)):
            if isinstance(res, ResponseError) and str(res).startswith("NOGROUP"):
                missing.append(key)
            elif why := unavailable(res):  # its node down or refusing writes: the next claim
                self._unavailable(1, key, why)
            elif isinstance(res, Exception):
                raise res
            else:
                out.extend((p, str(entry_id), fields) for entry_id, fields in res[1])
        if missing:
            await self._group_missing(missing)
        return out


def _fields(flat: Any) -> dict[str, Any]:
    """An entry's field list (as the wire returns it) as the dict redis-py makes of it."""
    if flat is None:
        return {}
    it = iter(flat)
    return dict(zip(it, it, strict=True))
