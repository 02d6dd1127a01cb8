"""Stream reads over many slots on Redis Cluster: one read per stream, concurrent, the slow ones carried over.

On one Redis a reader names every partition's stream in one ``XREAD``/``XREADGROUP``. A cluster
refuses a command whose keys span slots (``CROSSSLOT``), and each partition is its own slot, so
there the reader sends one read per stream, each on its own connection to that stream's node.
A call returns as soon as one of them answered entries (with whatever the others answered by
then), or once all answered nothing (their ``BLOCK`` timed out). A blocking read still waiting
is kept, and the next call with the same stream and start id waits on it again instead of
sending another, so one slow or idle node never holds the others' entries and nothing read is
dropped; a kept read that answered nothing is sent again. A read whose stream or start id the
next call no longer asks for is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Read = tuple[str, str]
"""(stream, start id)"""


class Fanout:
    """The per-stream reads of one reader (one repository of one process)."""

    def __init__(self) -> None:
        self._reads: dict[Read, asyncio.Task[Any]] = {}

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
                self._reads[r] = asyncio.ensure_future(start())
            pending.add(self._reads[r])
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(t.cancelled() or t.exception() is not None or t.result() for t in done):
                break
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
