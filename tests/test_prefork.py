"""``cuefast api --workers N``: N real processes on one port, supervised by the parent."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from cuefast.config import Settings
from tests.conftest import wait_for
from tests.procs import Processes, process_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
async def test_two_api_processes_share_a_port_and_a_dead_one_is_replaced(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = process_env(settings, CUEFAST_LOG_LEVEL="INFO")
    async with Processes(tmp_path / "logs", lifetime=80) as procs:
        parent = procs.start("api", "api", "--workers", "2", "--port", str(port), env=env)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:

            async def healthy() -> bool:
                try:
                    return (await client.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(healthy, 30, "the API on its port")
            first = await wait_for(
                lambda: len(children(parent.pid)) == 2 and children(parent.pid), 30, "2 children"
            )
            reg = await client.post("/v1/auth/register", json={"email": "prefork@example.com"})
            key = {"Authorization": f"Bearer {reg.json()['api_key']}"}

            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            replaced = await wait_for(
                lambda: len(c := children(parent.pid)) == 2 and victim not in c and c, 30, "a new child"
            )
            assert len(replaced & first) == 1
            await wait_for(healthy, 30, "the API after the restart")
            for _ in range(20):  # every request is answered, whichever process accepts it
                assert (await client.get("/v1/auth/me", headers=key)).status_code == 200

        assert await procs.stop("api") == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in replaced)
        log = parent.stderr()
        assert "2 server processes on one socket" in log
        assert f"(pid {victim}) exited with -9; starting it again" in log
