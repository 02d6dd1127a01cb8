"""Listing at scale (issue 14): one account grown to 300k executions; list latency and memory.

``./dev bench scale [--sizes 1000,10000,100000,300000] [--requests 2000] [--warmup 10] [--json PATH]``

Starts ``cuefast api`` (its own process: no scheduler or dispatcher changes the data while it is
measured) on the local Redis and PostgreSQL under a fresh key prefix, deleted afterwards.
Registers one account and creates 50 cues (25 webhook, 25 worker) over HTTP, then grows the
account to each size in turn through the store's own scripts (setup, timed but not a target):
executions created with ``store.executions.create`` (90 % ``scheduled``, 8 % ``manual_fire``, 2 %
``replay``; one busy worker cue holds ~10 %), then moved on: worker executions claimed by four
workers (``store.claims.claim``) and most given an outcome (``store.outcomes.record_many``),
webhook executions read from the outbox, leased and finished (``store.delivery``: success, some
with a body outcome, or failed). After each step, per filter of CONTRACT.md §8.3: ``--warmup``
then ``--requests`` sequential ``GET /v1/executions`` with one client (p50/p99, the server
process's and Redis's CPU per request, and each answer's ``total`` checked against the
seeding's own count); then Redis memory per execution (``INFO used_memory`` delta, and ``MEMORY USAGE`` of
every key of the prefix: execution hashes, snapshot dirty sets, the rest, and the rest by kind).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.__main__ import ROOT, _cleanup, _free_port, _git_sha, _server_env
from bench.cpu import process_seconds, redis_seconds_async
from cuefast.ids import new_execution_id
from cuefast.services.outcomes import outcome_state, parse_outcome
from cuefast.store import Status, Store, connect
from cuefast.store.claims import ClaimRequest, WorkIndex
from cuefast.store.delivery import AttemptResult, BodyOutcome
from cuefast.store.executions import Executions
from cuefast.store.keys import Keys
from cuefast.store.outcomes import Outcome
from cuefast.store.scripts import Arg, Call, Script, Scripts

SIZES = (1_000, 10_000, 100_000, 300_000)
PARTITIONS = 16
N_CUES = 50  # half webhook, half worker
BUSY_SHARE = 0.10  # of every step's executions, on one worker cue
WORKERS = ("scale-w0", "scale-w1", "scale-w2", "scale-w3")
LEASE_US = 3_600_000_000  # claims stay held (no reaper runs in ``cuefast api``)
CREATE_BATCH = 500  # script calls per pipeline
CREATE_PIPELINES = 4  # pipelines in flight
P50_TARGET_MS = 20.0
P99_GROWTH_TARGET = 1.5
MEMORY_TARGET_B = 1536

Row = tuple[str, str, str, str, str]
"""an execution as the filters see it: (cue, status, worker, outcome_state, triggered_by)"""


@dataclass
class Account:
    key: str
    account_id: str
    webhook_cues: list[str]
    worker_cues: list[str]
    payloads: dict[str, str]

    @property
    def busy_cue(self) -> str:
        return self.worker_cues[0]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def filters(acct: Account) -> list[tuple[str, dict[str, str]]]:
    """Every filter CONTRACT.md §8.3 allows, as (label, query)."""
    busy, worker = acct.busy_cue, WORKERS[0]
    return [
        ("none", {}),
        ("status=pending", {"status": "pending"}),
        ("status__in=success,failed", {"status__in": "success,failed"}),
        ("cue_id=<busy>", {"cue_id": busy}),
        ("cue_id=<busy>&status=success", {"cue_id": busy, "status": "success"}),
        ("outcome_state=reported_success", {"outcome_state": "reported_success"}),
        ("triggered_by=manual_fire", {"triggered_by": "manual_fire"}),
        ("worker_id=<w0>", {"worker_id": worker}),
        ("worker_id=<w0>&status=success", {"worker_id": worker, "status": "success"}),
        ("offset=1000", {"offset": "1000"}),
        ("cursor after 1000", {"cursor": "@1000"}),  # cuefast's keyset cursor at the same depth
    ]


async def _cursor_at(client: httpx.AsyncClient, acct: Account, depth: int) -> str:
    """The ``next_cursor`` after the account's newest ``depth`` executions (walked 100 at a time)."""
    cursor = ""
    for _ in range(depth // 100):
        res = await client.get("/v1/executions", params={"limit": "100", "cursor": cursor}, headers=acct.auth)
        res.raise_for_status()
        cursor = res.json()["next_cursor"] or ""
    return cursor


def expected_total(counts: Counter[Row], query: dict[str, str]) -> int:
    """The ``total`` the listing must answer for ``query``, from the seeding's own bookkeeping."""
    statuses = (
        {query["status"]}
        if "status" in query
        else set(query["status__in"].split(","))
        if "status__in" in query
        else None
    )
    return sum(
        n
        for (cue, st, cw, os_, tb), n in counts.items()
        if (statuses is None or st in statuses)
        and query.get("cue_id", cue) == cue
        and query.get("worker_id", cw) == cw
        and query.get("outcome_state", os_) == os_
        and query.get("triggered_by", tb) == tb
    )


async def wait_healthy(client: httpx.AsyncClient, server: subprocess.Popen[bytes]) -> None:
    """Until the ``cuefast api`` behind ``client`` answers ``/health`` (60 s at most)."""
    for _ in range(300):
        if server.poll() is not None:
            raise SystemExit("cuefast api exited")
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("cuefast api did not become healthy")


async def register(client: httpx.AsyncClient, store: Store) -> Account:
    """One account and its cues, through the API."""
    res = await client.post("/v1/auth/register", json={"email": f"scale-{uuid.uuid4().hex[:8]}@bench.test"})
    res.raise_for_status()
    key = str(res.json()["api_key"])
    account_id = await store.accounts.account_of_key(hashlib.sha256(key.encode()).hexdigest())
    acct = Account(key, str(account_id), [], [], {})
    for i in range(N_CUES):
        worker = i % 2 == 1
        payload = {"task": f"report-{i % 5}", "customer": 1000 + i}
        body: dict[str, Any] = {
            "name": f"scale-{i}",
            "schedule": {"type": "recurring", "cron": f"{i % 60} * * * *", "timezone": "Europe/Paris"},
            "payload": payload,
        }
        if worker:
            body["transport"] = "worker"
        else:
            body["callback"] = {"url": "http://127.0.0.1:9/hook", "headers": {"X-Team": "bench"}}
        res = await client.post("/v1/cues", json=body, headers=acct.auth)
        res.raise_for_status()
        cid = str(res.json()["id"])
        (acct.worker_cues if worker else acct.webhook_cues).append(cid)
        acct.payloads[cid] = json.dumps(payload, separators=(",", ":"))
    return acct


@dataclass
class Seeder:
    """Grows the account through the store's scripts and counts every execution's facts."""

    store: Store
    acct: Account
    rng: random.Random = field(default_factory=lambda: random.Random(14))  # noqa: S311 - a fixed mix, not a secret
    counts: Counter[Row] = field(default_factory=Counter)
    total: int = 0
    earlier: list[str] = field(default_factory=list)
    """a few ids of earlier steps, for replays' ``replayed_from``"""

    def states(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for row, n in self.counts.items():
            out[row[1]] += n
        return out

    def now(self) -> int:
        return time.time_ns() // 1000

    async def grow(self, n: int) -> dict[str, float]:
        """``n`` more executions, moved into a realistic mix of states; seconds per stage."""
        t0 = time.perf_counter()
        rows = await self._create(n)
        t1 = time.perf_counter()
        await self._work(rows)
        t2 = time.perf_counter()
        await self._deliver(rows)
        t3 = time.perf_counter()
        self.counts.update((r[0], r[1], r[2], r[3], r[4]) for r in rows.values())
        self.total += n
        self.earlier = list(rows)[:100]
        return {"create_s": t1 - t0, "worker_s": t2 - t1, "webhook_s": t3 - t2, "seed_s": t3 - t0}

    async def _create(self, n: int) -> dict[str, list[str]]:
        acct, keys, rng = self.acct, self.store.keys, self.rng
        cues = acct.webhook_cues + acct.worker_cues
        plan: list[tuple[str, str, str, str]] = []
        for _ in range(n):
            cue = acct.busy_cue if rng.random() < BUSY_SHARE else rng.choice(cues)
            tb = rng.choices(("scheduled", "manual_fire", "replay"), (90, 8, 2))[0]
            rf = rng.choice(self.earlier) if tb == "replay" and self.earlier else ""
            plan.append((new_execution_id(keys.cue_partition(cue)), cue, tb, rf))
        # The repository builds each call (its keys and arguments, as the API's fire does); the
        # calls then run as pipelines of EVALSHA, a few pipelines at a time.
        recorder = _Recorder(self.store.scripts)
        making = Executions(self.store.redis, keys, recorder)
        for eid, cue, tb, rf in plan:
            now = self.now()
            await making.create(
                execution_id=eid,
                cue_id=cue,
                account_id=acct.account_id,
                scheduled_us=now,
                payload_json=acct.payloads[cue],
                triggered_by=tb,
                replayed_from=rf,
                now_us=now,
            )
        calls = recorder.calls
        sem = asyncio.Semaphore(CREATE_PIPELINES)

        async def batch(chunk: Sequence[Call]) -> None:
            async with sem:
                for res in await self.store.scripts.run_many(chunk):
                    assert Status(int(res[0])) is Status.OK, res

        await asyncio.gather(
            *(batch(calls[i : i + CREATE_BATCH]) for i in range(0, len(calls), CREATE_BATCH))
        )
        return {eid: [cue, "pending", "", "", tb] for eid, cue, tb, _ in plan}

    async def _work(self, rows: dict[str, list[str]]) -> None:
        """Worker executions: 95 % claimed (by one of ``WORKERS``), of those 95 % given an
        outcome (85 % success); the rest stay pending or claimed."""
        store, keys, rng, acct = self.store, self.store.keys, self.rng, self.acct
        worker_cues = set(acct.worker_cues)
        by_worker: dict[str, dict[int, list[str]]] = {w: {} for w in WORKERS}
        for eid, row in rows.items():
            if row[0] in worker_cues and rng.random() < 0.95:
                p = keys.execution_partition(eid)
                assert p is not None
                by_worker[rng.choice(WORKERS)].setdefault(p, []).append(eid)
        outcomes: list[Outcome] = []
        now = self.now()
        for worker, parts in by_worker.items():
            requests = [
                ClaimRequest(WorkIndex(p), 0, ids[i : i + 500])
                for p, ids in parts.items()
                for i in range(0, len(ids), 500)
            ]
            for i in range(0, len(requests), 64):
                claimed = await store.claims.claim(
                    acct.account_id, worker, LEASE_US, now, requests[i : i + 64]
                )
                for claim in (c for batch in claimed for c in batch):
                    assert claim.status is Status.OK, claim
                    rows[claim.execution_id][1:3] = ["delivering", worker]
                    if rng.random() < 0.95:
                        ok = rng.random() < 0.85
                        parsed = parse_outcome(
                            {"success": True, "result": "done", "metadata": {"rows": rng.randrange(1000)}}
                            if ok
                            else {"success": False, "error": "upstream timed out"}
                        )
                        state = outcome_state(ok, None, parsed.evidence)
                        doc = parsed.document(now)
                        outcomes.append(Outcome(claim.execution_id, doc, ok, state, parsed.error or ""))
        for i in range(0, len(outcomes), 2000):
            chunk = outcomes[i : i + 2000]
            for o, rec in zip(
                chunk, await store.outcomes.record_many(acct.account_id, chunk, now), strict=True
            ):
                assert rec.status is Status.OK, rec
                rows[o.execution_id][1] = rec.execution_status
                rows[o.execution_id][3] = o.state

    async def _deliver(self, rows: dict[str, list[str]]) -> None:
        """Webhook executions, from the outbox: 2 % left pending (read, never leased), the rest
        leased and finished: 90 % a 200 (a third of them with a body outcome), 10 % a final 500."""
        store, rng = self.store, self.rng
        body = parse_outcome({"success": True, "result": "sent"})
        while entries := await store.delivery.read("scale", 1000, None):
            now = self.now()
            batches: dict[int, list[str]] = {}
            entry_of: dict[str, str] = {}
            for e in entries:
                if e.execution_id in rows and rng.random() < 0.98:
                    batches.setdefault(e.partition, []).append(e.execution_id)
                    entry_of[e.execution_id] = e.entry_id
            leases = await store.delivery.start(batches, now, timeout_s=10, stale_s=60)
            results: dict[int, list[AttemptResult]] = {}
            for p, eids in batches.items():
                for eid, lease in zip(eids, leases[p], strict=True):
                    assert not isinstance(lease, Status), (eid, lease)
                    ok = rng.random() < 0.9
                    outcome = (
                        BodyOutcome(body.document(now), True, "reported_success", "")
                        if ok and rng.random() < 1 / 3
                        else None
                    )
                    results.setdefault(p, []).append(
                        AttemptResult(
                            eid,
                            ok,
                            200 if ok else 500,
                            "" if ok else "HTTP 500",
                            None,
                            None,
                            entry_of[eid],
                            lease.lease_until,
                            outcome,
                        )
                    )
            finished = await store.delivery.finish(results, now)
            for p, done in finished.items():
                if isinstance(done, Exception):  # a node unreachable (Redis Cluster)
                    raise done
                for res, fin in zip(results[p], done, strict=True):
                    assert fin.status is Status.OK, fin
                    rows[res.execution_id][1] = fin.execution_status
                    if fin.outcome_recorded:
                        rows[res.execution_id][3] = "reported_success"


class _Recorder(Scripts):
    """A script runner that runs nothing: it keeps each call a repository method makes (and
    answers OK), so the calls can be sent later as pipelines (``Scripts.run_many``)."""

    def __init__(self, real: Scripts) -> None:
        self.redis = real.redis
        self.wire = real.wire
        self._scripts = real._scripts
        self.calls: list[Call] = []

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        self.calls.append((script, list(keys), list(args)))
        return [int(Status.OK), ""]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _listing(client: httpx.AsyncClient, acct: Account, query: dict[str, str]) -> tuple[float, int]:
    """One ``GET /v1/executions``: (ms, its ``total``)."""
    t = time.perf_counter()
    res = await client.get("/v1/executions", params=query, headers=acct.auth)
    ms = (time.perf_counter() - t) * 1000
    res.raise_for_status()
    return ms, int(res.json()["total"])


async def _query(client: httpx.AsyncClient, acct: Account, spec: dict[str, str]) -> dict[str, str]:
    """A filter's query for this account (a cursor spec "@<depth>" walked to its cursor)."""
    if spec.get("cursor", "").startswith("@"):
        return {"cursor": await _cursor_at(client, acct, int(spec["cursor"][1:]))}
    return spec


async def measure(
    store: Store,
    client: httpx.AsyncClient,
    pid: int,
    acct: Account,
    counts: Counter[Row],
    requests: int,
    warmup: int,
    commandstats: bool = False,
    companion: tuple[Account, Counter[Row]] | None = None,
) -> list[dict[str, Any]]:
    """Per filter: ``warmup`` then ``requests`` sequential listings, timed one by one. With
    ``commandstats`` (a private Redis only: it resets the server's statistics), also each
    command's calls per listing — script-nested ones included — and the scripts' µs per listing
    (``INFO commandstats``: the commands' own time, without the event loop, networking or cron).
    With a ``companion`` (a small account of the same mix), then ``requests`` more of this
    account's listings alternated one by one with the companion's same filter: the two p99s
    come from the same seconds, so the machine's drift between steps drops out of their ratio."""
    out: list[dict[str, Any]] = []
    for (label, spec), (_, cspec) in zip(
        filters(acct), filters(companion[0]) if companion else filters(acct), strict=True
    ):
        expected = expected_total(counts, spec)
        query = await _query(client, acct, spec)
        for _ in range(warmup):
            await _listing(client, acct, query)
        times: list[float] = []
        totals: set[int] = set()
        if commandstats:
            await store.redis.config_resetstat()
        cpu0, rcpu0 = process_seconds(pid), await redis_seconds_async(store.redis)
        for _ in range(requests):
            ms, total = await _listing(client, acct, query)
            times.append(ms)
            totals.add(total)
        cpu = (process_seconds(pid) - cpu0) / max(requests, 1) * 1000
        rcpu = (await redis_seconds_async(store.redis) - rcpu0) / max(requests, 1) * 1000
        stats = await _commandstats(store, requests) if commandstats else None
        row: dict[str, Any] = {
            "filter": label,
            "query": query,
            "expected_total": expected,
            "totals": sorted(totals),
            "total_ok": totals == {expected},
            "p50_ms": percentile(times, 0.5),
            "p99_ms": percentile(times, 0.99),
            "max_ms": max(times),
            "server_cpu_ms": cpu,
            "redis_cpu_ms": rcpu,
            **({"commandstats": stats} if stats is not None else {}),
        }
        if companion is not None:
            row["paired"] = await _paired(client, acct, query, companion, cspec, requests, warmup)
            row["total_ok"] = row["total_ok"] and row["paired"]["companion_total_ok"]
        out.append(row)
    return out


async def _paired(
    client: httpx.AsyncClient,
    acct: Account,
    query: dict[str, str],
    companion: tuple[Account, Counter[Row]],
    spec: dict[str, str],
    requests: int,
    warmup: int,
) -> dict[str, Any]:
    """``requests`` listings of the account and of the companion, alternated (who goes first
    alternates too): both p50/p99 and the ratio of the p99s."""
    small, small_counts = companion
    expected = expected_total(small_counts, spec)
    cquery = await _query(client, small, spec)
    for _ in range(warmup):
        await _listing(client, small, cquery)
    big_ms: list[float] = []
    small_ms: list[float] = []
    totals: set[int] = set()
    for i in range(requests):
        for who in (acct, small) if i % 2 == 0 else (small, acct):
            ms, total = await _listing(client, who, query if who is acct else cquery)
            if who is acct:
                big_ms.append(ms)
            else:
                small_ms.append(ms)
                totals.add(total)
    big99, small99 = percentile(big_ms, 0.99), percentile(small_ms, 0.99)
    return {
        "p50_ms": percentile(big_ms, 0.5),
        "p99_ms": big99,
        "companion_p50_ms": percentile(small_ms, 0.5),
        "companion_p99_ms": small99,
        "p99_ratio": big99 / small99,
        "companion_total_ok": totals == {expected},
    }


async def _commandstats(store: Store, requests: int) -> dict[str, Any]:
    """Calls per listing by command (nested in scripts too) and the scripts' µs per listing,
    from ``INFO commandstats`` since the last reset (the INFO call itself left out)."""
    info = await store.redis.info("commandstats")
    calls: dict[str, float] = {}
    script_us = 0.0
    for name, stat in info.items():
        cmd = name.removeprefix("cmdstat_")
        if cmd in ("info", "config|resetstat"):
            continue
        calls[cmd] = int(stat["calls"]) / max(requests, 1)
        if cmd in ("evalsha", "eval", "fcall"):
            script_us += int(stat["usec"]) / max(requests, 1)
    return {"calls": dict(sorted(calls.items(), key=lambda kv: -kv[1])), "script_us": script_us}


_EXEC_KEY = re.compile(r":exec:[^:]+$")


async def memory(store: Store) -> dict[str, int]:
    """``used_memory``, the number of keys in the database, and ``MEMORY USAGE`` (exact: samples 0)
    of every key of the prefix, by kind: execution hashes, snapshot dirty sets, the rest."""
    r = store.redis
    info = await r.info("memory")
    dbsize = int(await r.dbsize())
    keys = [str(k) async for k in r.scan_iter(match=f"{store.keys.prefix}:*", count=10_000)]
    sizes: dict[str, int] = {"exec_hashes": 0, "dirty_sets": 0, "other_keys": 0}
    encodings: Counter[str] = Counter()
    families: Counter[str] = Counter()  # the other keys' bytes by kind (_family)
    for i in range(0, len(keys), 5000):
        chunk = keys[i : i + 5000]
        async with r.pipeline(transaction=False) as pipe:
            for k in chunk:
                pipe.memory_usage(k, samples=0)
                if _EXEC_KEY.search(k):
                    pipe.object("encoding", k)
            replies = iter(await pipe.execute())
        for k in chunk:
            b = int(next(replies) or 0)
            if _EXEC_KEY.search(k):
                sizes["exec_hashes"] += b
                enc = str(next(replies))
                encodings[f"exec_{enc}_keys"] += 1
                encodings[f"exec_{enc}_bytes"] += b
            elif k.endswith((":dirty", ":dirty:proc")):
                sizes["dirty_sets"] += b
            else:
                sizes["other_keys"] += b
                families[f"other:{_family(k)}"] += b
    return {
        "used_memory": int(info["used_memory"]),
        "dbsize": dbsize,
        "prefix_keys": len(keys),
        **sizes,
        **encodings,
        **families,
    }


def _family(key: str) -> str:
    """A key's kind for the memory breakdown: its name after the slot tag, up to the first id
    (``ix:a``, ``ix:c``, ``outbox``, ``cue``…)."""
    tail = key.split("}:", 1)[-1]
    words = tail.split(":")
    return ":".join(words[:2]) if words[0] == "ix" else words[0].split("|")[0]


def _per_exec(mem: dict[str, int], base: dict[str, int], n: int) -> dict[str, float]:
    return {
        "used_memory_delta": (mem["used_memory"] - base["used_memory"]) / n,
        "exec_hash": (mem["exec_hashes"] - base["exec_hashes"]) / n,
        "dirty_marks": (mem["dirty_sets"] - base["dirty_sets"]) / n,
        "other_keys": (mem["other_keys"] - base["other_keys"]) / n,
        "foreign_keys_delta": float(
            (mem["dbsize"] - base["dbsize"]) - (mem["prefix_keys"] - base["prefix_keys"])
        ),
    }


def targets(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 14's three targets over the measured steps."""
    out: list[dict[str, Any]] = []
    last = steps[-1]
    if last["listings"]:
        out += _latency_targets(steps)
    per = last["memory_per_execution"]["used_memory_delta"]
    out.append(
        {
            "target": f"Redis memory <= {MEMORY_TARGET_B} B per execution (at {last['size']})",
            "pass": per <= MEMORY_TARGET_B,
            "detail": f"{per:,.0f} B (used_memory delta, incl. indexes and dirty marks)",
        }
    )
    if not all(r["total_ok"] for s in steps for r in s["listings"]):
        out.append({"target": "every listing's total equals the seeded count", "pass": False, "detail": ""})
    return out


def _latency_targets(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latency targets, over CONTRACT.md §8.3's filters; the deep offset and the cursor at
    the same depth are reported beside them (``info``), not as targets."""
    out: list[dict[str, Any]] = []
    slow = [
        f"{s['size']}: {r['filter']} {r['p50_ms']:.1f} ms"
        for s in steps
        for r in s["listings"]
        if r["p50_ms"] > P50_TARGET_MS and not _is_extra(r["filter"])
    ]
    out.append(
        {
            "target": f"p50 <= {P50_TARGET_MS:.0f} ms at every size, every filter (CONTRACT.md §8.3)",
            "pass": not slow,
            "detail": "; ".join(slow) or "all within",
        }
    )
    first, last = steps[0], steps[-1]
    if len(steps) > 1:
        grown = []
        for a, b in zip(first["listings"], last["listings"], strict=True):
            ratio = b["p99_ms"] / a["p99_ms"]
            if ratio > P99_GROWTH_TARGET and not _is_extra(a["filter"]):
                grown.append(f"{a['filter']} x{ratio:.2f}")
        out.append(
            {
                "target": f"p99 at {last['size']} <= {P99_GROWTH_TARGET} x p99 at {first['size']}, "
                "every filter"
                + ("" if (first["size"], last["size"]) == (SIZES[0], SIZES[-1]) else " (issue: 300k vs 1k)"),
                "pass": not grown,
                "detail": "; ".join(grown) or "all within",
            }
        )
    paired = [r for r in last["listings"] if "paired" in r and not _is_extra(r["filter"])]
    if paired:
        over = [
            f"{r['filter']} x{r['paired']['p99_ratio']:.2f}"
            for r in paired
            if r["paired"]["p99_ratio"] > P99_GROWTH_TARGET
        ]
        out.append(
            {
                "target": f"p99 at {last['size']} <= {P99_GROWTH_TARGET} x p99 of a "
                f"{min(s['size'] for s in steps)}-execution account in the same seconds (companion), "
                "every filter",
                "pass": not over,
                "detail": "; ".join(over) or "all within",
            }
        )
    extras = [
        f"{r['filter']}: p50 {r['p50_ms']:.1f} ms at {last['size']}, p99 x{r['p99_ms'] / a['p99_ms']:.2f}"
        for a, r in zip(first["listings"], last["listings"], strict=True)
        if _is_extra(r["filter"])
    ]
    if extras:
        out.append({"target": "beside the filters (not a target)", "pass": None, "detail": "; ".join(extras)})
    return out


def _is_extra(label: str) -> bool:
    """A listing the bench measures beside the §8.3 filters (deep offset, cursor)."""
    return label.startswith(("offset=", "cursor "))


def _print_step(step: dict[str, Any]) -> None:
    seed = step["seed"]
    print(
        f"\n## {step['size']:,} executions (+{step['added']:,} seeded in {seed['seed_s']:.1f} s: create "
        f"{seed['create_s']:.1f}, worker claims/outcomes {seed['worker_s']:.1f}, webhook deliveries "
        f"{seed['webhook_s']:.1f})",
        flush=True,
    )
    print("| filter | total | p50 ms | p99 ms | max ms | server CPU ms/req | Redis CPU ms/req |")
    print("|---|---|---|---|---|---|---|")
    for r in step["listings"]:
        total = str(r["expected_total"]) if r["total_ok"] else f"{r['totals']} != {r['expected_total']}!"
        print(
            f"| {r['filter']} | {total} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
            f"{r['server_cpu_ms']:.2f} | {r['redis_cpu_ms']:.2f} |"
        )
    if any("paired" in r for r in step["listings"]):
        print("\nalternated one by one with the companion account (same filter, same seconds):")
        print("| filter | p50 / p99 ms | companion p50 / p99 ms | p99 ratio |")
        print("|---|---|---|---|")
        for r in step["listings"]:
            pr = r["paired"]
            print(
                f"| {r['filter']} | {pr['p50_ms']:.1f} / {pr['p99_ms']:.1f} | {pr['companion_p50_ms']:.1f} / "
                f"{pr['companion_p99_ms']:.1f} | x{pr['p99_ratio']:.2f} |"
            )
    for r in step["listings"]:
        if "commandstats" in r:
            st = r["commandstats"]
            calls = ", ".join(f"{c} {n:.1f}" for c, n in st["calls"].items() if n >= 0.05)
            print(f"  {r['filter']}: scripts {st['script_us']:.0f} µs/listing; calls/listing: {calls}")
    m = step["memory_per_execution"]
    print(
        f"memory per execution: {m['used_memory_delta']:,.0f} B (used_memory delta; marginal since the "
        f"last step {step['marginal_bytes']:,.0f} B); MEMORY USAGE: exec hash {m['exec_hash']:,.0f} B, "
        f"indexes/streams/other keys {m['other_keys']:,.0f} B, snapshot dirty marks {m['dirty_marks']:,.0f} B"
        f"; keys of other prefixes changed meanwhile by {m['foreign_keys_delta']:+.0f}",
        flush=True,
    )
    print(f"execution hashes by encoding: {_encodings(step['memory'])}", flush=True)
    print(f"other keys per execution, by kind: {_families(step)}", flush=True)


def _families(step: dict[str, Any]) -> str:
    """The other keys' ``MEMORY USAGE`` per execution by kind, largest first (e.g. "ix:a 402 B")."""
    mem, n = step["memory"], step["size"]
    kinds = ((v, k.removeprefix("other:")) for k, v in mem.items() if k.startswith("other:"))
    rows = sorted(kinds, reverse=True)
    return ", ".join(f"{k} {v / n:,.0f} B" for v, k in rows if v / n >= 1) or "-"


def _encodings(mem: dict[str, int]) -> str:
    """e.g. "hashtable 61 % (avg 1,901 B), listpack 39 % (avg 311 B)"."""
    n = sum(v for k, v in mem.items() if k.startswith("exec_") and k.endswith("_keys"))
    parts = []
    for k, v in sorted(mem.items()):
        if k.startswith("exec_") and k.endswith("_keys"):
            enc = k.removeprefix("exec_").removesuffix("_keys")
            avg = mem[f"exec_{enc}_bytes"] / v
            parts.append(f"{enc} {100 * v / n:.0f} % (avg {avg:,.0f} B)")
    return ", ".join(parts)


async def run(
    sizes: Sequence[int],
    requests: int,
    warmup: int,
    redis_url: str,
    database_url: str,
    json_path: Path | None,
    *,
    schema: str = "cuefast_bench",
    commandstats: bool = False,
    companion: bool = False,
) -> dict[str, Any]:
    """The whole scenario; the result document (also written to ``json_path``)."""
    prefix = f"bscale{uuid.uuid4().hex[:8]}"
    env = _server_env(prefix)
    env.update(
        CUEFAST_REDIS_URL=redis_url,
        CUEFAST_DATABASE_URL=database_url,
        CUEFAST_DATABASE_SCHEMA=schema,
        CUEFAST_PARTITIONS=str(PARTITIONS),
    )
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "cuefast", "api", "--port", str(port)], env=env, cwd=ROOT
    )
    store = Store(connect(redis_url, max_connections=64), Keys(prefix, PARTITIONS))
    result: dict[str, Any] = {
        "bench": "scale",
        "git": _git_sha(),
        "prefix": prefix,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "requests": requests,
        "warmup": warmup,
        "steps": [],
    }
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
            await wait_healthy(client, server)
            await store.preload()
            result["redis"] = (await store.redis.info("server"))["redis_version"]
            print(f"{result['machine']}; Redis {result['redis']}; git {result['git']}; prefix {prefix}")
            await store.delivery.ensure_groups()
            pair: tuple[Account, Counter[Row]] | None = None
            if companion:  # seeded first, so the memory per execution below leaves it out
                small = Seeder(store, await register(client, store))
                await small.grow(min(sizes))
                pair = (small.acct, small.counts)
                result["companion"] = {"size": small.total, "account": small.acct.account_id}
            base = await memory(store)
            acct = await register(client, store)
            seeder = Seeder(store, acct)
            prev_used = base["used_memory"]
            for size in sorted(sizes):
                added = size - seeder.total
                if added <= 0:
                    continue
                seed = await seeder.grow(added)
                mem = await memory(store)
                step = {
                    "size": size,
                    "added": added,
                    "seed": seed,
                    "memory": mem,
                    "memory_per_execution": _per_exec(mem, base, size),
                    "marginal_bytes": (mem["used_memory"] - prev_used) / added,
                    "states": dict(seeder.states().most_common()),
                }
                prev_used = mem["used_memory"]
                step["listings"] = (
                    await measure(
                        store,
                        client,
                        server.pid,
                        acct,
                        seeder.counts,
                        requests,
                        warmup,
                        commandstats,
                        pair,
                    )
                    if requests
                    else []
                )
                result["steps"].append(step)
                _print_step(step)
        result["targets"] = targets(result["steps"]) if result["steps"] else []
        print()
        for t in result["targets"]:
            verdict = "INFO" if t["pass"] is None else "PASS" if t["pass"] else "FAIL"
            print(f"{verdict}: {t['target']} — {t['detail']}")
        if json_path is not None:
            json_path.write_text(json.dumps(result, indent=2))
            print(f"results: {json_path}")
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)
        await store.close()
        _cleanup(redis_url, prefix)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench scale", description=__doc__)
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in SIZES),
        help="comma-separated execution counts, grown in order in one account",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=2000,
        help="timed listings per filter and size (0: seeding and memory only; the p99 of 2,000 is "
        "the 20th slowest, of 500 the 5th, of 100 the 2nd: nearly the max)",
    )
    parser.add_argument("--warmup", type=int, default=10, help="untimed listings first")
    parser.add_argument(
        "--companion",
        action="store_true",
        help="also a second account of the smallest size, its listings alternated one by one "
        "with the big account's at every step: p99 ratios from the same seconds",
    )
    parser.add_argument(
        "--commandstats",
        action="store_true",
        help="also Redis calls and script µs per listing (INFO commandstats; resets the server's "
        "statistics: a private Redis only)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="result file (default: a fresh file in $TMPDIR)"
    )
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    path = (
        args.json or Path(tempfile.gettempdir()) / f"cuefast-bench-scale-{_git_sha()}-{int(time.time())}.json"
    )
    asyncio.run(
        run(
            sizes,
            args.requests,
            args.warmup,
            os.environ.get("CUEFAST_REDIS_URL", "redis://127.0.0.1:6379/0"),
            os.environ.get("CUEFAST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
            path,
            commandstats=args.commandstats,
            companion=args.companion,
        )
    )
