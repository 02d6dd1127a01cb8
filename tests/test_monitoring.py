"""deploy/monitoring: the Prometheus alert rules and the Grafana dashboard use only metrics (and
labels) that a real ``/metrics`` scrape of ``cuefast serve`` serves; every expression parses as
PromQL (``promql-parser``, the Rust PromQL parser) and the rules cover the six signals the
README promises."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml

from cuefast import metrics
from cuefast.config import Settings
from tests.conftest import _delete_prefix, backend_settings
from tests.procs import Processes, process_env
from tests.test_client import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"


def _expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert rule and dashboard target."""
    out: list[tuple[str, str]] = []
    rules = yaml.safe_load((MONITORING / "cuefast-alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            out.append((f"alert {rule['alert']}", rule["expr"]))
    dash = json.loads((MONITORING / "cuefast-dashboard.json").read_text())
    for panel in dash["panels"]:
        for target in panel["targets"]:
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    return out


class Used:
    """The series selectors and grouping labels of one expression."""

    def __init__(self, expr: str) -> None:
        self.selectors: list[tuple[str, set[str]]] = []
        self.grouping: set[str] = set()
        tree = promql_parser.parse(expr)
        promql_parser.walk(tree, self._visit)

    def _visit(self, node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name for m in node.matchers.matchers}
            for group in node.matchers.or_matchers or []:
                labels |= {m.name for m in group}
            self.selectors.append((node.name, labels))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            self.grouping |= set(node.modifier.labels)
        return True


def _scrape_families(text: str) -> dict[str, set[str]]:
    """Series name → label names, from the exposition: every TYPE'd family (histograms as
    their _bucket/_sum/_count series), with the labels its samples carry or its spec declares."""
    specs = {s.name: set(s.labels) for s in metrics.SPECS}
    families: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            labels = specs.get(name, set())
            if kind == "histogram":
                families[f"{name}_bucket"] = labels | {"le"}
                families[f"{name}_sum"] = set(labels)
                families[f"{name}_count"] = set(labels)
            else:
                families[name] = set(labels)
        elif line and not line.startswith("#"):
            series = line.split(" ", 1)[0]
            name, _, rest = series.partition("{")
            if rest:
                families.setdefault(name, set()).update(
                    pair.split("=", 1)[0] for pair in rest.rstrip("}").split(",") if pair
                )
    return families


@pytest.fixture(scope="module")
def served(settings_module: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The families of a real scrape of `cuefast serve` once the scheduler and the snapshotter
    have each reported (their gauges appear only then)."""
    port = free_port()
    env = process_env(settings_module, CUEFAST_PORT=str(port), CUEFAST_SNAPSHOT_INTERVAL="1")
    wanted = ("cuefast_scheduler_heartbeat_age_seconds", "cuefast_snapshot_lag_seconds", "cuefast_processes{")

    async def scrape() -> str:
        async with Processes(tmp_path_factory.mktemp("monitoring")) as procs:
            procs.start("serve", "serve", env=env)
            deadline = time.monotonic() + 60
            async with httpx.AsyncClient(timeout=5) as client:
                while True:
                    try:
                        res = await client.get(f"http://127.0.0.1:{port}/metrics")
                        if res.status_code == 200 and all(w in res.text for w in wanted):
                            text = res.text
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, "serve never reported its gauges"
                    await asyncio.sleep(0.2)
            assert await procs.stop("serve") == 0
            assert procs.problems() == []
            return text

    return _scrape_families(asyncio.run(scrape()))


@pytest.fixture(scope="module")
def settings_module(redis_url: str, database_url: str, pg_schema: str) -> Iterator[Settings]:
    prefix = f"mon{uuid.uuid4().hex[:8]}"
    yield backend_settings(redis_url, database_url, pg_schema, prefix)
    _delete_prefix(redis_url, prefix)


@pytest.mark.parametrize(("where", "expr"), _expressions(), ids=lambda v: v if " " in v else None)
def test_every_metric_used_is_served(where: str, expr: str, served: dict[str, set[str]]) -> None:
    used = Used(expr)
    assert used.selectors, f"{where}: no series selected"
    labels_in_scope: set[str] = set()
    for name, labels in used.selectors:
        assert name in served, f"{where}: {name} is not served by /metrics"
        unknown = labels - served[name]
        assert not unknown, f"{where}: {name} has no label {sorted(unknown)}"
        labels_in_scope |= served[name]
    unknown = used.grouping - labels_in_scope
    assert not unknown, f"{where}: grouping by {sorted(unknown)}, which no selected series carries"


def test_a_wrong_metric_name_is_caught(served: dict[str, set[str]]) -> None:
    """Control: the check refuses a misspelled metric and a label the metric lacks."""
    used = Used('sum by (transport) (rate(cuefast_executions_delivred_total{transport="webhook"}[5m]))')
    assert [n for n, _ in used.selectors] == ["cuefast_executions_delivred_total"]
    assert "cuefast_executions_delivred_total" not in served
    (name, labels) = Used('cuefast_outbox_entries{partition="3"}').selectors[0]
    assert labels - served[name] == {"partition"}


def test_the_rules_cover_the_promised_signals() -> None:
    rules = yaml.safe_load((MONITORING / "cuefast-alerts.yaml").read_text())
    by_metric: dict[str, list[str]] = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert {"alert", "expr", "for", "labels", "annotations"} <= rule.keys(), rule
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            for name, _ in Used(rule["expr"]).selectors:
                by_metric.setdefault(name, []).append(rule["alert"])
    for metric in (
        "cuefast_scheduler_heartbeat_age_seconds",
        "cuefast_outbox_oldest_age_seconds",
        "cuefast_executions_failed_total",  # delivery failure ratio
        "cuefast_snapshot_lag_seconds",
        "cuefast_execution_lateness_seconds_bucket",  # lateness p99
        "cuefast_worker_lease_expiries_total",  # worker claims expiring
    ):
        assert metric in by_metric, metric
    dash = json.loads((MONITORING / "cuefast-dashboard.json").read_text())
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
