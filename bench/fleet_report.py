"""Report and checks of ``./dev bench fleet`` / ``soak`` from the raw material bench/fleet.py collects."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from bench import fleet

WARMUP_SECONDS = 120.0
MAX_BYTES_PER_EXECUTION = 2048
"""A retained execution is ~0.8-1.1 KB with its indexes (``./dev bench engine memory``); this
load's executions also hold an outcome with evidence, a claim and, for fires, a payload override."""


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def requests_table(lat: dict[str, Any]) -> dict[str, dict[str, float]]:
    seconds = lat["end"] - lat["start"]
    times: dict[str, list[float]] = defaultdict(list)
    failures: dict[str, int] = defaultdict(int)
    for _, name, ts, failed in lat["rows"]:
        times[name] += ts
        failures[name] += failed
    every = [t for ts in times.values() for t in ts]
    rows = {name: _row(ts, failures[name], seconds) for name, ts in sorted(times.items())}
    rows["all"] = _row(every, sum(failures.values()), seconds)
    return rows


def _row(ts: list[float], failures: int, seconds: float) -> dict[str, float]:
    return {
        "requests": len(ts),
        "rps": len(ts) / seconds,
        "p50": pct(ts, 50),
        "p99": pct(ts, 99),
        "max": max(ts, default=0.0),
        "failures": failures,
    }


def per_minute_p99(lat: dict[str, Any]) -> dict[int, dict[str, float]]:
    """Minute → request type (and ``all``) → p99 ms, full minutes only."""
    full = int((lat["end"] - lat["start"]) // 60)
    times: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for minute, name, ts, _ in lat["rows"]:
        if minute < full:
            times[minute][name] += ts
            times[minute]["all"] += ts
    return {m: {n: pct(ts, 99) for n, ts in by.items()} for m, by in sorted(times.items())}


def deliveries(raw: dict[str, Any]) -> dict[str, Any]:
    """Deliveries that arrived during the locust run: rate and lateness (arrival − scheduled_for)."""
    start, end = raw["latencies"]["start"], raw["latencies"]["end"]
    late: dict[str, list[float]] = defaultdict(list)
    for line in raw["deliveries"]:
        arrival_us, path, scheduled = line.split(" ", 2)
        arrival = int(arrival_us) / 1e6
        if start <= arrival <= end and scheduled:
            kind = path.rsplit("/", 1)[-1]
            late[kind].append((arrival - datetime.fromisoformat(scheduled).timestamp()) * 1000)
    every = [x for xs in late.values() for x in xs]
    out: dict[str, Any] = {"count": len(every), "per_second": len(every) / (end - start)}
    for kind, xs in [("all", every), *sorted(late.items())]:
        out[kind] = {"count": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99), "max": max(xs, default=0.0)}
    return out


def server_cpu(raw: dict[str, Any]) -> dict[str, float]:
    """The server's CPU over the sampled part of the run: share of one core and per request."""
    lat, samples = raw["latencies"], raw["samples"]
    inside = [s for s in samples if lat["start"] <= s["t"] <= lat["end"]]
    a, b = raw["idle"]
    idle = (b["cpu_s"] - a["cpu_s"]) / (b["t"] - a["t"])
    if len(inside) < 2:
        return {"busy": 0.0, "per_request_ms": 0.0, "idle_busy": idle}
    first, last = inside[0], inside[-1]
    cpu, wall = last["cpu_s"] - first["cpu_s"], last["t"] - first["t"]
    rate = sum(len(ts) for _, _, ts, _ in lat["rows"]) / (lat["end"] - lat["start"])
    busy = cpu / wall
    return {"busy": busy, "per_request_ms": (busy - idle) / rate * 1000 if rate else 0.0, "idle_busy": idle}


def errors(raw: dict[str, Any], table: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {
        "request_failures": int(table["all"]["failures"]),
        "failed_executions": raw["failed_executions"],
        "server_log_errors": len(raw["server_errors"]),
        "total": int(table["all"]["failures"])
        + sum(raw["failed_executions"].values())
        + len(raw["server_errors"]),
    }


def _machine(raw: dict[str, Any]) -> str:
    load = os.getloadavg()
    return (
        f"git {raw['sha']}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()} "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load {load[0]:.1f}/{load[1]:.1f}; "
        f"{raw['accounts']} accounts, users {raw['users']}, {raw['pace']} s per loop; cuefast serve "
        "(api+scheduler+dispatcher+snapshotter), private redis-server, locust and receiver on this machine"
    )


def print_common(raw: dict[str, Any]) -> dict[str, Any]:
    table = requests_table(raw["latencies"])
    dl = deliveries(raw)
    err = errors(raw, table)
    print(_machine(raw))
    print("| request | requests | req/s | p50 ms | p99 ms | max ms | failures |")
    print("|---|---|---|---|---|---|---|")
    for name, r in table.items():
        print(
            f"| {name} | {r['requests']:.0f} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p99']:.0f} | "
            f"{r['max']:.0f} | {r['failures']:.0f} |"
        )
    seconds = raw["latencies"]["end"] - raw["latencies"]["start"]
    cpu = server_cpu(raw)
    print(
        f"sustained: {table['all']['rps']:.1f} requests/s over {seconds:.0f} s; server process "
        f"{cpu['busy'] * 100:.0f} % of one core ({cpu['idle_busy'] * 100:.0f} % before the load: crons, "
        f"deliveries, snapshots), so {cpu['per_request_ms']:.2f} ms CPU per request above that"
    )
    print(f"deliveries: {dl['count']} = {dl['per_second']:.1f}/s received by the local receiver")
    for kind in [k for k in dl if k not in ("count", "per_second")]:
        d = dl[kind]
        print(
            f"  lateness (arrival − scheduled_for), {kind}: n={d['count']} p50 {d['p50']:.1f} ms, "
            f"p99 {d['p99']:.1f} ms, max {d['max']:.1f} ms"
        )
    print(
        f"errors: {err['total']} (request failures {err['request_failures']}, executions "
        f"{err['failed_executions']}, server log errors {err['server_log_errors']})"
    )
    print(f"in flight when the load stopped (not errors): {raw['in_flight_at_end']}")
    for line in raw["server_errors"][:5]:
        print("  server:", line[:200])
    return {"machine": _machine(raw), "requests": table, "deliveries": dl, "errors": err, "server_cpu": cpu}


def soak_checks(raw: dict[str, Any]) -> dict[str, Any]:
    lat, samples = raw["latencies"], raw["samples"]
    warm = next((s for s in samples if s["t"] >= lat["start"] + WARMUP_SECONDS), samples[-1])
    end = samples[-1]
    after = [s for s in samples if s["t"] >= warm["t"]]
    rss_ratio = end["rss_kb"] / warm["rss_kb"]

    def per_exec(a: dict[str, float], b: dict[str, float]) -> float:
        n = b["executions"] - a["executions"]
        return (b["used_memory"] - a["used_memory"]) / n if n else 0.0

    slope, r2 = _fit([s["executions"] for s in after], [s["used_memory"] for s in after])
    half = len(after) // 2
    first = _fit([s["executions"] for s in after[: half + 1]], [s["used_memory"] for s in after[: half + 1]])[
        0
    ]
    second = _fit([s["executions"] for s in after[half:]], [s["used_memory"] for s in after[half:]])[0]
    minutes = per_minute_p99(lat)
    last = max(minutes)
    p99_2, p99_last = minutes[1]["all"], minutes[last]["all"]
    creep = {n: minutes[last].get(n, 0.0) / v for n, v in minutes[1].items() if v and n in minutes[last]}
    return {
        "rss": {
            "warm_kb": warm["rss_kb"],
            "end_kb": end["rss_kb"],
            "min_kb": min(s["rss_kb"] for s in after),
            "max_kb": max(s["rss_kb"] for s in after),
            "ratio": rss_ratio,
            "pass": abs(rss_ratio - 1) <= 0.10,
        },
        "redis": {
            "warm_used_memory": warm["used_memory"],
            "end_used_memory": end["used_memory"],
            "warm_executions": warm["executions"],
            "end_executions": end["executions"],
            "bytes_per_execution": slope,
            "r2": r2,
            "end_points_bytes_per_execution": per_exec(warm, end),
            "first_half": first,
            "second_half": second,
            "pass": 0 < slope <= MAX_BYTES_PER_EXECUTION and r2 >= 0.98,
        },
        "latency": {
            "minute_2_p99": p99_2,
            "last_minute": last + 1,
            "last_minute_p99": p99_last,
            "ratio": p99_last / p99_2,
            "per_request_ratio": creep,
            "per_minute_p99": {str(m + 1): v["all"] for m, v in minutes.items()},
            "minutes": minutes_table(raw, server_cpu(raw)["idle_busy"]),
            "pass": p99_last <= 1.2 * p99_2,
        },
    }


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope of ys over xs and the fit's R² (0, 0 when xs do not vary)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if not sxx or not syy:
        return 0.0, 0.0
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return sxy / sxx, sxy * sxy / (sxx * syy)


def _cpu_at(samples: list[dict[str, float]], t: float) -> float | None:
    """The server's CPU seconds at ``t``, interpolated between the samples around it."""
    for a, b in itertools.pairwise(samples):
        if a["t"] <= t <= b["t"]:
            return a["cpu_s"] + (b["cpu_s"] - a["cpu_s"]) * (t - a["t"]) / (b["t"] - a["t"])
    return None


def minutes_table(raw: dict[str, Any], idle: float) -> dict[str, dict[str, float]]:
    """Per full minute: requests/s, the server's share of one core, and its CPU per request
    above the no-load baseline ``idle`` (a cost that does not depend on how much CPU the
    machine's other work leaves the server)."""
    lat, samples = raw["latencies"], raw["samples"]
    counts: dict[int, int] = defaultdict(int)
    for minute, _, ts, _ in lat["rows"]:
        counts[minute] += len(ts)
    out: dict[str, dict[str, float]] = {}
    for minute in range(int((lat["end"] - lat["start"]) // 60)):
        lo, hi = lat["start"] + minute * 60, lat["start"] + minute * 60 + 60
        a, b = _cpu_at(samples, lo), _cpu_at(samples, hi)
        if a is None or b is None or not counts[minute]:
            continue
        busy = (b - a) / 60
        out[str(minute + 1)] = {
            "rps": counts[minute] / 60,
            "busy": busy,
            "cpu_ms_per_request": (busy - idle) * 60 / counts[minute] * 1000,
        }
    return out


def print_soak(checks: dict[str, Any], errs: dict[str, Any]) -> bool:
    r, m, lt = checks["rss"], checks["redis"], checks["latency"]
    ok = errs["total"] == 0
    verdict = {True: "PASS", False: "FAIL"}
    print(
        f"RSS (server process): {r['warm_kb'] / 1024:.1f} MiB after warm-up ({WARMUP_SECONDS:.0f} s) → "
        f"{r['end_kb'] / 1024:.1f} MiB at the end ({(r['ratio'] - 1) * 100:+.1f} %; range "
        f"{r['min_kb'] / 1024:.1f}–{r['max_kb'] / 1024:.1f} MiB) — {verdict[r['pass']]} (±10 %)"
    )
    print(
        f"Redis: used_memory {m['warm_used_memory'] / 2**20:.1f} → {m['end_used_memory'] / 2**20:.1f} MiB, "
        f"retained executions went {m['warm_executions']:.0f} → {m['end_executions']:.0f}: "
        f"{m['bytes_per_execution']:.0f} B per retained execution (least squares over the 10-s samples, "
        f"R² {m['r2']:.3f}; first half {m['first_half']:.0f}, second half {m['second_half']:.0f}) — "
        f"{verdict[m['pass']]} (≤ {MAX_BYTES_PER_EXECUTION} B and R² ≥ 0.98: memory follows retained data)"
    )
    print(
        f"p99, all requests: minute 2 {lt['minute_2_p99']:.0f} ms, minute {lt['last_minute']} "
        f"{lt['last_minute_p99']:.0f} ms ({lt['ratio']:.2f}×) — {verdict[lt['pass']]} (≤ 1.2×)"
    )
    print(
        "  | minute | requests/s | p99 ms | server, share of a core | server CPU ms per request above idle |"
    )
    print("  |---|---|---|---|---|")
    for k, v in lt["minutes"].items():
        print(
            f"  | {k} | {v['rps']:.1f} | {lt['per_minute_p99'][k]:.0f} | {v['busy']:.2f} | "
            f"{v['cpu_ms_per_request']:.2f} |"
        )
    print(
        "  per request, last ÷ minute 2:",
        ", ".join(f"{k} {v:.2f}" for k, v in lt["per_request_ratio"].items()),
    )
    print(f"errors: {errs['total']} — {verdict[ok]} (= 0)")
    return bool(r["pass"] and m["pass"] and lt["pass"] and ok)


def _write(path: str, result: dict[str, Any]) -> None:
    if path:
        with open(path, "w") as fh:
            json.dump(result, fh, indent=1)
        print(f"result: {path}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench")
    sub = parser.add_subparsers(dest="bench", required=True)
    one = sub.add_parser("fleet", help="the mixed agent-fleet load, once")
    one.add_argument("--seconds", type=int, default=60)
    fleet.add_options(one)
    soak = sub.add_parser("soak", help="the fleet load for --minutes, with the soak checks")
    soak.add_argument("--minutes", type=int, default=10)
    fleet.add_options(soak)
    args = parser.parse_args(argv)
    if args.bench == "fleet":
        raw = fleet.run(args, args.seconds)
        result = print_common(raw)
        result["samples"] = raw["samples"]
        _write(args.json, result)
        return
    raw = fleet.run(args, args.minutes * 60)
    result = print_common(raw)
    checks = soak_checks(raw)
    passed = print_soak(checks, result["errors"])
    print("soak:", "PASS" if passed else "FAIL")
    result.update(checks=checks, passed=passed, samples=raw["samples"])
    _write(args.json or os.path.join(raw["scratch"], "soak.json"), result)
    if not passed:
        raise SystemExit(1)
