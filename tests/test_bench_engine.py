"""`./dev bench engine` and the engine-side bench tools: the receiver delay each run gets, outcome batches."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bench import engine


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("argv", "delay_ms"),
    [
        (["deliver", "--executions", "40"], 0.0),
        (["deliver-caps", "--executions", "40", "--rounds", "1"], 0.0),
        (["deliver-bound", "--executions", "4", "--caps", "4"], 20.0),
        (["deliver-bound", "--executions", "4", "--caps", "4", "--delay-ms", "5"], 5.0),
    ],
)
async def test_only_deliver_bound_delays_the_receiver(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, argv: list[str], delay_ms: float
) -> None:
    # Before the fix every run that set up webhook cues passed --delay-ms's default of 20 ms
    # to its receiver: `deliver` measured 64 per host / 20 ms ≈ 2,300/s, not the dispatcher.
    monkeypatch.setenv("CUEFAST_REDIS_URL", redis_url)
    asked: list[float] = []
    real = engine._receiver

    async def receiver(*a: Any, delay_ms: float = 0.0, **kw: Any) -> Any:
        asked.append(delay_ms)
        return await real(*a, delay_ms=delay_ms, **kw)

    monkeypatch.setattr(engine, "_receiver", receiver)
    args = engine.arguments().parse_args([*argv, "--partitions", "2"])
    runner = {"deliver": engine.bench_deliver, "deliver-caps": engine.bench_deliver_caps}
    prefix = f"tbench{uuid.uuid4().hex[:8]}"
    try:
        await runner.get(args.what, engine.bench_deliver_bound)(args, prefix)
    finally:
        engine.cleanup(prefix)
    assert asked and set(asked) == {delay_ms}


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_outcome_batches_records_every_outcome(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m bench.outcome_batches`` end to end on a few outcomes (its figures: bench/README.md)."""
    from bench import outcome_batches

    monkeypatch.setenv("CUEFAST_REDIS_URL", redis_url)
    assert await outcome_batches.run(40, 8) > 0


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_claim_batches_claims_every_execution(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m bench.claim_batches`` end to end on a few executions: the batch pull's calls
    claim every one of them (its figures: bench/README.md)."""
    from bench import claim_batches

    monkeypatch.setenv("CUEFAST_REDIS_URL", redis_url)
    claimed, per = await claim_batches.run(40, 8)
    assert claimed == 40 and per > 0
