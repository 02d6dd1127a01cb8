"""``./dev bench scale`` end to end at 200 executions: seeding, one listing per filter (and the
companion account's, alternated), memory, cleanup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from bench.scale import run


@pytest.mark.slow
async def test_scale_bench_small(redis_url: str, database_url: str, pg_schema: str, tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    result = await run([100, 200], 1, 0, redis_url, database_url, out, schema=pg_schema, companion=True)
    assert json.loads(out.read_text())["steps"][-1]["size"] == 200
    steps = result["steps"]
    assert [s["size"] for s in steps] == [100, 200]
    for step in steps:
        rows = step["listings"]
        assert len(rows) == 11
        for row in rows:
            assert row["total_ok"], row  # every filter answers the seeding's own count
            paired = row["paired"]  # the companion (100 executions) listed in the same seconds
            assert paired["companion_total_ok"], row
            assert paired["p99_ratio"] == paired["p99_ms"] / paired["companion_p99_ms"]
        by_filter = {r["filter"]: r["expected_total"] for r in rows}
        assert by_filter["none"] == step["size"] == by_filter["offset=1000"] == by_filter["cursor after 1000"]
        assert 0 < by_filter["cue_id=<busy>"] < step["size"]
        assert 0 < by_filter["worker_id=<w0>&status=success"] < by_filter["worker_id=<w0>"]
        assert sum(step["states"].values()) == step["size"]
        assert {"pending", "success", "failed", "delivering"} <= set(step["states"])
        assert step["memory"]["exec_hashes"] > 0
    assert result["companion"]["size"] == 100
    # the companion's executions are not the account's: the totals above, and the memory (its
    # 100 hashes counted in would make the 100-step's bytes per hash 2x, the 200-step's 1.5x)
    per = [s["memory_per_execution"]["exec_hash"] for s in steps]
    assert abs(per[0] / per[1] - 1) < 0.15, per
    targets = {t["target"]: t["pass"] for t in result["targets"]}
    assert {t.split(" ")[0] for t in targets} >= {"p50", "p99", "Redis", "beside"}
    assert any("companion" in t for t in targets)
    assert targets["beside the filters (not a target)"] is None
    prefix = result["prefix"]
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match=prefix + ":*", count=1000))
