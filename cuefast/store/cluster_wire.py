"""The wire on Redis Cluster: one ``Wire`` per node, commands routed by hash slot, redirections followed.

``ClusterWire`` answers the same calls as ``wire.Wire`` (``execute``, ``call``, ``pipeline``) for a
``RedisCluster`` client. Each command goes to the primary that serves its key's slot (the slot
map is the client's, ``nodes_manager``); a batch is split into one ``Wire.execute`` per node, sent
concurrently, and the replies are put back in the batch's order. Every command of the store
touches one slot (scripts included), so a command never spans nodes.

Redirections, per command (the others of the batch keep their replies):

* ``MOVED <slot> <host:port>`` — the slot lives elsewhere now: the command is sent there, the
  slot stays routed there, and the slot map is re-read from the cluster (at most every
  ``REFRESH_EVERY_S``; a node that has not heard of the move yet answers MOVED again);
* ``ASK <slot> <host:port>`` — the slot is migrating and this key already moved: ``ASKING`` and
  the command, together on one connection of the target;
* ``TRYAGAIN`` (a multi-key command during a migration), ``CLUSTERDOWN`` (a failover in
  progress) — sent again after a short pause.

One policy whether the reply answered the first send or the ``ASKING`` one an ASK asked for.

After ``REDIRECTS`` rounds the last error reply is returned in place.

A node that cannot be reached fails only its own share of a batch: each of its commands gets the
connection error (``redis.exceptions.ConnectionError`` / ``TimeoutError``, whether Redis ran
them is unknown) in place, and the other nodes' replies come back as usual, so a batch over
every partition still answers for the partitions of the nodes that are up (callers that need
every reply raise the first error, as ``Batch.execute`` does by default). Only when no command
of the batch reached a node does ``execute`` raise, as on one Redis. A connection failure has
the slot map re-read before the next call, so a promoted replica takes over once the cluster
elected it.

A node that hangs — a stopped or stuck process, a silent network: its connections stay open and
nothing comes back, so no connection error ever comes — is treated the same way after
``HANG_S``: a node that has not answered its share of a call within that long, and has sent
nothing at all for that long (a node busy answering other callers is alive) — that long of
this process watching: time it lost to a stall of its own is not the node's — gets a
``RedisTimeoutError`` in place of each of its commands (the call returns the other nodes'
replies), and from then on the node is *silent*: every later call fails its share at once,
without sending or waiting, until the send that found it silent ends (the node answered, or its
connection failed at the wire's timeout), and the slot map is re-read (a promoted replica
takes the slots over). So a hanging primary costs each caller at most one ``HANG_S`` wait
(those in flight when it stopped), not one per call. A write whose node went silent may still
be run by that node if it wakes up before it is failed over (or never, when it is): its
outcome is unknown, as after a connection error, and every write of the store is safe to send
again (deterministic execution ids, the scripts' compare-and-set on next runs, lease fencing
tokens, idempotency keys).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cuefast.store.batch import Batch
from cuefast.store.connect import UNREACHABLE
from cuefast.store.wire import Arg, Command, Endpoint, Replicas, Wire

HANG_S = 1.0
"""a node that has not answered a call's share within this long is silent (see the module
docstring); a ``WAIT`` for replicas (``CUEFAST_REDIS_WAIT_REPLICAS``) adds its timeout"""
REDIRECTS = 8
"""rounds of redirections (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) one call follows"""
REFRESH_EVERY_S = 0.2
"""the slot map is re-read at most this often (a burst of MOVED replies costs one read)"""
REFRESH_WAIT_S = 0.1
"""a call waits this long at most for a slot map being re-read, then goes on with the known one
(the read may be held by a hanging node, up to ``HANG_S``: it carries on meanwhile)"""
PAUSE_S = 0.05
"""the first pause before resending a TRYAGAIN / CLUSTERDOWN command (doubled each round)"""
LOOKS = 4
"""how often a waiting call looks at a node's silence within its patience (``_answers``)"""
LOOK_SLACK = 1.5
"""the most one look credits as watched, in looks: a stall of this process counts no more"""

log = logging.getLogger(__name__)

_SCRIPTS = frozenset({"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"})


class Silent(RedisTimeoutError):
    """A node's share of a call that was not answered within its patience (``HANG_S``), or not
    sent because the node is silent: whether it ran is unknown (an ``UNREACHABLE`` error)."""


async def _answers(
    sends: Sequence[asyncio.Future[list[Any]]],
    patience_s: float,
    heard: Callable[[int], int] = lambda _: 0,
) -> list[Any]:
    """Each node's replies or its exception; a send unanswered while its node sent nothing at
    all (``heard(i)``: a count of what send ``i``'s node sent, ``Wire.heard``) for
    ``patience_s`` of watching is a ``Silent`` error (the send goes on; its outcome is dropped).
    A node still answering other callers is waited for again: a long call is not a hang.
    Watching is looked at every ``patience_s / LOOKS``, and a look credits at most
    ``LOOK_SLACK`` looks' time: when this process stalls (a GC pause, a long computation, a
    starved or paused machine — and the node with it), the time lost is not the node's, and
    it gets watched time after the stall to answer."""
    loop = asyncio.get_running_loop()
    look = patience_s / LOOKS
    pending: set[asyncio.Future[list[Any]]] = set(sends)
    silent: set[asyncio.Future[list[Any]]] = set()
    counts = [heard(i) for i in range(len(sends))]
    quiet = [0.0] * len(sends)
    while pending:
        began = loop.time()
        _, pending = await asyncio.wait(pending, timeout=look)
        watched = min(loop.time() - began, look * LOOK_SLACK)
        for i, send in enumerate(sends):
            if send in pending:
                count = heard(i)
                quiet[i] = quiet[i] + watched if count == counts[i] else 0.0
                counts[i] = count
                if quiet[i] >= patience_s * (1 - 1e-9):
                    pending.discard(send)
                    silent.add(send)
    out: list[Any] = []
    for send in sends:
        if send in silent:
            send.add_done_callback(_drop)
            out.append(Silent(f"no answer within {patience_s:g} s"))
        else:
            out.append(send.exception() or send.result())
    return out


def _drop(send: asyncio.Future[Any]) -> None:
    """A send nobody waits for any more: its exception is retrieved (never logged as lost)."""
    if not send.cancelled():
        send.exception()


def command_key(command: Command) -> Arg | None:
    """The key that routes ``command``: a script's first KEYS entry, a stream read's first
    stream, XGROUP's key (after its subcommand), else the first argument (None: a keyless
    command, answered by any primary)."""
    name = str(command[0]).upper()
    if name in _SCRIPTS:
        return command[3] if int(command[2]) > 0 else None
    if name == "XGROUP":  # XGROUP CREATE <key> …: a subcommand before the key
        return command[2] if len(command) > 2 else None
    if name in ("XREAD", "XREADGROUP"):
        words = [str(a).upper() for a in command]
        return command[words.index("STREAMS") + 1]
    return command[1] if len(command) > 1 else None


def _slot(key: Arg) -> int:
    data = key if isinstance(key, bytes) else str(key).encode()
    return int(key_slot(data))


def _redirect(reply: Any) -> tuple[str, str]:
    """("MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN", target host:port) for a redirection or
    retry reply, ("", "") for any other."""
    if not isinstance(reply, ResponseError):
        return "", ""
    code, _, rest = str(reply).partition(" ")
    if code in ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"):
        return code, rest.rpartition(" ")[2]
    return "", ""


class ClusterWire:
    """``Wire``\\ s to the nodes of one cluster (``size`` connections each), opened on first use."""

    def __init__(
        self,
        client: aioredis.RedisCluster,
        *,
        size: int = 1,
        timeout: float = 60.0,
        replicas: Replicas | None = None,
    ) -> None:
        self.client = client
        self.size = size
        self.timeout = timeout
        self.replicas = replicas
        """``WAIT`` after each node's share of a batch that may write (``wire.Replicas``)"""
        self.hang_s = HANG_S + (replicas.timeout_ms / 1000 if replicas is not None else 0.0)
        """how long a node's share of a call is waited for (``HANG_S``, plus a ``WAIT``'s timeout)"""
        self._silent: dict[str, float] = {}
        """node → when it was found silent (``HANG_S``): its share of every call fails at once"""
        self._wires: dict[str, Wire] = {}
        self._template: Endpoint | None = None
        self._stale = False
        self._refreshed = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._moved: dict[int, str] = {}
        """slot → node named by a MOVED reply since the slot map was last read"""

    def pipeline(self) -> Batch:
        return Batch(self)

    async def call(self, *command: Arg) -> Any:
        """One command's reply; an error reply raises."""
        reply = (await self.execute((command,)))[0]
        if isinstance(reply, RedisError):
            raise reply
        return reply

    async def execute(self, commands: Sequence[Command], patience_s: float | None = None) -> list[Any]:
        """The replies of ``commands``, in order; error replies in place (as ``Wire.execute``).
        A node that has not answered within ``patience_s`` (default ``hang_s``) — hanging, not
        refusing — counts as unreachable for this call (a ``Silent`` error in place of each of
        its commands; its late answer is dropped) and is silent from then on (module
        docstring)."""
        if not commands:
            return []
        nm = self.client.nodes_manager
        if self._stale or not nm.slots_cache:
            await (self._refresh(force=True) if not nm.slots_cache else self._refresh_soon())
        replies: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        lost: set[int] = set()  # commands whose node could not be reached (its error in place)
        pause = PAUSE_S
        for _ in range(REDIRECTS):
            todo, moved, wait = await self._round(commands, todo, replies, lost, patience_s)
            if not todo:
                break
            if moved:
                await self._refresh_soon()
            if wait:
                await asyncio.sleep(pause)
                pause *= 2
        if len(lost) == len(commands):  # nothing reached Redis: as a failure on one Redis
            raise replies[0]
        return replies

    async def _round(
        self,
        commands: Sequence[Command],
        todo: list[int],
        replies: list[Any],
        lost: set[int],
        patience_s: float | None = None,
    ) -> tuple[list[int], bool, bool]:
        """Send commands ``todo`` (one batch per node, concurrently; ASK redirections at once),
        their replies into ``replies`` (a node's connection error in place of each of its
        commands, their indexes added to ``lost``); the ones to send again, whether a MOVED asks
        for a new slot map, whether a TRYAGAIN / CLUSTERDOWN asks for a pause."""
        groups: dict[str, list[int]] = {}
        for i in todo:
            groups.setdefault(self._node(commands[i]), []).append(i)
        sends = [
            asyncio.ensure_future(self._send(n, [commands[i] for i in idx])) for n, idx in groups.items()
        ]
        names = list(groups)
        results = await _answers(
            sends, self.hang_s if patience_s is None else patience_s, lambda i: self._heard_at(names[i])
        )
        redo: list[int] = []
        asks: list[tuple[int, str]] = []
        moved = wait = False
        for (node, idx), send, res in zip(groups.items(), sends, results, strict=True):
            if isinstance(res, UNREACHABLE):  # that node's share only: the others' replies stand
                if isinstance(res, Silent) and not send.done():
                    self._hush(node, send)
                for i in idx:
                    replies[i] = res
                lost.update(idx)
                continue
            if isinstance(res, BaseException):
                raise res
            lost.difference_update(idx)
            for i, reply in zip(idx, res, strict=True):
                replies[i] = reply
                code, target = _redirect(reply)
                if code == "ASK":
                    asks.append((i, target))
                elif code:
                    redo.append(i)
                    refresh, pause = self._again(code, reply)
                    moved, wait = moved or refresh, wait or pause
        if asks:
            answers = await asyncio.gather(*(self._ask(target, commands[i]) for i, target in asks))
            for (i, _), (reply, down) in zip(asks, answers, strict=True):
                replies[i] = reply
                if down:
                    lost.add(i)
                    continue
                code, _ = _redirect(reply)
                if code:  # the same policy as for a first send (an ASK again: a new map)
                    redo.append(i)
                    refresh, pause = self._again(code, reply)
                    moved, wait = moved or refresh, wait or pause
        return redo, moved, wait

    def _again(self, code: str, reply: Any) -> tuple[bool, bool]:
        """The one retry policy for a command answered ``code`` (first send or ``ASKING`` one,
        not an ASK followed at once): whether the slot map is to be re-read, whether to pause
        before the next round. MOVED names the slot's owner, trusted until a new map."""
        if code == "MOVED":
            self._moved[int(str(reply).split(" ")[1])] = str(reply).rpartition(" ")[2]
            return True, False
        if code == "ASK":  # an ASK answered by an ASK: the map is behind
            return True, False
        return False, True  # TRYAGAIN / CLUSTERDOWN

    def _node(self, command: Command) -> str:
        """The name (host:port) of the primary serving ``command``'s slot."""
        key = command_key(command)
        nm = self.client.nodes_manager
        if key is None:
            return str(nm.default_node.name)
        slot = _slot(key)
        moved = self._moved.get(slot)
        return moved if moved is not None else str(nm.get_node_from_slot(slot).name)

    def _wire(self, name: str) -> Wire:
        wire = self._wires.get(name)
        if wire is None:
            if self._template is None:
                node = self.client.get_default_node()
                self._template = Endpoint.parse(node.connection_class, node.connection_kwargs)
            host, _, port = name.rpartition(":")
            endpoint = self._template._replace(host=host, port=int(port))
            wire = self._wires[name] = Wire(
                endpoint, size=self.size, timeout=self.timeout, replicas=self.replicas
            )
        return wire

    def _heard_at(self, name: str) -> int:
        wire = self._wires.get(name)
        return 0 if wire is None else wire.heard()

    def _hush(self, name: str, send: asyncio.Future[list[Any]]) -> None:
        """``name`` did not answer ``send`` in time: silent until ``send`` ends; the slot map is
        re-read before the next call (its replica may be promoted by then)."""
        if name not in self._silent:
            log.warning("Redis node %s has not answered for %g s: its share of calls fails until it does",
                        name, self.hang_s)  # fmt: skip
            self._silent[name] = time.monotonic()
            self._steer()
        self._stale = True
        send.add_done_callback(lambda _: self._heard(name))

    def _steer(self) -> None:
        """Keep redis-py's default node on a primary that answers: its client asks that node
        ``COMMAND GETKEYS`` before every stream read it sends (``XREADGROUP``/``XREAD``, blocking
        reads stay on redis-py) and waits for the answer without a timeout, so a default node
        that hangs would hold every such read, and a re-read slot map does not move it."""
        nm = self.client.nodes_manager
        primaries = [n for n in self.client.get_primaries() if n.name not in self._silent]
        if not primaries:
            return
        parser = self.client.commands_parser
        names = {n.name for n in primaries}
        if nm.default_node is None or nm.default_node.name not in names:
            nm.default_node = primaries[0]
        node = getattr(parser, "node", None)
        if node is None or node.name not in names:
            parser.node = nm.default_node

    def _heard(self, name: str) -> None:
        if self._silent.pop(name, None) is not None:
            log.info("Redis node %s: its unanswered call ended (answered, failed or replaced)", name)

    async def _send(self, name: str, commands: list[Command]) -> list[Any]:
        since = self._silent.get(name)
        if since is not None:  # a hanging node: fail at once, queue nothing behind it, and
            self._stale = True  # look for its replacement (the map read at most every REFRESH_EVERY_S)
            raise Silent(f"{name} has not answered for {time.monotonic() - since:.1f} s")
        try:
            return await self._wire(name).execute(commands)
        except (RedisConnectionError, RedisTimeoutError):
            self._stale = True  # a node died or moved: read the slot map before the next call
            raise

    async def _ask(self, target: str, command: Command) -> tuple[Any, bool]:
        """``command`` on the node importing its slot, right after ``ASKING`` (one write): its
        reply, and whether the node could not be reached (the reply is then that error)."""
        send = asyncio.ensure_future(self._send(target, [("ASKING",), command]))
        res = (await _answers([send], self.hang_s, lambda _: self._heard_at(target)))[0]
        if isinstance(res, Silent) and not send.done():
            self._hush(target, send)
        if isinstance(res, UNREACHABLE):
            return res, True
        if isinstance(res, BaseException):
            raise res
        return res[1], False

    async def _refresh_soon(self) -> None:
        """Re-read the slot map (one read at a time, ``_refresh``), waiting for it at most
        ``REFRESH_WAIT_S``: a read that takes longer carries on and the known map stays in use."""
        task = self._refreshing
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self._refreshing = asyncio.ensure_future(self._refresh())
            task.add_done_callback(_drop)
        await asyncio.wait([task], timeout=REFRESH_WAIT_S)

    async def _refresh(self, *, force: bool = False) -> None:
        """Re-read the slot map (at most every ``REFRESH_EVERY_S`` unless ``force``). A read that
        fails while a map is known leaves that map in use (and read again by the next call);
        with none known, it raises."""
        now = time.monotonic()
        if not force and now - self._refreshed < REFRESH_EVERY_S:
            return
        self._refreshed = now
        self._stale = False
        try:
            # bounded: redis-py asks a node picked at random, which may be the one hanging
            async with asyncio.timeout(self.hang_s):
                if not self.client.nodes_manager.slots_cache:
                    await self.client.initialize()
                else:
                    await self.client.nodes_manager.initialize()
            nm = self.client.nodes_manager
            for slot, name in list(self._moved.items()):
                if nm.slots_cache.get(slot) and nm.slots_cache[slot][0].name == name:
                    del self._moved[slot]  # the map caught up (a later MOVED overrides it again)
        except (TimeoutError, RedisError) as exc:
            self._stale = True
            if self.client.nodes_manager.slots_cache:
                log.debug("slot map not read (%s: %s); the known one stays in use", type(exc).__name__, exc)
                return
            if isinstance(exc, TimeoutError):
                raise Silent(f"the slot map was not read within {self.hang_s:g} s") from None
            raise
        self._steer()
        known = {node.name for node in self.client.get_nodes()}
        for name in [n for n in self._wires if n not in known]:
            await self._wires.pop(name).aclose()

    async def aclose(self) -> None:
        task = self._refreshing
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
        for wire in self._wires.values():
            await wire.aclose()
        self._wires.clear()
