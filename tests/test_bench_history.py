"""``./dev bench history`` end to end at 1,000 / 2,000 rows: seeding through the trim's counting,
every filter timed (v2 too), every plan written and checked, the schema dropped afterwards."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from bench.history import FILTERS, main


async def _bench_schemas(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_history_%'")
    finally:
        await conn.close()
    return {r[0] for r in rows}


@pytest.mark.slow
def test_history_bench_small(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUEFAST_DATABASE_URL", database_url)
    before = asyncio.run(_bench_schemas(database_url))
    out, plans = tmp_path / "history.json", tmp_path / "plans.md"
    args = ["--sizes", "1000,2000", "--requests", "2", "--legacy", "--legacy-requests", "1"]
    main([*args, "--explain", str(plans), "--json", str(out)])
    result = json.loads(out.read_text())
    assert list(result["sizes"]) == ["1000", "2000"]
    step = result["sizes"]["2000"]
    assert set(step) == set(FILTERS) and step["none"]["total"] == 2000
    assert all("v2_first_p50_ms" in r for r in step.values())
    assert plans.read_text().count("### ") == 3 * len(FILTERS)
    assert asyncio.run(_bench_schemas(database_url)) <= before
