"""kill -9 or SIGSTOP of a Cluster primary under per-second webhook and worker cues: work resumes on its
replica, the other primaries' work goes on meanwhile."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from aiohttp import web

from cuefast.store.cluster_wire import HANG_S
from cuefast.store.keys import CUE_SPREAD, Keys
from tests import cluster as fixture
from tests.cluster import local_cluster
from tests.procs import cluster_env, free_port, until_healthy
from tests.test_dispatcher import Receiver

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parent.parent
FIRST_PORT = fixture.FIRST_PORT + fixture.NODES
"""its own cluster (the first free block after the session's): the session's keeps its primaries"""
CUES = 8
"""per-second webhook cues"""
WORKER_CUES = 4
"""per-second worker cues, claimed by ``CLAIMERS`` pull workers (claim next, then outcome)"""
CLAIMERS = 3
RESUME_S = 20.0
"""the bound asserted on the delivery stall and on the claim stall (cluster-node-timeout is 2 s)"""


OTHERS_LATE_S = 1.5
"""the bound on how late a cue on another primary is delivered during the failover window"""


class TimedReceiver(Receiver):
    """A ``Receiver`` that notes when each request arrived (``at``, monotonic; ``wall``, epoch s)."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        res = await super().handle(request)  # "ok" mode: no await between its append and here
        self.requests[-1]["at"] = time.monotonic()
        self.requests[-1]["wall"] = time.time()
        return res


@pytest.fixture
def own_cluster() -> Iterator[str]:
    """Its own cluster; ``cluster-require-full-coverage no``: while the dead primary's slots are
    uncovered (from its FAIL mark to its replica's promotion) the other primaries keep serving —
    with the default ``yes`` every node answers CLUSTERDOWN meanwhile (README "Failover")."""
    with local_cluster(FIRST_PORT, extra=("--cluster-require-full-coverage", "no")) as url:
        yield url


class Claimers:
    """``CLAIMERS`` pull workers over the API: claim the next execution (9.2), read it, report
    its outcome, again; a 409 (nothing claimable) or an error (503 while the cluster fails
    over) is retried after a short poll interval. ``claims``: execution id → [(worker, monotonic
    time, cue id, scheduled_for)], one entry per successful claim."""

    def __init__(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        self.client = client
        self.auth = auth
        self.claims: dict[str, list[tuple[str, float, str, str]]] = {}
        self.errors = 0
        self.stop = asyncio.Event()

    async def run(self, worker: str) -> None:
        while not self.stop.is_set():
            try:
                res = await self.client.post(
                    "/v1/executions/claim", headers=self.auth, json={"worker_id": worker, "task": "fo"}
                )
                if res.status_code != 200:
                    self.errors += res.status_code != 409
                    await asyncio.sleep(0.05)  # poll interval: nothing claimable, or Redis failing over
                    continue
                at = time.monotonic()
                eid = res.json()["execution_id"]
                got = await self.client.get(f"/v1/executions/{eid}", headers=self.auth)
                body = got.json()
                claim = (worker, at, body["cue_id"], body["scheduled_for"])  # a 503 raises KeyError first
                self.claims.setdefault(eid, []).append(claim)
                await self.client.post(
                    f"/v1/executions/{eid}/outcome", headers=self.auth, json={"success": True}
                )
            except (httpx.TransportError, KeyError):
                self.errors += 1
                await asyncio.sleep(0.05)

    def first_after(self, cue_id: str, wall: float) -> float | None:
        """When (monotonic) the first execution of ``cue_id`` due after ``wall`` (epoch s) was claimed."""
        times = [
            at
            for entries in self.claims.values()
            for _, at, cue, due in entries[:1]
            if cue == cue_id and _epoch(due) > wall
        ]
        return min(times, default=None)


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGSTOP], ids=["kill-9", "sigstop"])
async def test_a_killed_primary_is_replaced_and_delivery_and_claims_resume(
    stop: signal.Signals, own_cluster: str, database_url: str, pg_schema: str, tmp_path: Path
) -> None:
    """``kill -9`` of a primary (its connections refused at once), or ``SIGSTOP`` (the harsher
    slow node: connections stay open and nothing answers, until its replica is promoted): the
    other primaries' partitions keep delivering and being claimed meanwhile."""
    receiver = TimedReceiver()
    await receiver.start()
    port = free_port()
    prefix = f"fo{uuid.uuid4().hex[:8]}"
    env = cluster_env(own_cluster, database_url, pg_schema, prefix)
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "cuefast", "serve", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stderr=log.open("wb"))
    tasks: list[asyncio.Task[None]] = []
    pid = 0
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await until_healthy(client)
            keys = Keys(prefix, 128)  # a new install's count (CUEFAST_PARTITIONS unset)
            every_second = {"type": "recurring", "cron": "* * * * * *"}
            seed = redis.RedisCluster.from_url(own_cluster, decode_responses=True)
            seed_nodes = {p: seed.get_node_from_key(keys.part(p)).name for p in range(keys.partitions)}
            for attempt in range(10):
                # the victim: neither the account's auth shard's primary nor its account slot's
                # ({a:<id>}: usage counters, worker registry) — with either down, nothing of that
                # account can be authenticated, signed or claimed, whatever the partition — and
                # holding some, not all, of the CUE_SPREAD partitions its cues are drawn onto
                # (Keys.cue_group: those of a first cue's residue)
                email = f"{prefix}{attempt}@example.com"
                api_key = (await client.post("/v1/auth/register", json={"email": email})).json()["api_key"]
                auth = {"Authorization": f"Bearer {api_key}"}
                sha = hashlib.sha256(api_key.encode()).hexdigest()
                account = seed.hget(keys.key_index(sha), sha)
                spared = {seed.get_node_from_key(keys.key_index(sha)).name}
                spared.add(seed.get_node_from_key(keys.usage(str(account), "2000-01")).name)
                probe = {"name": "probe", "schedule": every_second, "callback": {"url": receiver.url}}
                res = await client.post("/v1/cues", headers=auth, json=probe)
                first = keys.cue_partition(res.json()["id"])
                assert (await client.delete(f"/v1/cues/{res.json()['id']}", headers=auth)).status_code == 204
                m = keys.partitions // CUE_SPREAD
                group = {p for p in range(keys.partitions) if p % m == first % m}
                held = {
                    n.name: {p for p in group if seed_nodes[p] == n.name}
                    for n in seed.get_primaries()
                    if n.name not in spared
                }
                fit = [name for name, ps in held.items() if ps and ps != group]
                if fit:
                    break
            else:
                raise AssertionError("no account whose cues a primary could be killed under")
            # the seed node (CUEFAST_REDIS_URL's) when it fits: redis-py's default node, which
            # its client asks COMMAND GETKEYS before every stream read (ClusterWire._steer)
            fit.sort(key=lambda n: n != own_cluster.rpartition("/")[2])
            node = seed.get_node(node_name=fit[0])
            seed.close()
            on_victim = {p for p, name in seed_nodes.items() if name == node.name}

            async def cues(n: int, body: dict[str, Any]) -> list[str]:
                """``n`` cues, half of them on the victim's partitions, half elsewhere (extra
                ones deleted)."""
                made: dict[bool, list[str]] = {True: [], False: []}
                while min(len(v) for v in made.values()) < n // 2:
                    res = await client.post("/v1/cues", headers=auth, json={**body, "name": uuid.uuid4().hex})
                    assert res.status_code == 201
                    cue = res.json()["id"]
                    side = made[keys.cue_partition(cue) in on_victim]
                    if len(side) < n // 2:
                        side.append(cue)
                    else:
                        assert (await client.delete(f"/v1/cues/{cue}", headers=auth)).status_code == 204
                return made[True] + made[False]

            hook_cues = await cues(CUES, {"schedule": every_second, "callback": {"url": receiver.url}})
            worker_cues = await cues(
                WORKER_CUES, {"schedule": every_second, "transport": "worker", "payload": {"task": "fo"}}
            )
            claimers = Claimers(client, auth)
            tasks = [asyncio.create_task(claimers.run(f"w{i}")) for i in range(CLAIMERS)]
            async with asyncio.timeout(30):
                while len(receiver.requests) < 3 * CUES or len(claimers.claims) < 3 * WORKER_CUES:
                    await asyncio.sleep(0.05)

            # the primary of the first worker cue's partition dies (its slots hold that cue's work)
            assert keys.cue_partition(worker_cues[0]) in on_victim
            victim = redis.Redis(host=node.host, port=int(node.port))
            pid = int(victim.info("server")["process_id"])
            victim.close()
            before = len(receiver.requests)
            killed, killed_wall = time.monotonic(), time.time()
            victims = {c for c in hook_cues if keys.cue_partition(c) in on_victim}

            def victim_back() -> float | None:
                """When (monotonic) a victim's cue was first delivered for a second due after the
                kill (materialised once its partition was back)."""
                times = [
                    r["at"]
                    for r in receiver.requests[before:]
                    if (b := json.loads(r["body"]))["cue_id"] in victims
                    and _epoch(b["scheduled_for"]) > killed_wall + 1
                ]
                return min(times, default=None)

            os.kill(pid, stop)
            try:
                async with asyncio.timeout(RESUME_S + 30):
                    while not victim_back() or any(
                        claimers.first_after(cue, killed_wall + 2) is None for cue in worker_cues
                    ):  # three more seconds' worth of deliveries; every worker cue claimed again
                        await asyncio.sleep(0.05)
            except TimeoutError:
                unclaimed = [c for c in worker_cues if claimers.first_after(c, killed_wall + 2) is None]
                raise AssertionError(
                    f"{stop.name} of {node.name}: victims delivered again: {victim_back() is not None}; "
                    f"worker cues not claimed again: {unclaimed} (on the victim: "
                    f"{[keys.cue_partition(c) in on_victim for c in unclaimed]}); "
                    f"{len(receiver.requests) - before} deliveries since"
                ) from None
            stalled = [r["at"] for r in receiver.requests[before:]]
            delivery = stalled[0] - killed
            resumed = [claimers.first_after(cue, killed_wall) for cue in worker_cues]
            claims = max(at for at in resumed if at is not None) - killed
            # the victim's cues: when their first second after the kill was delivered
            bodies = [(json.loads(r["body"]), r) for r in receiver.requests[before:]]
            back = (victim_back() or killed) - killed
            # the other primaries' cues, every second due in that window: delivered, and on time
            window = (killed_wall + 0.5, killed_wall + back - 0.5)
            late = {
                (b["cue_id"], int(_epoch(b["scheduled_for"]))): r["wall"] - _epoch(b["scheduled_for"])
                for b, r in bodies
                if b["cue_id"] not in victims and window[0] <= _epoch(b["scheduled_for"]) <= window[1]
            }
            # every second due from then on delivered (after a SIGSTOP, the pass in flight when
            # the node stopped waited HANG_S for it: a second due meanwhile may be folded into
            # the next one, the cues' catch_up "latest")
            first = window[0] + (HANG_S + 1.0 if stop == signal.SIGSTOP else 0.0)
            due = {
                (c, t)
                for c in hook_cues
                if c not in victims
                for t in range(math.ceil(first), math.floor(window[1]) + 1)
            }
            worst = max(late.values(), default=0.0)
            # the other primaries' worker cues: claimed (over the API, polled every 50 ms) meanwhile
            claim_late = [
                at - killed + killed_wall - _epoch(due)
                for entries in claimers.claims.values()
                for _, at, cue, due in entries[:1]
                if keys.cue_partition(cue) not in on_victim and window[0] <= _epoch(due) <= window[1]
            ]
            print(
                f"\n{stop.name} of {node.name}: delivery resumed {delivery:.2f} s after, its partitions' "
                f"cues {back:.2f} s after, every worker cue claimed again {claims:.2f} s after "
                f"({claimers.errors} claim errors meanwhile); the other primaries' cues: "
                f"{len(late)} deliveries due meanwhile, {len(due - set(late))} of {len(due)} missing, "
                f"at most "
                f"{worst:.2f} s late; their worker cues: {len(claim_late)} claimed, at most "
                f"{max(claim_late, default=0.0):.2f} s late"
            )
            assert delivery < RESUME_S
            assert claims < RESUME_S
            assert back > 2  # the window this measures: the victim's partitions were down
            missing = sorted(due - set(late))
            after = {
                (b["cue_id"], int(_epoch(b["scheduled_for"]))): round(r["wall"] - killed_wall, 2)
                for b, r in bodies
            }
            detail = [(c, t - killed_wall, keys.cue_partition(c), after.get((c, t))) for c, t in missing]
            assert not missing, detail  # every second of the other primaries' cues delivered
            # a stopped node answers nothing: the calls in flight when it stopped each wait for it
            # once (HANG_S), then its share of every call fails at once until it is replaced
            bound = OTHERS_LATE_S + (HANG_S if stop == signal.SIGSTOP else 0.0)
            assert worst < bound
            assert claim_late and max(claim_late) < bound
            claimers.stop.set()
            await asyncio.gather(*tasks)

            bodies = [json.loads(r["body"]) for r in receiver.requests]
            ids: dict[tuple[str, str], set[str]] = {}
            for b in bodies:
                ids.setdefault((b["cue_id"], b["scheduled_for"]), set()).add(b["execution_id"])
            for eid, entries in claimers.claims.items():
                ids.setdefault((entries[0][2], entries[0][3]), set()).add(eid)
            assert all(len(v) == 1 for v in ids.values())  # one execution per due slot
            # every execution claimed once: each outcome was reported (its lease never expired),
            # so a second claim would be two workers at once (only a claim acknowledged in the
            # loss window, then lost with the primary, could be granted again: README "Failover")
            twice = {eid: [w for w, *_ in e] for eid, e in claimers.claims.items() if len(e) > 1}
            assert twice == {}
            for cue in worker_cues:  # the executions not claimed too: one per due slot
                res = await client.get("/v1/executions", headers=auth, params={"cue_id": cue, "limit": 100})
                slots = [e["scheduled_for"] for e in res.json()["executions"]]
                assert len(slots) == len(set(slots)), cue
    finally:
        if pid and stop == signal.SIGSTOP:
            os.kill(pid, signal.SIGCONT)  # it rejoins as its replica's replica; shut down with the rest
        for task in tasks:
            task.cancel()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
            assert receiver.runner is not None
            await receiver.runner.cleanup()
            print(log.read_text()[-6000:])
    assert proc.returncode == 0  # the errors logged while the primary was down are expected
