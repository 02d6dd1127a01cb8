"""Install-wide metrics: in-memory counters and histograms per process, flushed to Redis.

cuefast runs as one process or as many (``api``, ``scheduler``, ``dispatcher`` over one
Redis), and only API processes serve ``/metrics``; so every process aggregates in memory
(an integer add, or a bisect into fixed buckets — never a Redis call per event) and a flush
task adds the *deltas* to one Redis hash every ``FLUSH_SECONDS`` with one pipeline of
``HINCRBY`` (``<pfx>:{metrics}:data``). ``/metrics`` in any API process reads that hash —
the whole install's counters, monotonic across process restarts — plus live backlog gauges
(one pipelined read over every partition). A process killed between flushes loses at most
its last interval's counts.

Fields of the hash: ``<metric>\\t<label values…>`` (counters), ``…\\t<bucket index>`` and
``…\\ts`` (histogram bucket counts, not cumulative, and the sum in µs; all integers, so
``HINCRBY`` is exact). Label values are bounded by construction (route templates, statuses).

Hand-written exposition (text format 0.0.4) instead of ``prometheus_client``: its
multiprocess mode shares mmap files on one host, which cannot aggregate processes on
several hosts over Redis; what remains (format a few metric families) is ~50 lines.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cuefast.store.system import PROCESS_ALIVE_US, Backlog, System

log = logging.getLogger(__name__)

FLUSH_SECONDS = 2.0
_US = 1_000_000


@dataclass(frozen=True, slots=True)
class Spec:
    """One metric family. ``buckets`` (upper bounds in seconds) makes it a histogram."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

EXECUTIONS_CREATED = Spec(
    "cuefast_executions_created_total",
    "Executions created, by trigger (scheduled, manual_fire, replay).",
    ("trigger",),
)
EXECUTIONS_DELIVERED = Spec(
    "cuefast_executions_delivered_total",
    "Executions handed over: webhook = a 2xx answer, worker = a claim (re-claims included).",
    ("transport",),
)
EXECUTIONS_FAILED = Spec(
    "cuefast_executions_failed_total",
    "Executions that failed finally, by transport and reason (delivery, lease_exhausted, missed).",
    ("transport", "reason"),
)
WEBHOOK_ATTEMPTS = Spec(
    "cuefast_webhook_attempts_total",
    "Webhook delivery attempts by the execution status they led to "
    "(success, pending_outcome, retrying, failed; superseded: the attempt had lost its lease and "
    "recorded nothing; none: the execution was no longer in flight).",
    ("status",),
)
WEBHOOK_LATENCY = Spec(
    "cuefast_webhook_request_seconds",
    "Duration of one webhook request (send to answer or error).",
    (),
    LATENCY_BUCKETS,
)
LATENESS = Spec(
    "cuefast_execution_lateness_seconds",
    "First attempt start (webhook) or first claim (worker) minus fire_at (= scheduled_for without jitter).",
    ("transport",),
    LATENESS_BUCKETS,
)
WORKER_CLAIMS = Spec("cuefast_worker_claims_total", "Worker executions claimed (both doors).")
OUTCOMES = Spec("cuefast_outcomes_total", "Outcomes recorded, by success.", ("success",))
LEASE_EXPIRIES = Spec(
    "cuefast_worker_lease_expiries_total",
    "Expired worker leases judged by the scheduler, by decision (renew, reoffer, fail).",
    ("decision",),
)
OUTCOME_TIMEOUTS = Spec(
    "cuefast_outcome_timeouts_total", "Executions whose outcome deadline passed (outcome_timeout)."
)
HTTP_LATENCY = Spec(
    "cuefast_http_request_seconds",
    "API request duration by method, matched route template and status class.",
    ("method", "route", "status"),
    API_BUCKETS,
)

SPECS: tuple[Spec, ...] = (
    EXECUTIONS_CREATED,
    EXECUTIONS_DELIVERED,
    EXECUTIONS_FAILED,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_LATENCY,
    LATENESS,
    WORKER_CLAIMS,
    OUTCOMES,
    LEASE_EXPIRIES,
    OUTCOME_TIMEOUTS,
    HTTP_LATENCY,
)
_BY_NAME = {s.name: s for s in SPECS}
_BOUNDS_US = {s.name: tuple(int(b * _US) for b in s.buckets) for s in SPECS}
_INDEX = tuple(str(i) for i in range(1 + max(len(s.buckets) for s in SPECS)))


class Metrics:
    """One process's counts since its last flush. Not thread-safe (one event loop).

    Keys are tuples (metric name, label values, suffix), turned into hash fields only at
    flush time, so a hook costs one tuple hash and one dict update."""

    __slots__ = ("_counts", "roles")

    def __init__(self, roles: str = "") -> None:
        self.roles = roles
        self._counts: dict[tuple[str, tuple[str, ...], str], int] = {}

    def inc(self, spec: Spec, labels: tuple[str, ...] = (), n: int = 1) -> None:
        key = (spec.name, labels, "")
        c = self._counts
        c[key] = c.get(key, 0) + n

    def observe_us(self, spec: Spec, labels: tuple[str, ...], value_us: int) -> None:
        """One histogram observation (µs; negative values count as 0)."""
        value_us = max(value_us, 0)
        name = spec.name
        c = self._counts
        bucket = (name, labels, _INDEX[bisect_left(_BOUNDS_US[name], value_us)])
        c[bucket] = c.get(bucket, 0) + 1
        total = (name, labels, "s")
        c[total] = c.get(total, 0) + value_us

    def pending(self) -> bool:
        """Whether anything was counted since the last ``take``."""
        return bool(self._counts)

    def take(self) -> dict[str, int]:
        """The counts as hash fields (``<name>\\t<labels…>[\\t<suffix>]``), reset to zero."""
        counts, self._counts = self._counts, {}
        out: dict[str, int] = {}
        for (name, labels, suffix), n in counts.items():
            if n:
                field = "\t".join((name, *labels, suffix) if suffix else (name, *labels))
                out[field] = out.get(field, 0) + n
        return out

    def give_back(self, fields: Mapping[str, int]) -> None:
        """Fields from ``take`` that could not be written (kept for the next flush)."""
        c = self._counts
        for field, n in fields.items():
            parts = field.split("\t")
            spec = _BY_NAME[parts[0]]
            nl = len(spec.labels)
            key = (parts[0], tuple(parts[1 : 1 + nl]), "\t".join(parts[1 + nl :]))
            c[key] = c.get(key, 0) + n


def process_id(roles: str) -> str:
    return f"{roles}|{socket.gethostname()}-{os.getpid()}"


class Flusher:
    """Adds a process's deltas to the install's hash, every ``interval`` and at stop."""

    def __init__(self, metrics: Metrics, system: System, clock: Any, interval: float = FLUSH_SECONDS):
        self.metrics = metrics
        self.system = system
        self.clock = clock
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def member(self) -> str:
        return process_id(self.metrics.roles or "process")

    async def flush(self) -> None:
        counts = self.metrics.take()
        try:
            await self.system.add_metrics(counts, self.member, self.clock.now_us())
        except BaseException:
            self.metrics.give_back(counts)  # kept for the next flush
            raise

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("metrics not flushed: %s", type(exc).__name__)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="metrics-flush")

    async def stop(self) -> None:
        if self._task is None and not self.metrics.pending():
            return  # never started (start-up stopped before) and nothing to write
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush()
            await self.system.drop_process(self.member)
        except Exception as exc:
            log.warning("metrics not flushed at shutdown: %s", type(exc).__name__)


# ---- reading: install-wide counters and live gauges -----------------------------------------
@dataclass(frozen=True, slots=True)
class Gauge:
    name: str
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


async def read_gauges(system: System, now_us: int) -> list[Gauge]:
    """Backlog gauges summed over partitions, snapshot lag, scheduler heartbeat, processes:
    one pipelined read."""
    return gauges(await system.backlog(now_us, overdue_us=_US, alive_us=PROCESS_ALIVE_US), now_us)


def gauges(b: Backlog, now_us: int) -> list[Gauge]:
    """The live gauges of a backlog read (``store.system.backlog``)."""
    oldest_ms = b.outbox_oldest_ms
    out = [
        Gauge(
            "cuefast_outbox_entries",
            "Webhook executions in the outbox streams (queued or in flight).",
            b.outbox,
        ),
        Gauge(
            "cuefast_outbox_oldest_age_seconds",
            "Age of the oldest outbox entry (0 when empty): the dispatch lag.",
            0.0 if oldest_ms is None else max(0.0, now_us / _US - oldest_ms / 1000),
        ),
        Gauge("cuefast_retry_backlog", "Webhook executions waiting for a retry.", b.retries),
        Gauge(
            "cuefast_delayed_backlog",
            "Webhook executions waiting for a later time (send_at, jittered fire_at).",
            b.delayed,
        ),
        Gauge("cuefast_webhook_attempts_in_flight", "Leased webhook attempts.", b.leases),
        Gauge("cuefast_worker_claimable", "Worker executions waiting to be claimed.", b.claimable),
        Gauge("cuefast_worker_claims_active", "Worker executions claimed, lease running.", b.claims),
        Gauge(
            "cuefast_outcome_deadlines_armed",
            "Executions waiting for an outcome before a deadline.",
            b.deadlines,
        ),
        Gauge("cuefast_cues_overdue", "Cues whose next run is more than 1 s in the past.", b.overdue_cues),
    ]
    if b.snapshot_us is not None:
        ok_us = b.snapshot_us
        out.append(
            Gauge(
                "cuefast_snapshot_lag_seconds",
                "Seconds since the last successful PostgreSQL snapshot.",
                max(0.0, (now_us - ok_us) / _US),
            )
        )
    if b.poller_us is not None:
        out.append(
            Gauge(
                "cuefast_scheduler_heartbeat_age_seconds",
                "Seconds since a scheduler last ran a pass or a heartbeat.",
                max(0.0, (now_us - b.poller_us) / _US),
            )
        )
    by_role: dict[str, int] = {}
    for member in b.processes:
        role = member.split("|", 1)[0]
        by_role[role] = by_role.get(role, 0) + 1
    for role, n in sorted(by_role.items()):
        out.append(
            Gauge(
                "cuefast_processes",
                "cuefast processes that flushed metrics in the last 30 s.",
                n,
                (("roles", role),),
            )
        )
    return out


# ---- exposition (text format 0.0.4) -----------------------------------------------------------
MEDIA_TYPE = "text/plain; version=0.0.4"
CONTENT_TYPE = MEDIA_TYPE + "; charset=utf-8"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _num(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _le(bound: float) -> str:
    return repr(float(bound))


def render(counters: Mapping[str, int], gauges: Sequence[Gauge]) -> str:
    """The exposition of every family: counters and histograms from the hash (families with
    no samples yet are announced with HELP/TYPE only, counters without labels as 0)."""
    samples: dict[str, dict[tuple[str, ...], dict[str, int]]] = {s.name: {} for s in SPECS}
    for field, n in counters.items():
        parts = field.split("\t")
        spec = _BY_NAME.get(parts[0])
        if spec is None:
            continue
        nl = len(spec.labels)
        values = tuple(parts[1 : 1 + nl])
        if len(values) != nl:
            continue
        suffix = "\t".join(parts[1 + nl :])
        if bool(spec.buckets) != bool(suffix):
            continue
        slot = samples[spec.name].setdefault(values, {})
        slot[suffix] = slot.get(suffix, 0) + n
    lines: list[str] = []
    for spec in SPECS:
        kind = "histogram" if spec.buckets else "counter"
        lines.append(f"# HELP {spec.name} {_escape_help(spec.help)}")
        lines.append(f"# TYPE {spec.name} {kind}")
        rows = samples[spec.name]
        if not rows and not spec.labels and not spec.buckets:
            lines.append(f"{spec.name} 0")
        for values in sorted(rows):
            pairs = list(zip(spec.labels, values, strict=True))
            vals = rows[values]
            if not spec.buckets:
                lines.append(f"{spec.name}{_labels(pairs)} {vals.get('', 0)}")
                continue
            cumulative = 0
            for i, bound in enumerate(spec.buckets):
                cumulative += vals.get(str(i), 0)
                lines.append(f"{spec.name}_bucket{_labels([*pairs, ('le', _le(bound))])} {cumulative}")
            cumulative += vals.get(str(len(spec.buckets)), 0)
            lines.append(f"{spec.name}_bucket{_labels([*pairs, ('le', '+Inf')])} {cumulative}")
            lines.append(f"{spec.name}_sum{_labels(pairs)} {_num(vals.get('s', 0) / _US)}")
            lines.append(f"{spec.name}_count{_labels(pairs)} {cumulative}")
    seen: set[str] = set()
    for g in gauges:
        if g.name not in seen:
            seen.add(g.name)
            lines.append(f"# HELP {g.name} {_escape_help(g.help)}")
            lines.append(f"# TYPE {g.name} gauge")
        lines.append(f"{g.name}{_labels(g.labels)} {_num(g.value)}")
    return "\n".join(lines) + "\n"
