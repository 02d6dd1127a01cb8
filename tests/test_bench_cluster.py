"""``./dev bench cluster --what api`` and ``--what engine`` run end to end on a tiny load (their
figures are for bench/README.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import FIRST_PORT
from tests.procs import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]


def _env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "CUEFAST_DATABASE_URL": database_url,
        "BENCH_SINGLE_PORT": str(free_port()),
        "BENCH_CLUSTER_PORT": str(FIRST_PORT + 30),  # its own six nodes, past the session's cluster
    }


def test_engine_on_one_redis_and_on_the_cluster(database_url: str) -> None:
    # the engine runners read options the cluster bench does not have (--overlap since the
    # overlap policies): it failed with an AttributeError until it used engine's own defaults
    command = ["--what", "engine", "--cues", "200", "--executions", "100"]
    out = subprocess.run(
        [sys.executable, "-m", "bench", "cluster", *command],
        cwd=ROOT,
        env=_env(database_url),
        capture_output=True,
        text=True,
        timeout=280,
        check=True,
    ).stdout
    for target in ("1 Redis", "3-primary cluster"):
        assert f"{target}: materialize (cold, overlap allow): 200 executions" in out, out
        assert f"{target}: deliver: 100 webhooks" in out, out


def test_api_scenarios_on_one_redis_and_on_the_cluster(database_url: str) -> None:
    env = _env(database_url)
    command = [
        "--what",
        "api",
        "--modes",
        "get",
        "outcome",
        "--users",
        "2",
        "--seconds",
        "2",
        "--pool",
        "0.01",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "bench", "cluster", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=True,
    ).stdout
    rows = [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in out.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert rows[0][0] == "Redis" and rows[1][0] == "ceiling"
    got = {(r[0], r[1]): r for r in rows[2:]}
    assert set(got) == {
        (target, request)
        for target in ("1 Redis", "3-primary cluster")
        for request in (
            "get: GET /v1/cues/{id}",
            "outcome: POST /v1/executions/{id}/outcome",
            "outcome: refill",
        )
    }
    for (target, _), row in got.items():
        failures, requests = row[5].split("/")
        assert failures == "0" and int(requests) > 0
        total, _, per_primary = row[8].partition(" ")
        shares = [float(v) for v in per_primary.strip("[]").split(",")]
        assert len(shares) == (1 if target == "1 Redis" else 3)
        assert float(total) > 0
