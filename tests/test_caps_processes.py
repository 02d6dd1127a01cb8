"""Issue 17 item 3 with real OS processes: a cue's ``delivery.max_concurrency`` and an account's
``max_concurrency_per_host`` hold across two ``cuefast dispatcher`` processes, with the cues made
and fired through a ``cuefast api`` process (tests/test_dispatcher_caps.py races two in-process
dispatchers; this shows the permits need nothing shared but Redis)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from cuefast.config import Settings
from tests.procs import Processes, free_port, process_env, until_healthy
from tests.test_dispatcher_caps import SlowReceiver
from tests.test_dispatcher_hosts import until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_caps_hold_across_two_dispatcher_processes(settings: Settings, tmp_path: Path) -> None:
    slow, shared = SlowReceiver(0.1), SlowReceiver(0.1)  # one cue's receiver; three cues' host
    await slow.start()
    await shared.start()
    port = free_port()
    env = process_env(settings, CUEFAST_PORT=str(port))
    try:
        async with (
            Processes(tmp_path / "logs") as procs,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        ):
            procs.start("api", "api", env=env)
            await until_healthy(http)
            res = await http.post("/v1/auth/register", json={"email": f"caps-{uuid.uuid4().hex}@example.com"})
            assert res.status_code == 201, res.text
            http.headers["Authorization"] = f"Bearer {res.json()['api_key']}"

            async def cue(name: str, url: str, delivery: dict[str, int | None]) -> str:
                body = {
                    "name": name,
                    "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
                    "callback": {"url": url},
                    "delivery": {**delivery, "outcome_deadline_seconds": None},
                }
                res = await http.post("/v1/cues", json=body)
                assert res.status_code == 201, res.text
                return str(res.json()["id"])

            one = await cue("one-at-a-time", slow.url, {"max_concurrency": 1})
            hosts = [await cue(f"host-{i}", shared.url, {"max_concurrency_per_host": 2}) for i in range(3)]
            fired: dict[str, list[str]] = {}
            for c in [one, *hosts]:
                for _ in range(6):
                    res = await http.post(f"/v1/cues/{c}/fire", json={})
                    assert res.status_code == 200, res.text
                    fired.setdefault(c, []).append(str(res.json()["id"]))
            procs.start("d1", "dispatcher", env=env)
            procs.start("d2", "dispatcher", env=env)

            async def done() -> bool:
                return len(slow.order) + len(shared.order) == 24

            await until(done, 60, "every execution delivered")
            assert slow.most[one] == 1  # the cue's cap, over both processes
            assert [e for e in slow.order if e in fired[one]] == fired[one]  # in the order fired
            assert sorted(shared.order) == sorted(e for h in hosts for e in fired[h])
            assert shared.most_all == 2  # the host cap, over the account's three cues and both processes
            assert await procs.stop_all(["d1", "d2"]) == {"d1": 0, "d2": 0}
            assert procs.problems() == []
    finally:
        for receiver in (slow, shared):
            assert receiver.runner is not None
            await receiver.runner.cleanup()
