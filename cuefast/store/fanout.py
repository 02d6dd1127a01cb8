"""Stream reads over many slots on Redis Cluster: one read per stream, concurrent, the slow ones carried over.

On one Redis a reader names every partition's stream in one ``XREAD``/``XREADGROUP``. A cluster
refuses a command whose keys span slots (``CROSSSLOT``), and each partition is its own slot, so
there the reader sends one read per stream, each on its own connection to that stream's node.
A call returns as soon as one of them answered entries (with whatever the others answered by
then), or once all answered nothing (their ``BLOCK`` timed out). A blocking read still waiting
is kept, and the next call with the same stream and start id waits on it again instead of
sending another, so one slow or idle node never holds the others' entries and nothing read is
dropped; a kept read that answered nothing is sent again. A read whose stream or start id the
next call no longer asks for is cancelled. Once every read has answered or one answered nothing
(its ``BLOCK`` ran out), the others get ``GRACE_S`` more: a read still waiting then (its node is
down and the client is retrying) is kept for the next call instead of holding this one.

A read that fails because its node is down or its slot is moving (a failover, a resharding:
connection errors, ``TRYAGAIN``/``MOVED``/``ASK``/``CLUSTERDOWN``, redis-py's "TTL exhausted",
``UNBLOCKED`` when the stream left the node) answers nothing after ``QUIET_PAUSE_S`` and is sent
again by the next call. A slot on the move (``slot_moving``: ``UNBLOCKED``/``TRYAGAIN``/``MOVED``/
``ASK`` and redis-py's "TTL exhausted" after following them) is logged at debug level only: it
is the expected course of a resharding, retried until the slot is stable, and the slot-routed
wire reads the same streams meanwhile. A node down (connection errors, ``CLUSTERDOWN``) is
logged as one warning a minute at most per reader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from redis.exceptions import AskError, ClusterError, RedisClusterException, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

Read = tuple[str, str]
"""(stream, start id)"""

GRACE_S = 0.1
"""how long the reads still waiting get once one has answered nothing"""
QUIET_PAUSE_S = 0.5
"""a read failed by a node down or a slot moving answers nothing after this pause"""
QUIET_LOG_S = 60.0
"""such failures are logged at most once this often per reader (one line for a move)"""
_MOVING = ("UNBLOCKED", "TRYAGAIN", "MOVED", "ASK", "CLUSTERDOWN")
_SLOT_MOVES = ("UNBLOCKED", "TRYAGAIN", "MOVED", "ASK")


def moving(exc: BaseException) -> bool:
    """Whether ``exc`` says the stream's node is down or its slot is moving (read it again later)."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | ClusterError | RedisClusterException):
        return True
    if slot_moving(exc):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_MOVING)


def slot_moving(exc: BaseException) -> bool:
    """Whether ``exc`` says only that the stream's slot is moving (a resharding: not a fault)."""
    if isinstance(exc, AskError | TryAgainError):  # MovedError is an AskError
        return True
    if isinstance(exc, ResponseError):
        return str(exc).startswith(_SLOT_MOVES)
    return isinstance(exc, ClusterError) and "TTL exhausted" in str(exc)


class Fanout:
    """The per-stream reads of one reader (one repository of one process)."""

    def __init__(self) -> None:
        self._reads: dict[Read, asyncio.Task[Any]] = {}
        self._logged = -QUIET_LOG_S
        self._quieted = 0
        """reads failed quietly (``moving``) since the last line logged"""

    async def _quiet(self, stream: str, start: Callable[[], Awaitable[Any]]) -> Any:
        """``start()``'s reply; None after ``QUIET_PAUSE_S`` when it failed by ``moving`` (one
        line logged per ``QUIET_LOG_S`` at most)."""
        try:
            return await start()
        except Exception as exc:
            if not moving(exc):
                raise
            if slot_moving(exc):
                log.debug("stream %s not read (%s: %s): its slot is moving; read again", stream,
                          type(exc).__name__, exc)  # fmt: skip
                await asyncio.sleep(QUIET_PAUSE_S)
                return None
            self._quieted += 1
            at = asyncio.get_running_loop().time()
            if at - self._logged >= QUIET_LOG_S:
                log.warning(
                    "stream %s not read (%s: %s): its node is down; read again "
                    "by the next call, the other streams meanwhile (%d such reads since the last line; "
                    "the next line in %g s at the earliest)",
                    stream, type(exc).__name__, exc, self._quieted, QUIET_LOG_S,
                )  # fmt: skip
                self._logged, self._quieted = at, 0
            await asyncio.sleep(QUIET_PAUSE_S)
            return None

    async def read(self, reads: Mapping[Read, Callable[[], Awaitable[Any]]]) -> list[tuple[Read, Any]]:
        """Start the reads not already in flight (``reads[r]()``); wait until one answers entries
        or every one has answered (as one XREAD returns on the first stream with entries or at
        its timeout); return every answered read's (read, reply). An error is raised once the
        other answers are collected, unless some read answered entries (the failed stream is
        read again next call)."""
        loop = asyncio.get_running_loop()
        for r, task in list(self._reads.items()):
            if r not in reads or task.get_loop() is not loop:
                self._reads.pop(r).cancel()
            elif task.done() and (task.cancelled() or task.exception() is not None or not task.result()):
                del self._reads[r]  # a carried read that timed out (or failed) says nothing now
        pending = set()
        for r, start in reads.items():
            if r not in self._reads:
                self._reads[r] = asyncio.ensure_future(self._quiet(r[0], start))
            pending.add(self._reads[r])
        timeout: float | None = None
        while pending:
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done or any(t.cancelled() or t.exception() is not None or t.result() for t in done):
                break
            timeout = GRACE_S  # one answered nothing: the others' BLOCK runs out about now too
        out: list[tuple[Read, Any]] = []
        error: BaseException | None = None
        for r in reads:
            task = self._reads[r]
            if not task.done():
                continue
            del self._reads[r]
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:
                error = error or exc
            else:
                out.append((r, task.result()))
        if error is not None and not any(reply for _, reply in out):
            raise error
        return out

    async def settle(self, wait_s: float) -> list[tuple[Read, Any]]:
        """At the reader's stop: wait up to ``wait_s`` for the kept reads (each ends with its
        ``BLOCK``), cancel the rest, and take the ones that answered entries — entries Redis has
        already handed this consumer, which the reader must hand back rather than leave pending."""
        if self._reads:
            await asyncio.wait(list(self._reads.values()), timeout=wait_s)
        out = self.take_answered()
        self.close()
        return out

    def take_answered(self) -> list[tuple[Read, Any]]:
        """The kept reads that answered entries since the last call, taken (a kept read that
        timed out or failed is dropped): for a caller that read by another way meanwhile."""
        out: list[tuple[Read, Any]] = []
        for r, task in list(self._reads.items()):
            if task.done():
                del self._reads[r]
                if not task.cancelled() and task.exception() is None and task.result():
                    out.append((r, task.result()))
        return out

    def close(self) -> None:
        """Cancel the reads in flight (the reader stops)."""
        for task in self._reads.values():
            task.cancel()
        self._reads.clear()
