"""``./dev bench client`` runs end to end on a few calls (its figures are for bench/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_client_bench_small(redis_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "client", "--calls", "500", "--callers", "10"],
        cwd=ROOT,
        env={"CUEFAST_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["HGETALL", "EVALSHA", "3 commands"]
