"""``./dev bench burst`` runs end to end on a small burst (its figures are for bench/README.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.burst import percentile, read_arrivals, read_log, spread

ROOT = Path(__file__).resolve().parent.parent


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 0.99) == 7.0


def test_read_log_is_arrival_minus_scheduled_for(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("1900000000250000 2030-03-17T17:46:40.000Z\n1900000000100000 2030-03-17T17:46:40Z\n")
    assert read_log(str(log)) == [100.0, 250.0]


def test_read_arrivals_keeps_the_cue_id_of_the_raw_receiver(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("1900000000250000 2030-03-17T17:46:40Z cue_a\n1900000000100000 2030-03-17T17:46:40Z\n")
    assert read_arrivals(str(log)) == [
        (1_900_000_000_250_000, 1_900_000_000_000_000, "cue_a"),
        (1_900_000_000_100_000, 1_900_000_000_000_000, ""),
    ]


def test_spread_counts_per_second_and_per_100ms() -> None:
    s = 1_000_000
    arrivals = [0, 10, 20, 150_000, s + 1, 2 * s, 4 * s]  # 4 s window
    assert spread(arrivals) == {"window_s": 4.0, "mean_per_s": 7 / 4, "peak_per_s": 4, "max_per_100ms": 3}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_burst_bench_small(redis_url: str, database_url: str) -> None:
    env = {**os.environ, "CUEFAST_REDIS_URL": redis_url, "CUEFAST_DATABASE_URL": database_url}
    out = subprocess.run(
        [sys.executable, "-m", "bench", "burst", "--cues", "200", "--dispatchers", "1", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        check=True,
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [(r[1].strip(), r[2].strip()) for r in rows[1:]] == [("1", "200"), ("2", "200")]
