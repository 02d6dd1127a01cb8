"""Embedded Valkey/PostgreSQL: persistence, clean stop, and no orphans when the parent dies.

Also runs the real ``cuefast serve`` on its embedded default (no backend URLs set).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from cuefast.embedded import EmbeddedBackends, EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
PG_WARNINGS = "ignore::UserWarning"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = ROOT / ".cuefast" / f"test-embedded-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_data_survives_restart(data_dir: Path) -> None:
    import asyncio

    import asyncpg

    with EmbeddedBackends(data_dir, want_redis=True, want_postgres=True) as eb:
        assert eb.redis_url and eb.database_url
        redis.Redis.from_url(eb.redis_url).set("k", "v")

        async def write() -> None:
            conn = await asyncpg.connect(eb.database_url)
            await conn.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
            await conn.close()

        asyncio.run(write())
    with EmbeddedBackends(data_dir, want_redis=True, want_postgres=True) as eb:
        assert redis.Redis.from_url(eb.redis_url).get("k") == b"v"

        async def read() -> int:
            conn = await asyncpg.connect(eb.database_url)
            try:
                return int(await conn.fetchval("SELECT x FROM t"))
            finally:
                await conn.close()

        assert asyncio.run(read()) == 42


def test_one_process_per_data_dir(data_dir: Path) -> None:
    first = EmbeddedRedis(data_dir)
    first.start()
    try:
        with pytest.raises(RuntimeError, match="another cuefast process"):
            EmbeddedRedis(data_dir).start()
    finally:
        first.stop()


CHILD = """
import json, sys, time, signal
from cuefast.embedded import EmbeddedBackends
eb = EmbeddedBackends(sys.argv[1], want_redis=True, want_postgres=True).__enter__()
def bye(*_):
    eb.close()
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print(json.dumps({"valkey": eb.redis.proc.pid, "postgres": eb.postgres.pid}), flush=True)
while True:
    time.sleep(1)
"""


def _start_child(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-W", PG_WARNINGS, "-c", CHILD, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "child did not start its backends"
    return proc, json.loads(line)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_servers_stop_with_their_parent(data_dir: Path, sig: signal.Signals) -> None:
    proc, pids = _start_child(data_dir)
    assert alive(pids["valkey"]) and alive(pids["postgres"])
    proc.send_signal(sig)
    proc.wait(timeout=30)
    wait_for(lambda: not alive(pids["valkey"]), what="valkey to stop")
    wait_for(lambda: not alive(pids["postgres"]), what="postgres to stop")
    wait_for(lambda: not (data_dir / "postgres" / "postmaster.pid").exists(), what="postmaster.pid removal")
    # and the data dir can be used again right away
    with EmbeddedBackends(data_dir, want_redis=True, want_postgres=True) as eb:
        assert redis.Redis.from_url(str(eb.redis_url)).ping()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=5) as res:
        return res.status, json.loads(res.read())


def test_cuefast_serve_on_embedded_default(data_dir: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
    env["CUEFAST_DATA_DIR"] = str(data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-W", PG_WARNINGS, "-m", "cuefast", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return _get(base + "/health")[0] == 200
            except OSError:
                return False

        wait_for(up, 60, "cuefast serve to answer")
        _, health = _get(base + "/health")
        assert health["services"] == {**health["services"], "redis": "ok", "postgres": "ok"}  # type: ignore[dict-item]
        req = urllib.request.Request(
            base + "/v1/auth/register", data=b'{"email": "e@example.com"}', method="POST"
        )
        with urllib.request.urlopen(req, timeout=5) as res:
            assert res.status == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "backends: redis unix://" in err and "(embedded)" in err
    assert "Traceback" not in err
    # both embedded servers are gone, and their data persists for the next start
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not (data_dir / "valkey" / "valkey.sock").exists() or not _sock_answers(
        data_dir / "valkey" / "valkey.sock"
    )


def _sock_answers(path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(path), socket_timeout=0.5).ping())
    except Exception:
        return False
