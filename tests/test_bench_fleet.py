"""``bench/fleet_locust.py``: each agent alternates its fires between the webhook and the worker
cue, and every user paces its loops from its own phase."""

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


def _probe(tmp_path: Path, code: str) -> str:
    """The last word ``code`` prints, run in a subprocess (locust monkey-patches the stdlib)."""
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"key": "k", "fire_hook": "hook", "agent_work": "work"}]))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "FLEET_ACCOUNTS": str(accounts)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()[-1]


PACING = """
import time
from bench.fleet_locust import PACE, Agent
a, b = Agent.__new__(Agent), Agent.__new__(Agent)
now = time.monotonic()
a.due = now - 0.1  # its loop began 0.1 s ago: the next one a pace after that
b.due = now - PACE - 0.2  # it overran its pace: the next loop at once, its phase from now on
wa, wb = a.wait_time(), b.wait_time()
print(f"{wa:.3f},{a.due - now:.3f},{wb:.3f},{b.due - now:.3f}")
"""


def test_each_user_paces_from_its_own_phase(tmp_path: Path) -> None:
    # locust's constant_pacing measures from the user's spawn, the same instant for every user:
    # they all sent at once every loop, and the herd's queue was most of the latency measured
    wa, due_a, wb, due_b = (float(x) for x in _probe(tmp_path, PACING).split(","))
    assert 0.35 <= wa <= 0.4 and 0.35 <= due_a <= 0.4  # PACE 0.5 after a due 0.1 s ago
    assert wb == 0.0 and -0.05 <= due_b <= 0.0


def test_each_agent_alternates_webhook_and_worker_fires(tmp_path: Path) -> None:
    # 5577bff: the choice read the shared _ids counter, which advanced twice per loop, so every
    # agent fired the worker cue every time. (A subprocess: locust monkey-patches the stdlib.)
    out = _probe(tmp_path, PROBE)
    assert out.split(",") == ["hook", "hook", "work", "work", "hook", "hook"]
