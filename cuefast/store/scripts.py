"""The Lua script runner: load with includes, EVALSHA with a NOSCRIPT reload, pipelines."""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

Arg = str | int | float
Call = tuple[str, Sequence[str], Sequence[Arg]]
"""one script call: (script name, KEYS, ARGV)"""

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
    """The source of ``lua/<name>.lua`` as Redis runs it: every ``--!include <lib>`` line replaced
    by ``lua/lib/<lib>.lua``, transitively, each lib once (Redis scripts cannot load code, so
    shared functions are pasted in at load time)."""
    return _resolve(_LUA.joinpath(f"{name}.lua").read_text(), set())


class Scripts:
    """Every script of ``names``, registered once; ``preload`` loads them with ``SCRIPT LOAD`` so
    a syntax error fails at boot, not on the first request."""

    def __init__(self, redis: aioredis.Redis, names: Iterable[str]) -> None:
        self.redis = redis
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(load_lua(name)) for name in names
        }

    async def preload(self) -> None:
        """SCRIPT LOAD every script (fails at boot on a syntax error)."""
        for name, script in self._scripts.items():
            sha = await self.redis.script_load(script.script)
            if sha != script.sha:  # pragma: no cover - redis-py computes the same digest
                raise RuntimeError(f"script {name} loaded with an unexpected sha")

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """EVALSHA; a NOSCRIPT answer (the server lost its script cache) loads it and runs it again."""
        return await self._scripts[name](keys=list(keys), args=list(args))

    async def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Several script calls in one round trip: a non-transactional pipeline of EVALSHA, one
        connection. Each call still touches one slot's keys. A call refused with NOSCRIPT ran
        nothing and is retried alone, which loads the script; any other error is raised."""
        if len(calls) <= 1:
            return [await self.run(*call) for call in calls]
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, keys, args in calls:
                pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        for i, res in enumerate(results):
            if isinstance(res, NoScriptError):
                results[i] = await self.run(*calls[i])
            elif isinstance(res, Exception):
                raise res
        return results
