"""Per-stream reads (store/fanout.py): the first answer returns, slow reads are kept, nothing is dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.exceptions import ClusterError, MovedError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from cuefast.store import fanout
from cuefast.store.fanout import Fanout


async def settle() -> None:
    """Let the reads started so far run up to their wait (a few loop iterations)."""
    for _ in range(5):
        await asyncio.sleep(0)


class Reads:
    """Reads whose answers the test releases: ``started`` counts the reads sent per stream."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.answers: dict[str, asyncio.Future[Any]] = {}

    def of(self, stream: str) -> Callable[[], Awaitable[Any]]:
        async def read() -> Any:
            self.started[stream] = self.started.get(stream, 0) + 1
            self.answers[stream] = asyncio.get_running_loop().create_future()
            return await self.answers[stream]

        return read

    def answer(self, stream: str, reply: Any) -> None:
        self.answers[stream].set_result(reply)


async def test_the_first_answer_returns_and_a_slow_read_is_kept_not_sent_again() -> None:
    fan, reads = Fanout(), Reads()
    want = {("a", ">"): reads.of("a"), ("b", ">"): reads.of("b")}
    call = asyncio.ensure_future(fan.read(want))
    await settle()
    reads.answer("a", ["entries of a"])
    assert await call == [(("a", ">"), ["entries of a"])]
    call = asyncio.ensure_future(fan.read(want))  # b still waits: the same read, not a second one
    await settle()
    reads.answer("b", ["entries of b"])
    assert await call == [(("b", ">"), ["entries of b"])]
    assert reads.started == {"a": 2, "b": 1}
    fan.close()


async def test_empty_answers_wait_for_all_and_a_timed_out_kept_read_is_sent_again() -> None:
    fan, reads = Fanout(), Reads()
    want = {("a", ">"): reads.of("a"), ("b", ">"): reads.of("b")}
    call = asyncio.ensure_future(fan.read(want))
    await settle()
    reads.answer("a", [])
    await settle()
    assert not call.done()  # nothing yet: as one XREAD, it waits for the others' timeout
    reads.answer("b", None)
    assert await call == [(("a", ">"), []), (("b", ">"), None)]
    call = asyncio.ensure_future(fan.read(want))
    await settle()
    assert reads.started == {"a": 2, "b": 2}
    reads.answer("a", [])
    reads.answer("b", [])
    await call


async def test_a_read_no_longer_asked_for_is_cancelled_and_answers_are_taken_once() -> None:
    fan, reads = Fanout(), Reads()
    call = asyncio.ensure_future(fan.read({("a", "1-0"): reads.of("a"), ("b", "1-0"): reads.of("b")}))
    await settle()
    reads.answer("a", ["a"])
    await call
    kept_b = reads.answers["b"]
    call = asyncio.ensure_future(fan.read({("a", "2-0"): reads.of("a"), ("b", "2-0"): reads.of("b")}))
    await settle()
    assert kept_b.cancelled()  # its start id moved on
    reads.answer("b", ["b"])
    assert await call == [(("b", "2-0"), ["b"])]
    reads.answer("a", ["late a"])
    await settle()
    assert fan.take_answered() == [(("a", "2-0"), ["late a"])]
    assert fan.take_answered() == []


async def test_a_slot_on_the_move_is_retried_quietly_a_node_down_warned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read that meets a resharding (redis-py's "TTL exhausted" after following MOVED/ASK/
    TRYAGAIN, ``UNBLOCKED`` when the stream left the node) answers nothing and is sent again by
    the next call, logged at debug level only: noise, not a fault. A node down (a connection
    error) is retried the same way but warned about, once per ``QUIET_LOG_S``."""
    monkeypatch.setattr(fanout, "QUIET_PAUSE_S", 0.0)
    fan = Fanout()
    sent: dict[str, int] = {}

    def failing(stream: str, exc: BaseException) -> Callable[[], Awaitable[Any]]:
        async def read() -> Any:
            sent[stream] = sent.get(stream, 0) + 1
            raise exc

        return read

    moves = [
        ClusterError("TTL exhausted."),
        ResponseError("UNBLOCKED the stream key no longer exists"),
        TryAgainError("Multiple keys request during rehashing of slot"),
        MovedError("3999 127.0.0.1:6381"),
    ]
    with caplog.at_level(logging.DEBUG, logger="cuefast.store.fanout"):
        for exc in moves:
            assert await fan.read({("s", ">"): failing("s", exc)}) == [(("s", ">"), None)]
        assert sent == {"s": len(moves)}  # each call sent it again
        assert [r.levelno for r in caplog.records] == [logging.DEBUG] * len(moves)
        caplog.clear()
        for _ in range(2):
            down = failing("d", RedisConnectionError("Error 111 connecting"))
            assert await fan.read({("d", ">"): down}) == [(("d", ">"), None)]
        assert [r.levelno for r in caplog.records] == [logging.WARNING]  # once per QUIET_LOG_S
    fan.close()
