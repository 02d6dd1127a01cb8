"""The Lua script runner: load with includes, EVALSHA over the wire with a NOSCRIPT reload, batches."""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from cuefast.store.batch import Batch
from cuefast.store.cluster_wire import ClusterWire
from cuefast.store.connect import UNREACHABLE, is_cluster
from cuefast.store.status import lua_table
from cuefast.store.wire import Replicas, Wire


class Script(NamedTuple):
    """One script as its wrapper calls it: the names of its KEYS and ARGV in order, and ``rest``,
    the name of a variable-length ARGV tail ("" = none). They are the names of the script's
    header (``KEYS[1] <name>: …``); tests/lua/test_headers.py holds every header to its ``Script``
    and ``Scripts.run`` every call to its counts."""

    name: str
    keys: tuple[str, ...]
    argv: tuple[str, ...]
    rest: str = ""


Arg = str | int | float | bytes
Call = tuple[Script, Sequence[str], Sequence[Arg]]
"""one script call: (script, KEYS, ARGV)"""

_INCLUDE = re.compile(r"^--!include (\w+)$", re.MULTILINE)
_LUA = importlib.resources.files("cuefast.store.lua")


def _resolve(text: str, seen: set[str]) -> str:
    """``text`` with each ``--!include <lib>`` line replaced by ``lua/lib/<lib>.lua``, itself
    resolved first; a lib already pasted in (directly or by another lib) is left out."""

    def paste(m: re.Match[str]) -> str:
        lib = m.group(1)
        if lib in seen:
            return ""
        seen.add(lib)
        return _resolve(_LUA.joinpath("lib").joinpath(f"{lib}.lua").read_text(), seen)

    return _INCLUDE.sub(paste, text)


def load_lua(name: str) -> str:
    """The source of ``lua/<name>.lua`` as Redis runs it: the ``STATUS`` table (``status.Status``)
    right after the header, and every ``--!include <lib>`` line replaced by ``lua/lib/<lib>.lua``,
    transitively, each lib once (Redis scripts cannot load code, so shared functions are pasted
    in at load time)."""
    header, end, body = _LUA.joinpath(f"{name}.lua").read_text().partition("]]\n")
    return header + end + lua_table() + _resolve(body, set())


class Scripts:
    """Every script of ``scripts``, registered once and run over the store's ``Wire`` (EVALSHA);
    ``preload`` loads them with ``SCRIPT LOAD`` so a syntax error fails at boot, not on the first
    request."""

    def __init__(
        self,
        redis: aioredis.Redis,
        scripts: Iterable[Script],
        wire: Wire | ClusterWire | None = None,
        *,
        replicas: Replicas | None = None,
    ) -> None:
        self.redis = redis
        self.wire: Wire | ClusterWire
        if wire is not None:
            self.wire = wire
        elif is_cluster(redis):  # SCRIPT LOAD goes to every primary; EVALSHA to its key's node
            self.wire = ClusterWire(redis, replicas=replicas)  # type: ignore[arg-type]
        else:
            self.wire = Wire.of(redis, replicas=replicas)
        self._scripts: dict[str, AsyncScript] = {
            s.name: redis.register_script(load_lua(s.name)) for s in scripts
        }
        self.guarded = is_cluster(redis)
        """Redis Cluster: each call also names its slot's ``stable_key`` (see there)"""

    def _keys(self, keys: Sequence[str]) -> Sequence[str]:
        return [*keys, stable_key(keys[0])] if self.guarded and keys else keys

    async def preload(self) -> None:
        """SCRIPT LOAD every script (fails at boot on a syntax error)."""
        for name, script in self._scripts.items():
            sha = await self.redis.script_load(script.script)
            if sha != script.sha:  # pragma: no cover - redis-py computes the same digest
                raise RuntimeError(f"script {name} loaded with an unexpected sha")

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """EVALSHA; a NOSCRIPT answer (the server lost its script cache) loads it and runs it again."""
        s = self._scripts[_checked(script, keys, args)]
        keys = self._keys(keys)
        call = (("EVALSHA", s.sha, len(keys), *keys, *args),)
        reply = (await self.wire.execute(call))[0]
        if isinstance(reply, NoScriptError):
            await self.redis.script_load(s.script)
            reply = (await self.wire.execute(call))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def run_many(
        self,
        calls: Sequence[Call],
        also: Sequence[Callable[[Batch], None]] = (),
        *,
        partial: bool = False,
    ) -> list[Any]:
        """Several script calls in one round trip (one ``Wire`` batch). Each call still touches
        one slot's keys. A call refused with NOSCRIPT ran nothing and is retried alone, which
        loads the script; any other error is raised. Each of ``also`` queues more reads on the
        same batch (another repository's ``queue_…``, with redis-py's pipeline methods); their
        replies follow the scripts' results, in order.

        ``partial``: a call whose node could not be reached (Redis Cluster: a primary down,
        ``connect.UNREACHABLE``) gets that error in its place instead of failing the others'
        results; the batch still raises when no call reached Redis."""
        if len(calls) <= 1 and not also:
            return [await self.run(*call) for call in calls]
        batch = self.wire.pipeline()
        for script, keys, args in calls:
            sha = self._scripts[_checked(script, keys, args)].sha
            sent = self._keys(keys)
            batch.evalsha(sha, len(sent), *sent, *args)
        for queue in also:
            queue(batch)
        results = await batch.execute(raise_on_error=False)
        for i, res in enumerate(results):
            if i < len(calls) and isinstance(res, NoScriptError):
                results[i] = await self.run(*calls[i])
            elif partial and isinstance(res, UNREACHABLE):
                continue
            elif isinstance(res, Exception):
                raise res
        return results


def stable_key(key: str) -> str:
    """A key of ``key``'s hash slot that is never written: on Redis Cluster every script call
    names it after its own KEYS, so a script never runs while its slot is half-moved.

    A script builds most key names inside Lua (``<partition>:exec:<id>``…), which Redis cannot
    check before it runs. While the slot migrates, such a key may already be on the target
    (the script fails mid-way on the source: "non local key") or still on the source (run on
    the target after ASK, it reads the key as missing). With this key, which is always missing,
    Redis answers TRYAGAIN on either node until the slot is stable (source: some keys missing;
    target under ASKING: several keys, some missing), before the script starts; the wire sends
    the call again after a pause, and once the slot is moved it runs on the new owner."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    if end > start + 1:
        return key[: end + 1] + ":~stable"  # the same hash tag
    return "{" + key + "}:~stable"


def _checked(script: Script, keys: Sequence[str], args: Sequence[Arg]) -> str:
    """The script's name, once the call passes as many KEYS and ARGV as it declares."""
    if (
        len(keys) != len(script.keys)
        or len(args) < len(script.argv)
        or (not script.rest and len(args) > len(script.argv))
    ):
        raise TypeError(
            f"{script.name} takes {len(script.keys)} KEYS and {len(script.argv)} ARGV"
            f"{' or more' if script.rest else ''}: called with {len(keys)} and {len(args)}"
        )
    return script.name
