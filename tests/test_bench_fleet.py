"""``bench/fleet_locust.py``: each agent alternates its fires between the webhook and the worker cue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
from bench.fleet_locust import ACCOUNTS, Agent, _ids
agents = [Agent.__new__(Agent) for _ in range(2)]
for a in agents:
    a.account = ACCOUNTS[0]
picked = []
for _ in range(3):
    for a in agents:  # agents' loops interleave, and each loop also draws a payload run id
        next(_ids)
        picked.append(a.next_cue())
print(",".join(picked))
"""


def test_each_agent_alternates_webhook_and_worker_fires(tmp_path: Path) -> None:
    # 5577bff: the choice read the shared _ids counter, which advanced twice per loop, so every
    # agent fired the worker cue every time. (A subprocess: locust monkey-patches the stdlib.)
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"key": "k", "fire_hook": "hook", "agent_work": "work"}]))
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, "FLEET_ACCOUNTS": str(accounts)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()[-1]
    assert out.split(",") == ["hook", "hook", "work", "work", "hook", "hook"]
