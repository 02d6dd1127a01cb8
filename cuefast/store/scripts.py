"""The Lua script runner: load with includes, FCALL (or EVALSHA) over the wire with a reload, batches."""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoPermissionError, NoScriptError, ResponseError

from cuefast.store.batch import Batch
from cuefast.store.cluster_wire import ClusterWire
from cuefast.store.connect import UNREACHABLE, is_cluster
from cuefast.store.status import lua_table
from cuefast.store.wire import Replicas, Wire

log = logging.getLogger(__name__)

RELOADS = 3
"""loads of a missing function before its call fails (another version's boot may prune it
between a load and the call: rare, and each try costs one round trip)"""


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


@functools.cache  # the package's files: the same text for every Store of the process
def load_lua(name: str) -> str:
    """The source of ``lua/<name>.lua`` as Redis runs it: the ``STATUS`` table (``status.Status``)
    right after the header, and every ``--!include <lib>`` line replaced by ``lua/lib/<lib>.lua``,
    transitively, each lib once (Redis scripts cannot load code, so shared functions are pasted
    in at load time)."""
    header, end, body = _LUA.joinpath(f"{name}.lua").read_text().partition("]]\n")
    return header + end + lua_table() + _resolve(body, set())


_FLAGS = re.compile(r"^--!flags ([\w -]+)$", re.MULTILINE)


class Function(NamedTuple):
    """A script as a Redis function: its library's code (``FUNCTION LOAD``) and the name FCALL
    calls, which carries a digest of the code, so two versions of cuefast on one Redis (a
    rolling upgrade) each call their own."""

    name: str
    code: str


@functools.cache
def load_function(name: str) -> Function:
    """``lua/<name>.lua`` as a Redis function library (Redis ≥ 7). The library defines the
    ``STATUS`` table and the included libs' functions once, when it is loaded; a call runs only
    the script's own body, as ``callback(KEYS, ARGV)`` — an ``EVALSHA`` re-creates all of them
    on every call (~40–95k instructions of the server's CPU before the script's first command,
    callgrind). A lib that keeps state for one call defines ``<lib>_reset()``, which the callback
    runs first (a library outlives its calls). Flags: ``allow-cross-slot-keys`` keeps EVAL's
    rule that a script may touch keys it did not declare on its node (cuefast derives them in
    the declared key's slot), and a script headed ``--!flags no-writes`` is a read, which Redis
    serves even past ``maxmemory``; any other function is refused there before it runs (an
    EVAL script failed at its first write, after its reads)."""
    header, end, body = _LUA.joinpath(f"{name}.lua").read_text().partition("]]\n")
    includes = "".join(m.group(0) + "\n" for m in _INCLUDE.finditer(body))
    rest = _INCLUDE.sub("", body)
    seen: set[str] = set()
    libs = _resolve(includes, seen)
    resets = "".join(f"{lib}_reset()\n" for lib in sorted(seen) if f"local function {lib}_reset()" in libs)
    flags = ["allow-cross-slot-keys", *(f for m in _FLAGS.finditer(rest) for f in m.group(1).split())]
    tail = ", ".join(f"'{f}'" for f in flags)
    code = header + end + lua_table() + libs, resets + rest, tail
    fn = f"cuefast_{name}_{hashlib.sha256(''.join(code).encode()).hexdigest()[:12]}"
    return Function(
        fn,
        f"#!lua name={fn}\n{code[0]}"
        f"redis.register_function{{function_name = '{fn}', callback = function(KEYS, ARGV)\n"
        f"{code[1]}\nend, flags = {{{tail}}}}}\n",
    )


class Scripts:
    """Every script of ``scripts``, registered once and run over the store's ``Wire``: as a Redis
    function (``FCALL``, ``load_function``) where the server has them, else with ``EVALSHA``.
    ``preload`` loads them all so a syntax error fails at boot, not on the first request."""

    def __init__(
        self,
        redis: aioredis.Redis,
        scripts: Iterable[Script],
        wire: Wire | ClusterWire | None = None,
        *,
        replicas: Replicas | None = None,
        functions: bool = True,
    ) -> None:
        self.redis = redis
        self.wire: Wire | ClusterWire
        if wire is not None:
            self.wire = wire
        elif is_cluster(redis):  # loads go to every primary; calls to their key's node
            self.wire = ClusterWire(redis, replicas=replicas)  # type: ignore[arg-type]
        else:
            self.wire = Wire.of(redis, replicas=replicas)
        names = [s.name for s in scripts]
        self._scripts: dict[str, AsyncScript] = {n: redis.register_script(load_lua(n)) for n in names}
        self._functions: dict[str, Function] = {n: load_function(n) for n in names}
        self.functions = functions
        """calls are FCALLs; off (EVALSHA from then on) once the server refuses FUNCTION LOAD
        (Redis < 7, or an ACL without it)"""
        self.guarded = is_cluster(redis)
        """Redis Cluster: each call also names its slot's ``stable_key`` (see there)"""

    def _keys(self, keys: Sequence[str]) -> Sequence[str]:
        return [*keys, stable_key(keys[0])] if self.guarded and keys else keys

    def _command(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> tuple[Arg, ...]:
        if self.functions:
            return ("FCALL", self._functions[name].name, len(keys), *keys, *args)
        return ("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)

    def function_names(self) -> list[str]:
        """The function (and library) names this version of cuefast calls."""
        return [f.name for f in self._functions.values()]

    async def preload(self) -> None:
        """Load every script (fails at boot on a syntax error): each function library, after
        deleting cuefast's libraries of other versions (a process of another version that still
        runs loads its own again on its next call of one); with EVALSHA, SCRIPT LOAD each."""
        if self.functions:
            await self._prune()
        for name, script in self._scripts.items():
            if self.functions and await self._load(self._functions[name]):
                continue
            sha = await self.redis.script_load(script.script)
            if sha != script.sha:  # pragma: no cover - redis-py computes the same digest
                raise RuntimeError(f"script {name} loaded with an unexpected sha")

    async def _prune(self) -> None:
        try:
            listed: Any = await self.redis.function_list("cuefast_*")
        except ResponseError:  # no FUNCTION: _load finds out and says so
            return
        for lib in sorted(
            library_names(listed) - set(self.function_names())
        ):  # a delete reaches every primary
            try:
                await self.redis.function_delete(lib)
            except ResponseError:  # another process deleted it first
                pass

    async def _load(self, fn: Function) -> bool:
        """FUNCTION LOAD ``fn``'s library (every primary of a cluster: REPLACE, so a node that has
        it does not fail the load for one that lacks it); False, and EVALSHA from then on, when
        the server refuses functions."""
        try:
            await self.redis.function_load(fn.code, replace=True)
        except ResponseError as exc:
            text = str(exc)
            if isinstance(exc, NoPermissionError) or "unknown command" in text.lower():
                if self.functions:
                    log.warning("Redis refuses FUNCTION LOAD (%s): scripts run with EVALSHA", text)
                self.functions = False
                return False
            raise
        return True

    async def _reload(self, name: str) -> None:
        """Load ``name`` again after the server answered that it has no such function / script."""
        if self.functions and await self._load(self._functions[name]):
            return
        await self.redis.script_load(self._scripts[name].script)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """FCALL (or EVALSHA); a server without the function (a restart without persistence, a
        new node, another version's prune) or the script (NOSCRIPT) gets it and runs it again."""
        name = _checked(script, keys, args)
        keys = self._keys(keys)
        reply = (await self.wire.execute((self._command(name, keys, args),)))[0]
        for _ in range(RELOADS):
            if not _missing(reply):
                break
            await self._reload(name)
            reply = (await self.wire.execute((self._command(name, keys, args),)))[0]
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
        one slot's keys. A call refused because the server lacks its function or script ran
        nothing and is retried alone, which loads it; any other error is raised. Each of
        ``also`` queues more reads on the same batch (another repository's ``queue_…``, with
        redis-py's pipeline methods); their replies follow the scripts' results, in order.

        ``partial``: a call whose node could not be reached (Redis Cluster: a primary down,
        ``connect.UNREACHABLE``) gets that error in its place instead of failing the others'
        results; the batch still raises when no call reached Redis."""
        if len(calls) <= 1 and not also:
            return [await self.run(*call) for call in calls]
        batch = self.wire.pipeline()
        for script, keys, args in calls:
            batch.execute_command(*self._command(_checked(script, keys, args), self._keys(keys), args))
        for queue in also:
            queue(batch)
        results = await batch.execute(raise_on_error=False)
        for i, res in enumerate(results):
            if i < len(calls) and _missing(res):
                results[i] = await self.run(*calls[i])
            elif partial and isinstance(res, UNREACHABLE):
                continue
            elif isinstance(res, Exception):
                raise res
        return results


def library_names(listed: Any) -> set[str]:
    """The library names of a ``FUNCTION LIST`` reply: decoded RESP2 rows (flat field/value
    lists), or a cluster's dict of them per primary (their union)."""
    rows = [r for node in listed.values() for r in node] if isinstance(listed, dict) else listed
    return {dict(zip(row[::2], row[1::2], strict=True))["library_name"] for row in rows}


def _missing(reply: object) -> bool:
    """Whether ``reply`` says the server lacks the function or script called (it ran nothing)."""
    if isinstance(reply, NoScriptError):
        return True
    text = str(reply) if isinstance(reply, ResponseError) else ""
    return "Function not found" in text or "unknown command 'FCALL'" in text  # Redis < 7


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
