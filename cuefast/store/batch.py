"""A batch of commands for one wire round trip, with redis-py's pipeline methods and reply shapes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from redis.exceptions import RedisError

from cuefast.store.wire import Arg, Command


def _scored(reply: list[Any]) -> list[tuple[Any, float]]:
    """A flat ``member, score, …`` reply as redis-py's [(member, score)]."""
    return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]


def _ok(reply: Any) -> bool:
    return bool(reply == "OK")


def _entries(reply: list[Any]) -> list[tuple[str, dict[str, str] | None]]:
    """Stream entries as redis-py gives them: (id, fields dict), None for a deleted entry's fields."""
    return [(e[0], None if e[1] is None else _pairs(e[1])) for e in reply if e is not None]


def _autoclaimed(reply: list[Any]) -> list[Any]:
    return [reply[0], _entries(reply[1]), reply[2] if len(reply) > 2 else []]


def _pairs(reply: Any) -> dict[str, str]:
    it = iter(reply)
    return dict(zip(it, it, strict=True))


class Executes(Protocol):
    """What a ``Batch`` runs on: a ``Wire``, or a ``cluster_wire.ClusterWire`` (the same calls,
    routed by hash slot)."""

    async def execute(self, commands: Sequence[Command], patience_s: float | None = None) -> list[Any]: ...


class Batch:
    """Commands for one ``Wire.execute``, with redis-py's pipeline methods for the commands the
    store queues (``pipe.hgetall(key)``…) and the same reply shapes; ``async with`` like a
    pipeline."""

    def __init__(self, wire: Executes) -> None:
        self.wire = wire
        self.commands: list[Command] = []
        self.parsers: list[Callable[[Any], Any] | None] = []

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.commands.clear()
        self.parsers.clear()

    def __len__(self) -> int:
        return len(self.commands)

    def execute_command(self, *command: Arg, parse: Callable[[Any], Any] | None = None) -> Batch:
        self.commands.append(command)
        self.parsers.append(parse)
        return self

    async def execute(self, raise_on_error: bool = True, patience_s: float | None = None) -> list[Any]:
        """The replies (``patience_s``: see ``ClusterWire.execute``; reads only)."""
        if not self.commands:
            return []
        replies = await (
            self.wire.execute(self.commands)
            if patience_s is None
            else self.wire.execute(self.commands, patience_s=patience_s)
        )
        for i, parse in enumerate(self.parsers):
            reply = replies[i]
            if isinstance(reply, RedisError):
                if raise_on_error:
                    raise reply
            elif parse is not None and reply is not None:
                replies[i] = parse(reply)
        self.commands, self.parsers = [], []
        return replies

    # the commands the store queues, with redis-py's reply shapes
    def get(self, key: str) -> Batch:
        return self.execute_command("GET", key)

    def hget(self, key: str, field: str) -> Batch:
        return self.execute_command("HGET", key, field)

    def hgetall(self, key: str) -> Batch:
        return self.execute_command("HGETALL", key, parse=_pairs)

    def hmget(self, key: str, fields: Sequence[str]) -> Batch:
        return self.execute_command("HMGET", key, *fields)

    def exists(self, *keys: str) -> Batch:
        return self.execute_command("EXISTS", *keys)

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Arg) -> Batch:
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def zcard(self, key: str) -> Batch:
        return self.execute_command("ZCARD", key)

    def zrange(self, key: str, start: int, end: int, withscores: bool = False) -> Batch:
        if withscores:
            return self.execute_command("ZRANGE", key, start, end, "WITHSCORES", parse=_scored)
        return self.execute_command("ZRANGE", key, start, end)

    def zrangebyscore(
        self,
        key: str,
        low: Arg,
        high: Arg,
        *,
        start: int | None = None,
        num: int | None = None,
        withscores: bool = False,
    ) -> Batch:
        limit = () if start is None or num is None else ("LIMIT", start, num)
        return self._scores(("ZRANGEBYSCORE", key, low, high, *limit), withscores=withscores)

    def zrevrangebyscore(
        self,
        key: str,
        high: Arg,
        low: Arg,
        *,
        start: int | None = None,
        num: int | None = None,
        withscores: bool = False,
    ) -> Batch:
        limit = () if start is None or num is None else ("LIMIT", start, num)
        return self._scores(("ZREVRANGEBYSCORE", key, high, low, *limit), withscores=withscores)

    def _scores(self, command: tuple[Arg, ...], *, withscores: bool) -> Batch:
        if withscores:
            return self.execute_command(*command, "WITHSCORES", parse=_scored)
        return self.execute_command(*command)

    def zrevrange(self, key: str, start: int, end: int, withscores: bool = False) -> Batch:
        if withscores:
            return self.execute_command("ZREVRANGE", key, start, end, "WITHSCORES", parse=_scored)
        return self.execute_command("ZREVRANGE", key, start, end)

    def zadd(self, key: str, mapping: Mapping[str, Arg]) -> Batch:
        return self.execute_command("ZADD", key, *(x for m, score in mapping.items() for x in (score, m)))

    def zrem(self, key: str, *members: str) -> Batch:
        return self.execute_command("ZREM", key, *members)

    def zremrangebyscore(self, key: str, low: Arg, high: Arg) -> Batch:
        return self.execute_command("ZREMRANGEBYSCORE", key, low, high)

    def zscore(self, key: str, member: str) -> Batch:
        return self.execute_command("ZSCORE", key, member, parse=float)

    def zcount(self, key: str, low: Arg, high: Arg) -> Batch:
        return self.execute_command("ZCOUNT", key, low, high)

    def hincrby(self, key: str, field: str, amount: int = 1) -> Batch:
        return self.execute_command("HINCRBY", key, field, amount)

    def hsetnx(self, key: str, field: str, value: Arg) -> Batch:
        return self.execute_command("HSETNX", key, field, value)

    def hdel(self, key: str, *fields: str) -> Batch:
        return self.execute_command("HDEL", key, *fields)

    def sadd(self, key: str, *members: str) -> Batch:
        return self.execute_command("SADD", key, *members)

    def srem(self, key: str, *members: str) -> Batch:
        return self.execute_command("SREM", key, *members)

    def scard(self, key: str) -> Batch:
        return self.execute_command("SCARD", key)

    def smembers(self, key: str) -> Batch:
        return self.execute_command("SMEMBERS", key, parse=set)

    def hset(self, key: str, mapping: Mapping[str, Arg]) -> Batch:
        return self.execute_command("HSET", key, *(x for pair in mapping.items() for x in pair))

    def set(self, key: str, value: Arg) -> Batch:
        return self.execute_command("SET", key, value, parse=_ok)

    def delete(self, *keys: str) -> Batch:
        return self.execute_command("DEL", *keys)

    def incr(self, key: str) -> Batch:
        return self.execute_command("INCR", key)

    def xlen(self, key: str) -> Batch:
        return self.execute_command("XLEN", key)

    def xrange(self, key: str, low: str = "-", high: str = "+", count: int | None = None) -> Batch:
        tail: tuple[Arg, ...] = () if count is None else ("COUNT", count)
        return self.execute_command("XRANGE", key, low, high, *tail, parse=_entries)

    def xrevrange(self, key: str, high: str = "+", low: str = "-", count: int | None = None) -> Batch:
        tail: tuple[Arg, ...] = () if count is None else ("COUNT", count)
        return self.execute_command("XREVRANGE", key, high, low, *tail, parse=_entries)

    def xgroup_create(self, key: str, group: str, id: str = "$", mkstream: bool = False) -> Batch:
        return self.execute_command("XGROUP", "CREATE", key, group, id, *(("MKSTREAM",) if mkstream else ()))

    def xautoclaim(  # noqa: PLR0917 - redis-py's signature
        self, key: str, group: str, consumer: str, min_idle_ms: int, start: str = "0-0", count: int = 100
    ) -> Batch:
        """redis-py's reply: [next start, [(entry id, fields dict)…], deleted ids]."""
        command = ("XAUTOCLAIM", key, group, consumer, min_idle_ms, start, "COUNT", count)
        return self.execute_command(*command, parse=_autoclaimed)

    def xack(self, key: str, group: str, *ids: str) -> Batch:
        return self.execute_command("XACK", key, group, *ids)

    def xdel(self, key: str, *ids: str) -> Batch:
        return self.execute_command("XDEL", key, *ids)

    def expire(self, key: str, seconds: int) -> Batch:
        return self.execute_command("EXPIRE", key, seconds)
