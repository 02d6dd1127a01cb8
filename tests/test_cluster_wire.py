"""The slot-routed wire on a real Redis Cluster: batches split per node, MOVED and ASK followed."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cuefast.store import Store, connect
from cuefast.store.cluster_wire import PAUSE_S, ClusterWire, Silent, command_key
from cuefast.store.connect import UNREACHABLE
from cuefast.store.keys import Keys
from cuefast.store.scripts import library_names, load_function
from cuefast.store.wire import Command
from tests.procs import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
async def cluster(cluster_url: str) -> AsyncIterator[aioredis.RedisCluster]:
    client = connect(cluster_url, cluster=True)
    await client.initialize()  # type: ignore[attr-defined]
    try:
        yield client  # type: ignore[misc]
    finally:
        await client.aclose()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_node(
    cluster: aioredis.RedisCluster, handle: Handler
) -> AsyncIterator[tuple[ClusterWire, str]]:
    """A fake node on a free port (``handle`` serves each connection: it hangs, or answers when
    the test says) and a ``ClusterWire`` over the cluster: (wire, the node's host:port). Both
    closed afterwards."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    wire = ClusterWire(cluster)
    try:
        yield wire, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        await wire.aclose()
        server.close()


async def route_to(wire: ClusterWire, key: str, node: str) -> None:
    """Read the slot map, then route ``key``'s slot to ``node`` and keep it so (not re-read)."""
    await wire.execute([("GET", key)])
    wire._moved[key_slot(key.encode())] = node
    wire._refreshed = time.monotonic() + 3600


def test_the_routing_key_of_each_command_the_store_sends() -> None:
    assert command_key(("EVALSHA", "abc", 2, "k1", "k2", "a")) == "k1"
    assert command_key(("EVALSHA", "abc", 0, "a")) is None
    assert command_key(("HGETALL", "h")) == "h"
    assert command_key(("XREADGROUP", "GROUP", "g", "c", "COUNT", 5, "STREAMS", "s", ">")) == "s"
    assert command_key(("PING",)) is None


async def test_a_batch_over_every_node_comes_back_in_order(cluster: aioredis.RedisCluster) -> None:
    wire = ClusterWire(cluster)
    tag = uuid.uuid4().hex[:8]
    keys = [f"cw{tag}:{{s{i}}}" for i in range(60)]  # 60 slots: every primary holds some
    nodes = {cluster.get_node_from_key(k).name for k in keys}  # type: ignore[union-attr]
    assert len(nodes) == 3
    try:
        assert await wire.execute([("SET", k, i) for i, k in enumerate(keys)]) == ["OK"] * 60
        assert await wire.execute([("GET", k) for k in reversed(keys)]) == [
            str(i) for i in reversed(range(60))
        ]
        replies = await wire.execute([("GET", keys[0]), ("HGET", keys[1], "f"), ("GET", keys[2])])
        assert replies[0] == "0" and isinstance(replies[1], ResponseError) and replies[2] == "2"  # in place
        assert await wire.call("PING") == "PONG"
    finally:
        await wire.aclose()
        for k in keys:
            await cluster.delete(k)


async def test_a_node_that_cannot_be_reached_fails_only_its_share(cluster: aioredis.RedisCluster) -> None:
    """One node down (here: a slot routed to a port nothing listens on, as a MOVED to a dead node
    would): its commands get the connection error in place, the other nodes' replies stand; a
    batch that reaches no node raises, as on one Redis."""
    wire = ClusterWire(cluster)
    tag = uuid.uuid4().hex[:8]
    keys = [f"cw{tag}:{{s{i}}}" for i in range(12)]
    try:
        assert await wire.execute([("SET", k, i) for i, k in enumerate(keys)]) == ["OK"] * 12
        wire._moved[key_slot(keys[3].encode())] = f"127.0.0.1:{free_port()}"  # that slot's node: down
        replies = await wire.execute([("GET", k) for k in keys])
        assert isinstance(replies[3], RedisConnectionError)
        assert replies[:3] + replies[4:] == [str(i) for i in range(12) if i != 3]
        with pytest.raises(RedisConnectionError):
            await wire.execute([("GET", keys[3])])
    finally:
        await wire.aclose()
        for k in keys:
            await cluster.delete(k)


async def test_a_node_that_hangs_is_left_behind_by_a_patient_read(cluster: aioredis.RedisCluster) -> None:
    """A node that accepts and never answers (no error ever comes): with ``patience_s`` its
    commands get a timeout in place after that long and the other nodes' replies stand — what
    the scheduler's read of due work uses, so a hanging primary stalls only its partitions."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    tag = uuid.uuid4().hex[:8]
    keys = [f"cw{tag}:{{s{i}}}" for i in range(12)]
    async with fake_node(cluster, hang) as (wire, node):
        try:
            assert await wire.execute([("SET", k, i) for i, k in enumerate(keys)]) == ["OK"] * 12
            wire._moved[key_slot(keys[3].encode())] = node  # that slot's node hangs
            started = time.monotonic()
            replies = await wire.execute([("GET", k) for k in keys], patience_s=0.5)
            assert 0.4 < time.monotonic() - started < 3.0
            assert isinstance(replies[3], RedisTimeoutError)
            assert replies[:3] + replies[4:] == [str(i) for i in range(12) if i != 3]
        finally:
            for k in keys:
                await cluster.delete(k)


async def test_a_node_that_hangs_fails_its_share_of_writes_then_every_call_at_once(
    cluster: aioredis.RedisCluster,
) -> None:
    """Writes too (the scheduler's and dispatcher's passes): a node that accepts and never
    answers gets ``Silent`` in place of its commands after ``hang_s`` while the others' writes
    stand; from then on its share of every call fails at once, nothing more is sent to it (no
    caller queues behind it), until the unanswered send ends (here: the node closes the
    connection); then it is sent to again."""
    received: list[bytes] = []
    close = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def read() -> None:
            while data := await reader.read(65536):
                received.append(data)

        reading = asyncio.ensure_future(read())
        await close.wait()
        reading.cancel()
        writer.close()

    tag = uuid.uuid4().hex[:8]
    keys = [f"cw{tag}:{{s{i}}}" for i in range(12)]
    async with fake_node(cluster, hang) as (wire, hung):
        wire.hang_s = 0.3
        try:
            await route_to(wire, keys[3], hung)  # that slot's node hangs
            replies = await wire.execute([("SET", k, i) for i, k in enumerate(keys)])
            assert isinstance(replies[3], Silent)
            assert replies[:3] + replies[4:] == ["OK"] * 11
            assert await cluster.get(keys[4]) == "4"  # the other nodes' writes were made
            async with asyncio.timeout(5):
                while not received:  # the hanging node got its share once
                    await asyncio.sleep(0.01)
            sent = sum(len(d) for d in received)
            assert hung in wire._silent
            replies = await wire.execute([("SET", k, i + 100) for i, k in enumerate(keys)])
            assert isinstance(replies[3], Silent) and replies[:3] + replies[4:] == ["OK"] * 11
            with pytest.raises(Silent):  # a call only for the silent node: fails as a whole
                await wire.execute([("GET", keys[3])])
            await asyncio.sleep(0)
            assert sum(len(d) for d in received) == sent  # nothing more was sent to it
            close.set()  # the unanswered send ends (connection closed): sent to again
            async with asyncio.timeout(5):
                while hung in wire._silent:
                    await asyncio.sleep(0.01)
            with pytest.raises(UNREACHABLE) as failed:  # sent: the node closes each connection now
                await wire.execute([("GET", keys[3])])
            assert not isinstance(failed.value, Silent)
        finally:
            close.set()
            for k in keys:
                await cluster.delete(k)


async def test_a_stall_of_this_process_is_not_counted_as_the_nodes_silence(
    cluster: aioredis.RedisCluster,
) -> None:
    """A node is judged silent only after ``patience_s`` in which this process was watching:
    when its own event loop stalled (a GC pause, a long computation, a starved or paused
    machine — the node stalled too), the time it lost is not the node's. Here the whole
    process stalls past the patience while its command waits, and the node answers 50 ms after
    the stall ends (it was stopped along with it): the reply comes back, no ``Silent``, and
    the node is not marked silent (before: ``Silent`` at the first look after the stall)."""
    received = asyncio.Event()
    answer = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        received.set()
        await answer.wait()
        writer.write(b"$2\r\nhi\r\n")
        with contextlib.suppress(ConnectionError):  # the client closes when it is done
            await writer.drain()
            await reader.read()
        writer.close()

    key = f"cw{uuid.uuid4().hex[:8]}:{{s0}}"
    async with fake_node(cluster, slow) as (wire, node):
        try:
            await route_to(wire, key, node)
            call = asyncio.ensure_future(wire.execute([("GET", key)], patience_s=0.4))
            async with asyncio.timeout(5):
                await received.wait()
            loop = asyncio.get_running_loop()
            loop.call_later(0.65, answer.set)  # 0.05 s after the stall below ends
            time.sleep(0.6)  # the fault: this process (and the node with it) stalls past the patience
            async with asyncio.timeout(5):
                assert await call == ["hi"]
            assert node not in wire._silent
        finally:
            answer.set()


async def _node_id(client: aioredis.Redis) -> str:
    return str(await client.execute_command("CLUSTER", "MYID"))


async def test_moved_and_ask_are_followed_while_a_slot_migrates(cluster: aioredis.RedisCluster) -> None:
    """A slot moves to another primary while the wire holds the old map: ASK while it migrates
    (the key already on the target), MOVED once it is done; every read answers."""
    tag = uuid.uuid4().hex[:8]
    moved, stays = f"{{cw{tag}}}:moved", f"{{cw{tag}}}:stays"
    slot = key_slot(moved.encode())
    wire = ClusterWire(cluster)
    await wire.execute([("SET", moved, "m"), ("SET", stays, "s")])
    source_node = cluster.get_node_from_key(moved)
    assert source_node is not None
    target_node = next(n for n in cluster.get_primaries() if n.name != source_node.name)
    source = aioredis.Redis(host=source_node.host, port=int(source_node.port), decode_responses=True)
    target = aioredis.Redis(host=target_node.host, port=int(target_node.port), decode_responses=True)
    try:
        source_id, target_id = await _node_id(source), await _node_id(target)
        await target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        await source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        await source.execute_command("MIGRATE", target_node.host, target_node.port, moved, 0, 5000)
        assert await wire.execute([("GET", moved), ("GET", stays)]) == ["m", "s"]  # ASK, then here
        await source.execute_command("MIGRATE", target_node.host, target_node.port, stays, 0, 5000)
        for node in cluster.get_primaries():
            client = aioredis.Redis(host=node.host, port=int(node.port))
            await client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            await client.aclose()
        got = await wire.execute([("GET", stays), ("GET", moved)])
        assert got == ["s", "m"], [str(r) for r in got]  # MOVED: a new slot map
        assert cluster.nodes_manager.get_node_from_slot(slot).name == target_node.name
    finally:
        await wire.aclose()
        await source.aclose()
        await target.aclose()
        await cluster.delete(moved)
        await cluster.delete(stays)


async def test_scripts_are_loaded_again_on_every_primary_after_noscript(cluster_url: str) -> None:
    store = Store(connect(cluster_url, cluster=True), Keys(f"t{uuid.uuid4().hex[:10]}", 4))
    try:
        await store.preload()
        await store.redis.script_flush()  # every primary forgets (a failover to a new node, a restart)
        for name in store.scripts.function_names():
            await store.redis.function_delete(name)
        assert await store.echo.save("203.0.113.9", 1, uuid.uuid4().hex, "{}", limit=10, ttl_s=60)
    finally:
        await store.close()


async def test_preload_deletes_other_versions_libraries_on_every_primary(cluster_url: str) -> None:
    """FUNCTION LIST answers per primary on a cluster: a library of another version of cuefast,
    on every primary, is deleted (once: the delete reaches them all) and this version's stay."""
    store = Store(connect(cluster_url, cluster=True), Keys(f"t{uuid.uuid4().hex[:10]}", 4))
    try:
        old = load_function("echo_save").code.replace("cuefast_echo_save_", "cuefast_echo_save_0ld", 2)
        await store.redis.function_load(old, replace=True)
        await store.preload()
        listed = await store.redis.function_list("cuefast_echo_save_*")
        libs = {node: library_names(rows) for node, rows in listed.items()}
        assert len(libs) == 3 and all(names == {load_function("echo_save").name} for names in libs.values())
    finally:
        await store.close()


async def test_a_primary_that_lost_the_functions_alone_gets_them_again(cluster_url: str) -> None:
    """One primary without the functions (a new node after resharding) while the others have
    them: the reload replaces the library on every primary, so the others' copies do not fail
    it, and the call runs."""
    store = Store(connect(cluster_url, cluster=True), Keys(f"t{uuid.uuid4().hex[:10]}", 4))
    try:
        await store.preload()
        node = store.redis.get_node_from_key(store.keys.echo_rate("203.0.113.9", 1))  # type: ignore[attr-defined]
        direct = aioredis.Redis(host=node.host, port=int(node.port))
        try:
            for name in store.scripts.function_names():
                await direct.function_delete(name)
        finally:
            await direct.aclose()
        assert await store.echo.save("203.0.113.9", 1, uuid.uuid4().hex, "{}", limit=10, ttl_s=60)
    finally:
        await store.close()


class _Scripted(ClusterWire):
    """A ``ClusterWire`` whose nodes first answer with ``script``'s replies (what a cluster says
    while a slot migrates and a failover runs), then for real; ``sent`` notes when each send left."""

    def __init__(self, client: aioredis.RedisCluster, script: list[str]) -> None:
        super().__init__(client)
        self.script = script
        self.sent: list[float] = []

    async def _send(self, name: str, commands: list[Command]) -> list[Any]:
        self.sent.append(time.monotonic())
        if self.script:
            return [*[None] * (len(commands) - 1), ResponseError(self.script.pop(0))]  # ASKING: "OK"
        return await super()._send(name, commands)


@pytest.mark.parametrize(
    "script",
    [
        ["CLUSTERDOWN The cluster is down"],
        ["ASK {slot} {node}", "CLUSTERDOWN The cluster is down"],
        ["TRYAGAIN Multiple keys request during rehashing of slot"],
        ["ASK {slot} {node}", "TRYAGAIN Multiple keys request during rehashing of slot"],
    ],
    ids=["clusterdown", "ask-then-clusterdown", "tryagain", "ask-then-tryagain"],
)
async def test_a_clusterdown_or_tryagain_pauses_before_the_retry_after_an_ask_too(
    cluster: aioredis.RedisCluster, script: list[str]
) -> None:
    """One retry policy: the command is sent again after ``PAUSE_S`` whether the CLUSTERDOWN /
    TRYAGAIN answered its first send or the ``ASKING`` one an ASK asked for."""
    key = f"cw{uuid.uuid4().hex[:8]}"
    await cluster.set(key, "v")
    node = cluster.get_node_from_key(key)
    assert node is not None
    steps = [s.format(slot=key_slot(key.encode()), node=node.name) for s in script]
    wire = _Scripted(cluster, list(steps))
    try:
        assert await wire.execute([("GET", key)]) == ["v"]
        assert len(wire.sent) == len(steps) + 1
        assert wire.sent[-1] - wire.sent[-2] >= PAUSE_S
    finally:
        await wire.aclose()
        await cluster.delete(key)
