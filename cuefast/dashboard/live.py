"""The live view's numbers: lateness and backlog from the install's own metrics, as chart bars.

The counters are the ones ``/metrics`` serves (the install-wide hash every process flushes to)
and the gauges are its live backlog reads; nothing here keeps state. The page draws the bars
server-side as SVG and ``static/live.js`` polls ``/dashboard/live.json`` to extend a line of
recent samples in the browser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cuefast import metrics
from cuefast.runtime import Runtime

BACKLOG = (
    ("cuefast_outbox_entries", "outbox (webhooks queued or in flight)"),
    ("cuefast_retry_backlog", "webhook retries waiting"),
    ("cuefast_delayed_backlog", "fires scheduled for later"),
    ("cuefast_worker_claimable", "worker executions claimable"),
    ("cuefast_worker_claims_active", "worker claims running"),
    ("cuefast_outcome_deadlines_armed", "outcome deadlines armed"),
    ("cuefast_cues_overdue", "cues overdue > 1 s"),
)
AGES = (
    ("cuefast_outbox_oldest_age_seconds", "oldest outbox entry"),
    ("cuefast_scheduler_heartbeat_age_seconds", "scheduler heartbeat"),
    ("cuefast_snapshot_lag_seconds", "last PostgreSQL snapshot"),
)
_BOUNDS = metrics.LATENESS.buckets


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    text: str
    width: float
    """0–100: the bar's share of the chart's width"""


def bars(rows: Sequence[tuple[str, float, str]]) -> list[Bar]:
    top = max((v for _, v, _ in rows), default=0.0) or 1.0
    return [Bar(label, value, text, round(100 * value / top, 1)) for label, value, text in rows]


def lateness_buckets(counters: Mapping[str, int]) -> list[int]:
    """Executions per lateness bucket (every transport), the last one being "over the top bound"."""
    out = [0] * (len(_BOUNDS) + 1)
    prefix = metrics.LATENESS.name + "\t"
    for field, n in counters.items():
        if field.startswith(prefix):
            idx = field.rsplit("\t", 1)[1]
            if idx.isdigit() and int(idx) < len(out):
                out[int(idx)] += n
    return out


def quantile(buckets: Sequence[int], q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile (None: no sample; inf: over)."""
    total = sum(buckets)
    if total == 0:
        return None
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= q * total:
            return _BOUNDS[i] if i < len(_BOUNDS) else float("inf")
    return float("inf")


def seconds_text(v: float | None) -> str:
    if v is None:
        return "no samples yet"
    if v == float("inf"):
        return f"over {_BOUNDS[-1]:g} s"
    return f"≤ {v:g} s"


async def read(rt: Runtime) -> dict[str, Any]:
    """The live numbers, JSON-ready."""
    await rt.metrics_flusher.flush()  # this process's own counts are current
    counters = await rt.store.system.metrics()
    gauges = {g.name: g.value for g in await metrics.read_gauges(rt.store.system, rt.clock.now_us())}
    late = lateness_buckets(counters)
    return {
        "backlog": {name: gauges.get(name, 0.0) for name, _ in BACKLOG},
        "ages": {name: gauges.get(name) for name, _ in AGES},
        "lateness_buckets": late,
        "lateness_count": sum(late),
        "lateness_p50": quantile(late, 0.5),
        "lateness_p99": quantile(late, 0.99),
    }


def charts(data: Mapping[str, Any]) -> dict[str, Any]:
    """The page's bars and captions from ``read``'s numbers."""
    backlog = data["backlog"]
    late = data["lateness_buckets"]
    labels = [f"≤ {b:g} s" for b in _BOUNDS] + [f"> {_BOUNDS[-1]:g} s"]
    ages = [(label, data["ages"].get(name)) for name, label in AGES]
    return {
        "backlog": bars([(label, backlog[name], f"{backlog[name]:g}") for name, label in BACKLOG]),
        "lateness": bars([(label, n, str(n)) for label, n in zip(labels, late, strict=True)]),
        "ages": [(label, "—" if v is None else f"{v:.1f} s") for label, v in ages],
        "p50": seconds_text(data["lateness_p50"]),
        "p99": seconds_text(data["lateness_p99"]),
        "count": data["lateness_count"],
    }
